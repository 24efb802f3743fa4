package tenants_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/internal/orgs"
	"github.com/otphub/otphub/oauth"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/sqlite"
	"github.com/otphub/otphub/tenants"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

type env struct {
	t     *testing.T
	url   string
	st    store.Store
	iss   *oauth.Issuer
	admin string
}

func newEnv(t *testing.T) *env {
	key := make([]byte, 32)
	rand.Read(key)
	st, err := sqlite.Open(context.Background(), t.TempDir(), store.Options{EncryptionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &clock{t: time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)}
	iss, err := oauth.New(oauth.Config{Issuer: "https://otphub.test", Now: clk.Now}, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	api, err := tenants.New(tenants.Config{OnClientDeleted: iss.ForgetClient, Now: clk.Now}, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	iss.Register(mux, iss)
	api.Register(mux, iss)
	// A route of another component using the org middleware.
	mux.Handle("GET /api/v1/orgs/{org}/probe", access.Authenticate(iss, access.Require(access.ScopeOTP, orgs.With(st, slog.New(slog.DiscardHandler), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o, _ := orgs.From(r.Context())
		json.NewEncoder(w).Encode(map[string]any{"id": o.ID})
	})))))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e := &env{t: t, url: srv.URL, st: st, iss: iss}
	if _, _, err := iss.EnsurePlatformAdmin(context.Background(), "root", "root-secret"); err != nil {
		t.Fatal(err)
	}
	e.admin = e.token("root", "root-secret", 200)
	return e
}

func (e *env) token(id, secret string, status int) string {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.url+"/oauth2/token", strings.NewReader(`{"grant_type":"client_credentials"}`))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(id, secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	var b map[string]any
	json.NewDecoder(res.Body).Decode(&b)
	if res.StatusCode != status {
		e.t.Fatalf("token for %s: %d %v", id, res.StatusCode, b)
	}
	s, _ := b["access_token"].(string)
	return s
}

func (e *env) do(method, path, tok, body string) (int, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, e.url+path, rd)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	var b map[string]any
	raw, _ := io.ReadAll(res.Body)
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &b); err != nil {
			e.t.Fatalf("non-JSON %q", raw)
		}
	}
	return res.StatusCode, b
}

func (e *env) want(method, path, tok, body string, status int, code string) map[string]any {
	e.t.Helper()
	s, b := e.do(method, path, tok, body)
	if s != status || (code != "" && b["error"] != code) {
		e.t.Fatalf("%s %s: %d %v, want %d %s", method, path, s, b, status, code)
	}
	return b
}

func TestOrgsAndClients(t *testing.T) {
	e := newEnv(t)
	b := e.want("POST", "/api/v1/orgs", e.admin, `{"name":"acme"}`, 201, "")
	if b["name"] != "acme" || b["id"].(float64) <= 0 {
		t.Fatalf("created %v", b)
	}
	e.want("POST", "/api/v1/orgs", e.admin, `{"name":"globex"}`, 201, "")
	e.want("POST", "/api/v1/orgs", e.admin, `{"name":"acme"}`, 409, "org_exists")
	for _, bad := range []string{`{"name":"Acme"}`, `{"name":"-acme"}`, `{"name":""}`, `{"name":"a_b"}`, `{"name":"` + strings.Repeat("a", 64) + `"}`} {
		e.want("POST", "/api/v1/orgs", e.admin, bad, 400, "invalid_field")
	}
	e.want("POST", "/api/v1/orgs", e.admin, `{"name":"x","y":1}`, 400, "invalid_json")
	e.want("POST", "/api/v1/orgs", e.admin, `{"name":`, 400, "invalid_json")
	e.want("POST", "/api/v1/orgs", e.admin, `{"name":7}`, 400, "invalid_json")
	e.want("POST", "/api/v1/orgs", e.admin, `{"name":"`+strings.Repeat("a", 5000)+`"}`, 413, "body_too_large")
	e.want("POST", "/api/v1/orgs", "", `{"name":"x"}`, 401, "unauthorized")
	b = e.want("GET", "/api/v1/orgs", e.admin, "", 200, "")
	if len(b["orgs"].([]any)) != 2 {
		t.Fatalf("orgs %v", b)
	}

	// An org admin client.
	b = e.want("POST", "/api/v1/orgs/acme/clients", e.admin, `{"name":"acme admin","scopes":["admin"]}`, 201, "")
	adminID, adminSecret := b["clientId"].(string), b["clientSecret"].(string)
	if adminSecret == "" || b["name"] != "acme admin" {
		t.Fatalf("client %v", b)
	}
	orgAdmin := e.token(adminID, adminSecret, 200)
	// It creates clients of its org, with any scopes, deduplicated.
	b = e.want("POST", "/api/v1/orgs/acme/clients", orgAdmin, `{"name":"login app","scopes":["otp","subscribe","otp"]}`, 201, "")
	appID, appSecret := b["clientId"].(string), b["clientSecret"].(string)
	if s := b["scopes"].([]any); len(s) != 2 {
		t.Fatalf("scopes %v", s)
	}
	app := e.token(appID, appSecret, 200)
	for _, bad := range []string{`{"name":"x","scopes":[]}`, `{"name":"x"}`, `{"name":"x","scopes":["root"]}`, `{"name":"","scopes":["otp"]}`, `{"name":"a\u0000b","scopes":["otp"]}`, `{"name":"` + strings.Repeat("n", 101) + `","scopes":["otp"]}`} {
		e.want("POST", "/api/v1/orgs/acme/clients", orgAdmin, bad, 400, "invalid_field")
	}
	// Listing never shows secrets.
	s, raw := e.do("GET", "/api/v1/orgs/acme/clients", orgAdmin, "")
	if s != 200 || len(raw["clients"].([]any)) != 2 {
		t.Fatalf("list %d %v", s, raw)
	}
	for _, c := range raw["clients"].([]any) {
		m := c.(map[string]any)
		if _, ok := m["clientSecret"]; ok {
			t.Fatal("secret listed")
		}
	}
	// Org scoping: the org admin cannot see or touch globex, nor list orgs.
	e.want("GET", "/api/v1/orgs/globex", orgAdmin, "", 403, "forbidden")
	e.want("GET", "/api/v1/orgs/globex/clients", orgAdmin, "", 403, "forbidden")
	e.want("POST", "/api/v1/orgs/globex/clients", orgAdmin, `{"name":"x","scopes":["admin"]}`, 403, "forbidden")
	e.want("GET", "/api/v1/orgs", orgAdmin, "", 403, "forbidden")
	e.want("POST", "/api/v1/orgs", orgAdmin, `{"name":"mine"}`, 403, "forbidden")
	// An otp client reads its own org but manages no clients.
	if b := e.want("GET", "/api/v1/orgs/acme", app, "", 200, ""); b["name"] != "acme" {
		t.Fatalf("get org %v", b)
	}
	e.want("GET", "/api/v1/orgs/acme/clients", app, "", 403, "forbidden")
	e.want("DELETE", "/api/v1/orgs/acme/clients/"+adminID, app, "", 403, "forbidden")
	// No enumeration: unknown orgs are 403 to org clients, 404 to the platform admin.
	e.want("GET", "/api/v1/orgs/nosuch", orgAdmin, "", 403, "forbidden")
	e.want("GET", "/api/v1/orgs/nosuch", e.admin, "", 404, "org_not_found")
	e.want("GET", "/api/v1/orgs/nosuch/clients", e.admin, "", 404, "org_not_found")
	e.want("GET", "/api/v1/orgs/NoSuch/probe", e.admin, "", 404, "org_not_found")
	e.want("GET", "/api/v1/orgs/acme/probe", app, "", 200, "")
	// Deleting: 404 for unknown or another org's client; the token stops at once.
	e.want("DELETE", "/api/v1/orgs/globex/clients/"+appID, e.admin, "", 404, "client_not_found")
	e.want("DELETE", "/api/v1/orgs/acme/clients/nope", orgAdmin, "", 404, "client_not_found")
	e.want("DELETE", "/api/v1/orgs/acme/clients/"+appID, orgAdmin, "", 204, "")
	e.want("GET", "/api/v1/orgs/acme", app, "", 401, "invalid_token")
	e.token(appID, appSecret, 401)
}

func TestResolveOrg(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	o, err := e.st.CreateOrg(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := orgs.Resolve(ctx, e.st, "acme"); err != nil || got.ID != o.ID {
		t.Fatalf("%v %v", got, err)
	}
	for _, name := range []string{"nosuch", "", "../acme", "ACME"} {
		if _, err := orgs.Resolve(ctx, e.st, name); err != orgs.ErrNotFound {
			t.Fatalf("%q: %v", name, err)
		}
	}
}
