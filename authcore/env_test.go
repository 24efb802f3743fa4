package authcore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/authcore"
	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/bus/embedded"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/oauth"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/sqlite"
	"github.com/otphub/otphub/tenants"
)

const publicURL = "https://otphub.test"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is the auth core over a real SQLite store and embedded log, behind
// a real HTTP server, with tokens for a few callers.
type env struct {
	t        testing.TB
	st       store.Store
	lg       *embedded.Log
	svc      *authcore.Service
	iss      *oauth.Issuer
	clk      *clock
	reg      *prometheus.Registry
	url      string
	cfg      authcore.Config
	consumer bus.Consumer

	admin    string // platform admin token
	orgAdmin string // acme, scope admin
	otp      string // acme, scope otp
	other    string // other org "globex", scope otp+admin
	org      store.Org
}

func newEnv(t testing.TB, mod func(*authcore.Config)) *env {
	t.Helper()
	ctx := context.Background()
	key := make([]byte, 32)
	rand.Read(key)
	st, err := sqlite.Open(ctx, t.TempDir(), store.Options{EncryptionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	lg, err := embedded.Open(t.TempDir(), embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	clk := &clock{t: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	reg := prometheus.NewRegistry()
	iss, err := oauth.New(oauth.Config{Issuer: publicURL, Now: clk.Now}, st, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	ten, err := tenants.New(tenants.Config{OnClientDeleted: iss.ForgetClient, Now: clk.Now}, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	hk := make([]byte, 32)
	rand.Read(hk)
	cfg := authcore.Config{PublicURL: publicURL, HMACKey: hk, Now: clk.Now}
	if mod != nil {
		mod(&cfg)
	}
	svc, err := authcore.New(cfg, st, lg, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	iss.Register(mux, iss)
	ten.Register(mux, iss)
	svc.Register(mux, iss)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e := &env{t: t, st: st, lg: lg, svc: svc, iss: iss, clk: clk, reg: reg, url: srv.URL, cfg: cfg}

	id, sec, err := iss.EnsurePlatformAdmin(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	e.admin = e.token(id, sec)
	e.mustDo("POST", "/api/v1/orgs", e.admin, `{"name":"acme"}`, 201)
	e.mustDo("POST", "/api/v1/orgs", e.admin, `{"name":"globex"}`, 201)
	if e.org, err = st.GetOrg(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	e.orgAdmin = e.clientToken("acme", "admin")
	e.otp = e.clientToken("acme", "otp")
	e.other = e.clientToken("globex", "otp", "admin")
	return e
}

func (e *env) token(id, secret string) string {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.url+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(res.Body).Decode(&out)
	if res.StatusCode != 200 || out.AccessToken == "" {
		e.t.Fatalf("token for %s: %d", id, res.StatusCode)
	}
	return out.AccessToken
}

func (e *env) clientToken(org string, scopes ...string) string {
	e.t.Helper()
	b, _ := json.Marshal(map[string]any{"name": "test client", "scopes": scopes})
	_, _, body := e.mustDo("POST", "/api/v1/orgs/"+org+"/clients", e.admin, string(b), 201)
	return e.token(body["clientId"].(string), body["clientSecret"].(string))
}

type resp struct {
	status int
	header http.Header
	body   map[string]any
}

// do sends a request (JSON body unless body is empty) and decodes the JSON answer.
func (e *env) do(method, path, tok, body string, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			e.t.Fatalf("%s %s: non-JSON answer %d: %q", method, path, res.StatusCode, raw)
		}
		if res.Header.Get("Content-Type") != "application/json" {
			e.t.Fatalf("%s %s: content type %q", method, path, res.Header.Get("Content-Type"))
		}
	}
	return r
}

func (e *env) mustDo(method, path, tok, body string, status int) (int, http.Header, map[string]any) {
	e.t.Helper()
	r := e.do(method, path, tok, body)
	if r.status != status {
		e.t.Fatalf("%s %s: status %d, want %d: %v", method, path, r.status, status, r.body)
	}
	return r.status, r.header, r.body
}

// wantError checks an error answer's status and code.
func wantError(t testing.TB, r resp, status int, code string) {
	t.Helper()
	if r.status != status || r.body["error"] != code {
		t.Fatalf("got %d %v, want %d %s", r.status, r.body, status, code)
	}
	if m, _ := r.body["message"].(string); m == "" {
		t.Fatalf("error without message: %v", r.body)
	}
}

const challenges = "/api/v1/orgs/acme/sms-otp/challenges"

func (e *env) start(mobile, user string) string {
	e.t.Helper()
	_, _, b := e.mustDo("POST", challenges, e.otp, `{"mobile":"`+mobile+`","userId":"`+user+`","application":"myapp"}`, 201)
	return b["id"].(string)
}

// nextEvent reads the next SMS OTP event from the log.
func (e *env) nextEvent() (*event.SmsOtpNotificationEvent, *bus.Message) {
	e.t.Helper()
	if e.consumer == nil {
		c, err := e.lg.Subscribe(context.Background(), bus.NotificationsTopic, "authcore-test")
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() { c.Close() })
		e.consumer = c
	}
	select {
	case m := <-e.consumer.Messages():
		m.Ack()
		ev, err := event.DecodeBinary(m.Key, m.Headers, m.Value)
		if err != nil {
			e.t.Fatalf("decode event: %v", err)
		}
		return ev, m
	case <-time.After(10 * time.Second):
		e.t.Fatal("no event in the log")
	}
	return nil, nil
}

var otpInBody = regexp.MustCompile(`is ([0-9A-Z]+)\.`)

// nextOTP reads the next event and returns the OTP in its message body.
func (e *env) nextOTP() string {
	e.t.Helper()
	ev, _ := e.nextEvent()
	m := otpInBody.FindStringSubmatch(ev.MessageBody)
	if m == nil {
		e.t.Fatalf("no OTP in %q", ev.MessageBody)
	}
	return m[1]
}

func (e *env) verify(id, code string) resp {
	e.t.Helper()
	return e.do("POST", challenges+"/"+id+"/verify", e.otp, `{"code":"`+code+`"}`)
}

// metric returns a counter's value; label may be "" for an unlabelled one.
func (e *env) metric(name, label, value string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" {
				return m.GetCounter().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	e.t.Fatalf("series %s{%s=%q} not exported", name, label, value)
	return 0
}
