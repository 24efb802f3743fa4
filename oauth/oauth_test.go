package oauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/sqlite"
)

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

func openStore(t testing.TB) store.Store {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	st, err := sqlite.Open(context.Background(), t.TempDir(), store.Options{EncryptionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

type env struct {
	iss   *Issuer
	st    store.Store
	clk   *clock
	url   string
	reg   *prometheus.Registry
	org   store.Org
	id    string // an org client with otp+subscribe
	sec   string
	admin string // platform admin id
	asec  string
}

func newEnv(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	st := openStore(t)
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	cfg := Config{Issuer: "https://otphub.example", Now: clk.Now, MaxClientFailures: 3}
	if mod != nil {
		mod(&cfg)
	}
	reg := prometheus.NewRegistry()
	iss, err := New(cfg, st, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	iss.Register(mux, iss)
	mux.Handle("GET /whoami/{org}", access.Authenticate(iss, access.Require(access.ScopeOTP, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := access.FromContext(r.Context())
		json.NewEncoder(w).Encode(p)
	}))))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e := &env{iss: iss, st: st, clk: clk, url: srv.URL, reg: reg}
	ctx := context.Background()
	if e.org, err = st.CreateOrg(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	e.id, e.sec = "client-1", mustSecret(t)
	h, _ := HashSecret(e.sec)
	if err := st.CreateClient(ctx, store.Client{ClientID: e.id, OrgID: e.org.ID, Name: "app", SecretHash: h, Scopes: []string{"otp", "subscribe"}, CreatedAt: clk.Now()}); err != nil {
		t.Fatal(err)
	}
	if e.admin, e.asec, err = iss.EnsurePlatformAdmin(ctx, "", ""); err != nil || e.admin == "" {
		t.Fatalf("EnsurePlatformAdmin: %q %v", e.admin, err)
	}
	return e
}

func mustSecret(t testing.TB) string {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type tokenResp struct {
	status int
	header http.Header
	body   map[string]any
}

func (e *env) post(t testing.TB, contentType, body string, basic ...string) tokenResp {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url+"/oauth2/token", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("non-JSON answer %d: %s", res.StatusCode, b)
	}
	return tokenResp{res.StatusCode, res.Header, m}
}

const form = "application/x-www-form-urlencoded"

func (e *env) token(t testing.TB, id, secret string) string {
	t.Helper()
	r := e.post(t, form, "grant_type=client_credentials", id, secret)
	if r.status != 200 {
		t.Fatalf("token: %d %v", r.status, r.body)
	}
	return r.body["access_token"].(string)
}

func TestTokenClientAuthentication(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		name, ct, body string
		basic          []string
		status         int
		errCode        string
	}{
		{"basic", form, "grant_type=client_credentials", []string{e.id, e.sec}, 200, ""},
		{"basic url-encoded", form, "grant_type=client_credentials", []string{url.QueryEscape(e.id), url.QueryEscape(e.sec)}, 200, ""},
		{"form fields", form, "grant_type=client_credentials&client_id=" + e.id + "&client_secret=" + e.sec, nil, 200, ""},
		{"json body", "application/json", `{"grant_type":"client_credentials","client_id":"` + e.id + `","client_secret":"` + e.sec + `"}`, nil, 200, ""},
		{"json with charset", "application/json; charset=utf-8", `{"grant_type":"client_credentials"}`, []string{e.id, e.sec}, 200, ""},
		{"narrowed scope", form, "grant_type=client_credentials&scope=otp", []string{e.id, e.sec}, 200, ""},
		{"two methods", form, "grant_type=client_credentials&client_id=" + e.id + "&client_secret=" + e.sec, []string{e.id, e.sec}, 400, "invalid_request"},
		{"wrong secret", form, "grant_type=client_credentials", []string{e.id, "nope"}, 401, "invalid_client"},
		{"unknown client", form, "grant_type=client_credentials", []string{"ghost", e.sec}, 401, "invalid_client"},
		{"no credentials", form, "grant_type=client_credentials", nil, 401, "invalid_client"},
		{"no grant type", form, "", []string{e.id, e.sec}, 400, "invalid_request"},
		{"password grant", form, "grant_type=password", []string{e.id, e.sec}, 400, "unsupported_grant_type"},
		{"scope not granted", form, "grant_type=client_credentials&scope=otp+admin", []string{e.id, e.sec}, 400, "invalid_scope"},
		{"unknown scope", form, "grant_type=client_credentials&scope=root", []string{e.id, e.sec}, 400, "invalid_scope"},
		{"repeated parameter", form, "grant_type=client_credentials&grant_type=client_credentials", []string{e.id, e.sec}, 400, "invalid_request"},
		{"text body", "text/plain", "grant_type=client_credentials", []string{e.id, e.sec}, 415, "invalid_request"},
		{"no content type", "", "grant_type=client_credentials", []string{e.id, e.sec}, 415, "invalid_request"},
		{"malformed json", "application/json", `{"grant_type":`, []string{e.id, e.sec}, 400, "invalid_request"},
		{"unknown json field", "application/json", `{"grant_type":"client_credentials","x":1}`, []string{e.id, e.sec}, 400, "invalid_request"},
		{"wrong json type", "application/json", `{"grant_type":5}`, []string{e.id, e.sec}, 400, "invalid_request"},
		{"oversized form", form, "grant_type=client_credentials&pad=" + strings.Repeat("a", 9000), []string{e.id, e.sec}, 413, "invalid_request"},
		{"oversized json", "application/json", `{"grant_type":"` + strings.Repeat("a", 9000) + `"}`, []string{e.id, e.sec}, 413, "invalid_request"},
		{"huge secret", form, "grant_type=client_credentials", []string{e.id, strings.Repeat("s", 300)}, 401, "invalid_client"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.post(t, c.ct, c.body, c.basic...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %v", r.status, c.status, r.body)
			}
			if c.status == 200 {
				if r.body["token_type"] != "Bearer" || r.body["expires_in"].(float64) != 3600 || r.body["access_token"] == "" {
					t.Fatalf("bad token response %v", r.body)
				}
				if r.header.Get("Cache-Control") != "no-store" {
					t.Fatalf("Cache-Control %q", r.header.Get("Cache-Control"))
				}
				return
			}
			if r.body["error"] != c.errCode || r.body["error_description"] == "" {
				t.Fatalf("error body %v, want error %q", r.body, c.errCode)
			}
			if c.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic") {
				t.Fatalf("401 without WWW-Authenticate: %v", r.header)
			}
		})
	}
	// A narrowed token carries only the asked scope.
	r := e.post(t, form, "grant_type=client_credentials&scope=otp", e.id, e.sec)
	p, err := e.iss.Verify(context.Background(), r.body["access_token"].(string))
	if err != nil || len(p.Scopes) != 1 || p.Scopes[0] != "otp" {
		t.Fatalf("narrowed principal %+v %v", p, err)
	}
	if got := metricValue(t, e.reg, "otphub_oauth_token_requests_total", "outcome", "invalid_client"); got < 3 {
		t.Fatalf("invalid_client metric %v", got)
	}
}

func TestTokenClaimsAndVerify(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.token(t, e.id, e.sec)
	// The claims on the wire.
	parts := strings.Split(tok, ".")
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var h, c map[string]any
	json.Unmarshal(hdr, &h)
	json.Unmarshal(payload, &c)
	if h["alg"] != "ES256" || h["kid"] == "" || h["typ"] != "JWT" {
		t.Fatalf("header %v", h)
	}
	for _, k := range []string{"iss", "aud", "sub", "exp", "iat", "jti", "scope", "org", "org_id"} {
		if _, ok := c[k]; !ok {
			t.Fatalf("claim %s missing: %v", k, c)
		}
	}
	if c["sub"] != e.id || c["org"] != "acme" || c["scope"] != "otp subscribe" || c["iss"] != "https://otphub.example" {
		t.Fatalf("claims %v", c)
	}
	// Through the middleware, over HTTP.
	get := func(path, tok string) int {
		req, _ := http.NewRequest("GET", e.url+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if s := get("/whoami/acme", tok); s != 200 {
		t.Fatalf("own org %d", s)
	}
	if s := get("/whoami/other", tok); s != 403 {
		t.Fatalf("other org %d", s)
	}
	if s := get("/whoami/acme", ""); s != 401 {
		t.Fatalf("no token %d", s)
	}
	admin := e.token(t, e.admin, e.asec)
	p, err := e.iss.Verify(context.Background(), admin)
	if err != nil || !p.PlatformAdmin || p.OrgID != 0 {
		t.Fatalf("admin principal %+v %v", p, err)
	}
	if s := get("/whoami/other", admin); s != 200 {
		t.Fatalf("admin on any org %d", s)
	}
}

// TestVerifyRefuses covers forged and stale tokens.
func TestVerifyRefuses(t *testing.T) {
	e := newEnv(t, nil)
	good := e.token(t, e.id, e.sec)
	kid, _ := e.iss.tokenKey()
	now := e.clk.Now()
	claims := func() Claims {
		return Claims{
			RegisteredClaims: jwt.RegisteredClaims{
				Issuer: "https://otphub.example", Subject: e.id, Audience: jwt.ClaimStrings{"https://otphub.example"},
				ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now), ID: "x",
			},
			Scope: "otp", Org: "acme", OrgID: e.org.ID,
		}
	}
	sign := func(c Claims, key *ecdsa.PrivateKey, kid string) string {
		tk := jwt.NewWithClaims(jwt.SigningMethodES256, c)
		if kid != "" {
			tk.Header["kid"] = kid
		}
		s, err := tk.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	_, realKey := e.iss.tokenKey()
	priv := realKey.(*ecdsa.PrivateKey)
	// Sanity: our forgery helper makes valid tokens with the real key.
	if _, err := e.iss.Verify(context.Background(), sign(claims(), priv, kid)); err != nil {
		t.Fatalf("control token refused: %v", err)
	}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	none := func() string {
		tk := jwt.NewWithClaims(jwt.SigningMethodNone, claims())
		tk.Header["kid"] = kid
		s, _ := tk.SignedString(jwt.UnsafeAllowNoneSignatureType)
		return s
	}()
	hs := func() string {
		pub, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
		tk := jwt.NewWithClaims(jwt.SigningMethodHS256, claims())
		tk.Header["kid"] = kid
		s, _ := tk.SignedString(pub)
		return s
	}()
	wrongAud := claims()
	wrongAud.Audience = jwt.ClaimStrings{"https://elsewhere.example"}
	wrongIss := claims()
	wrongIss.Issuer = "https://evil.example"
	noExp := claims()
	noExp.ExpiresAt = nil
	orgless := claims()
	orgless.Org, orgless.OrgID = "", 0
	ghost := claims()
	ghost.Subject = "ghost"
	otherOrg := claims()
	otherOrg.Org, otherOrg.OrgID = "evil", 999
	// Tamper: flip the payload of a good token.
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"client-1","org":"other"}`)) + "." + parts[2]

	for name, tok := range map[string]string{
		"alg none":            none,
		"HS256 with pub key":  hs,
		"wrong key same kid":  sign(claims(), otherKey, kid),
		"unknown kid":         sign(claims(), otherKey, "nope"),
		"no kid":              sign(claims(), priv, ""),
		"wrong audience":      sign(wrongAud, priv, kid),
		"wrong issuer":        sign(wrongIss, priv, kid),
		"no expiry":           sign(noExp, priv, kid),
		"no org":              sign(orgless, priv, kid),
		"unknown client":      sign(ghost, priv, kid),
		"client of other org": sign(otherOrg, priv, kid),
		"tampered":            tampered,
		"garbage":             "a.b.c",
		"empty":               "",
		"huge":                strings.Repeat("a", 10000),
	} {
		if p, err := e.iss.Verify(context.Background(), tok); err == nil {
			t.Errorf("%s: accepted as %+v", name, p)
		}
	}
	// Expired: the same good token an hour and a minute later.
	e.clk.Add(time.Hour + time.Minute)
	if _, err := e.iss.Verify(context.Background(), good); err == nil {
		t.Fatal("expired token accepted")
	}
}

func TestDeletedClientTokensStopWorking(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.token(t, e.id, e.sec)
	ctx := context.Background()
	if _, err := e.iss.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := e.st.DeleteClient(ctx, e.org.ID, e.id); err != nil {
		t.Fatal(err)
	}
	// Within the cache TTL the cached answer may still stand…
	e.clk.Add(31 * time.Second)
	// …but not after it.
	if _, err := e.iss.Verify(ctx, tok); err == nil {
		t.Fatal("deleted client's token accepted after the cache TTL")
	}
	// ForgetClient makes it immediate.
	id2, sec2 := "client-2", mustSecret(t)
	h, _ := HashSecret(sec2)
	e.st.CreateClient(ctx, store.Client{ClientID: id2, OrgID: e.org.ID, Name: "b", SecretHash: h, Scopes: []string{"otp"}})
	tok2 := e.token(t, id2, sec2)
	if _, err := e.iss.Verify(ctx, tok2); err != nil {
		t.Fatal(err)
	}
	e.st.DeleteClient(ctx, e.org.ID, id2)
	e.iss.ForgetClient(id2)
	if _, err := e.iss.Verify(ctx, tok2); err == nil {
		t.Fatal("forgotten client's token accepted")
	}
}

func TestBruteForceGuard(t *testing.T) {
	e := newEnv(t, nil)
	for i := 0; i < 3; i++ {
		if r := e.post(t, form, "grant_type=client_credentials", e.id, "wrong"); r.status != 401 {
			t.Fatalf("attempt %d: %d", i, r.status)
		}
	}
	r := e.post(t, form, "grant_type=client_credentials", e.id, e.sec)
	if r.status != 429 || r.body["error"] != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Fatalf("after 3 failures: %d %v %v", r.status, r.body, r.header)
	}
	// Another client is not affected.
	if r := e.post(t, form, "grant_type=client_credentials", e.admin, e.asec); r.status != 200 {
		t.Fatalf("other client: %d", r.status)
	}
	e.clk.Add(5 * time.Minute)
	if r := e.post(t, form, "grant_type=client_credentials", e.id, e.sec); r.status != 200 {
		t.Fatalf("after the window: %d %v", r.status, r.body)
	}
}

// postFrom is post over a connection from the loopback address src, so
// the server sees src as the TCP peer.
func (e *env) postFrom(t testing.TB, src, id, secret string, header http.Header) tokenResp {
	t.Helper()
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, e.url+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", form)
	for k, v := range header {
		req.Header[k] = v
	}
	req.SetBasicAuth(id, secret)
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(res.Body).Decode(&m); err != nil {
		t.Fatalf("non-JSON answer %d: %v", res.StatusCode, err)
	}
	return tokenResp{res.StatusCode, res.Header, m}
}

// Failures from one source lock out only that source: an attacker who
// knows a client id (the chart's otphub-admin) cannot keep the real client
// from getting tokens.
func TestBruteForceGuardIsPerSource(t *testing.T) {
	e := newEnv(t, nil)
	for i := 0; i < 3; i++ {
		if r := e.postFrom(t, "127.0.0.2", e.id, "wrong", nil); r.status != 401 {
			t.Fatalf("attempt %d: %d %v", i, r.status, r.body)
		}
	}
	if r := e.postFrom(t, "127.0.0.2", e.id, e.sec, nil); r.status != 429 || r.body["error"] != "rate_limited" {
		t.Fatalf("the failing source after 3 failures: %d %v", r.status, r.body)
	}
	if r := e.postFrom(t, "127.0.0.1", e.id, e.sec, nil); r.status != 200 {
		t.Fatalf("another source with the right secret: %d %v", r.status, r.body)
	}
	// Another source's failures count on their own.
	for i := 0; i < 2; i++ {
		if r := e.postFrom(t, "127.0.0.1", e.id, "wrong", nil); r.status != 401 {
			t.Fatalf("other source attempt %d: %d %v", i, r.status, r.body)
		}
	}
	if r := e.postFrom(t, "127.0.0.1", e.id, e.sec, nil); r.status != 200 {
		t.Fatalf("other source after 2 failures: %d %v", r.status, r.body)
	}
}

// With TrustProxyHeaders the source is the right-most X-Forwarded-For
// entry; without, the header is ignored and the TCP peer counts.
func TestBruteForceGuardSourceFromProxyHeader(t *testing.T) {
	xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }
	e := newEnv(t, func(c *Config) { c.TrustProxyHeaders = true })
	for i := 0; i < 3; i++ {
		// The left-most entry is client-supplied and must not matter.
		if r := e.postFrom(t, "127.0.0.1", e.id, "wrong", xff(fmt.Sprintf("10.9.9.%d, 198.51.100.7", i))); r.status != 401 {
			t.Fatalf("attempt %d: %d %v", i, r.status, r.body)
		}
	}
	if r := e.postFrom(t, "127.0.0.1", e.id, e.sec, xff("198.51.100.7")); r.status != 429 {
		t.Fatalf("the failing source: %d %v", r.status, r.body)
	}
	if r := e.postFrom(t, "127.0.0.1", e.id, e.sec, xff("203.0.113.5")); r.status != 200 {
		t.Fatalf("another source behind the same proxy: %d %v", r.status, r.body)
	}

	e = newEnv(t, nil)
	for i := 0; i < 3; i++ {
		if r := e.postFrom(t, "127.0.0.1", e.id, "wrong", xff(fmt.Sprintf("198.51.100.%d", i))); r.status != 401 {
			t.Fatalf("untrusted header, attempt %d: %d %v", i, r.status, r.body)
		}
	}
	if r := e.postFrom(t, "127.0.0.1", e.id, e.sec, xff("203.0.113.5")); r.status != 429 {
		t.Fatalf("an untrusted header must not dodge the guard: %d %v", r.status, r.body)
	}
}

func jwksKids(t *testing.T, e *env) map[string]event.JWK {
	res, err := http.Get(e.url + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var set struct{ Keys []event.JWK }
	if err := json.NewDecoder(res.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	out := map[string]event.JWK{}
	for _, k := range set.Keys {
		out[k.Kid] = k
	}
	return out
}

func TestJWKSVerifiesTokensIndependently(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.token(t, e.id, e.sec)
	keys := jwksKids(t, e)
	_, err := jwt.Parse(tok, func(tk *jwt.Token) (any, error) {
		k, ok := keys[tk.Header["kid"].(string)]
		if !ok {
			t.Fatalf("kid %v not in JWKS", tk.Header["kid"])
		}
		x, _ := base64.RawURLEncoding.DecodeString(k.X)
		y, _ := base64.RawURLEncoding.DecodeString(k.Y)
		if k.Alg != "ES256" || k.Use != "sig" || k.Kty != "EC" || k.Crv != "P-256" {
			t.Fatalf("jwk %+v", k)
		}
		return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	}, jwt.WithValidMethods([]string{"ES256"}), jwt.WithTimeFunc(e.clk.Now))
	if err != nil {
		t.Fatalf("token does not verify with the JWKS: %v", err)
	}
}

func TestKeyRotation(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.KeyRotation = 24 * time.Hour })
	ctx := context.Background()
	oldKid, _ := e.iss.tokenKey()
	oldTok := e.token(t, e.id, e.sec)

	// A second replica over the same store uses the same key.
	replica, err := New(Config{Issuer: "https://otphub.example", Now: e.clk.Now, KeyRotation: 24 * time.Hour}, e.st, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := replica.tokenKey(); k != oldKid {
		t.Fatalf("replica made its own key %s, want %s", k, oldKid)
	}

	e.clk.Add(24*time.Hour - 30*time.Minute)
	if err := e.iss.refreshKeys(ctx); err != nil {
		t.Fatal(err)
	}
	// Still valid token, issued 30 min before rotation.
	midTok := e.token(t, e.id, e.sec)
	e.clk.Add(30 * time.Minute)
	if err := e.iss.refreshKeys(ctx); err != nil {
		t.Fatal(err)
	}
	newKid, _ := e.iss.tokenKey()
	if newKid == oldKid {
		t.Fatal("key not rotated")
	}
	kids := jwksKids(t, e)
	tokenKids := 0
	for kid := range kids {
		if !strings.HasPrefix(kid, setKidPrefix) {
			tokenKids++
		}
	}
	if _, ok := kids[oldKid]; !ok || tokenKids != 2 {
		t.Fatalf("JWKS after rotation: %v", kids)
	}
	if _, err := e.iss.Verify(ctx, midTok); err != nil {
		t.Fatalf("token of the retired key refused: %v", err)
	}
	// The replica learns the new key on first sight of its kid.
	newTok := e.token(t, e.id, e.sec)
	if _, err := replica.Verify(ctx, newTok); err != nil {
		t.Fatalf("replica refused a token of the new key: %v", err)
	}
	_ = oldTok
	// After the retention the old key is gone.
	e.clk.Add(e.iss.retention() + time.Second)
	if err := e.iss.refreshKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := jwksKids(t, e)[oldKid]; ok {
		t.Fatal("retired key still published after its tokens expired")
	}
	stored, _ := e.st.ListSigningKeys(ctx)
	var tokenKeys []string
	for _, k := range stored {
		if k.Algorithm == tokenKeyAlgorithm {
			tokenKeys = append(tokenKeys, k.KID)
		}
	}
	if len(tokenKeys) != 1 || tokenKeys[0] != newKid {
		t.Fatalf("stored token keys %v", tokenKeys)
	}
}

func TestEnsurePlatformAdmin(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	// One exists (newEnv made it): nothing more.
	if id, sec, err := e.iss.EnsurePlatformAdmin(ctx, "", ""); err != nil || id != "" || sec != "" {
		t.Fatalf("second generation: %q %q %v", id, sec, err)
	}
	if _, _, err := e.iss.EnsurePlatformAdmin(ctx, "only-id", ""); err == nil {
		t.Fatal("id without secret accepted")
	}
	if _, _, err := e.iss.EnsurePlatformAdmin(ctx, e.id, "x"); err == nil {
		t.Fatal("an org client turned into a platform admin")
	}
	if id, _, err := e.iss.EnsurePlatformAdmin(ctx, "ops", "s3cret-one"); err != nil || id != "" {
		t.Fatal(id, err)
	}
	e.token(t, "ops", "s3cret-one")
	// Changing the configured secret replaces the stored one.
	if _, _, err := e.iss.EnsurePlatformAdmin(ctx, "ops", "s3cret-two"); err != nil {
		t.Fatal(err)
	}
	if r := e.post(t, form, "grant_type=client_credentials", "ops", "s3cret-one"); r.status != 401 {
		t.Fatalf("old admin secret: %d", r.status)
	}
	e.token(t, "ops", "s3cret-two")
	// Idempotent with the same secret.
	if _, _, err := e.iss.EnsurePlatformAdmin(ctx, "ops", "s3cret-two"); err != nil {
		t.Fatal(err)
	}
}

func TestSecretHash(t *testing.T) {
	s := mustSecret(t)
	if len(s) != 43 {
		t.Fatalf("secret %q", s)
	}
	h1, _ := HashSecret(s)
	h2, _ := HashSecret(s)
	if string(h1) == string(h2) {
		t.Fatal("hashes not salted")
	}
	if !CheckSecret(h1, s) || !CheckSecret(h2, s) || CheckSecret(h1, s+"x") || CheckSecret(h1[:10], s) || CheckSecret(nil, s) {
		t.Fatal("CheckSecret wrong")
	}
}

func TestConfig(t *testing.T) {
	st := openStore(t)
	for name, cfg := range map[string]Config{
		"no issuer":      {},
		"relative":       {Issuer: "/x"},
		"rotation < ttl": {Issuer: "https://a.example", TokenTTL: 2 * time.Hour, KeyRotation: time.Hour},
	} {
		if _, err := New(cfg, st, nil, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(Config{Issuer: "https://a.example"}, nil, nil, nil); err == nil {
		t.Error("nil store accepted")
	}
}

func TestMetricsExportedAtZero(t *testing.T) {
	e := newEnv(t, nil)
	for _, o := range tokenOutcomes {
		if v := metricValue(t, e.reg, "otphub_oauth_token_requests_total", "outcome", o); v != 0 {
			t.Fatalf("%s = %v", o, v)
		}
	}
}

func BenchmarkTokenVerify(b *testing.B) {
	e := newEnv(b, nil)
	tok := e.token(b, e.id, e.sec)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.iss.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTokenIssue(b *testing.B) {
	e := newEnv(b, nil)
	b.ResetTimer()
	for b.Loop() {
		e.token(b, e.id, e.sec)
	}
}

// metricValue returns the value of the counter name{label=value}, failing
// when the series is not exported.
func metricValue(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("series %s{%s=%q} not exported", name, label, value)
	return 0
}

func TestRunStopsWithContext(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RefreshInterval = time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.iss.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

// FuzzVerify: no input is accepted as a token and none panics.
func FuzzVerify(f *testing.F) {
	e := newEnv(f, nil)
	good := e.token(f, e.id, e.sec)
	f.Add(good[:len(good)-2])
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		if tok == good {
			return
		}
		if p, err := e.iss.Verify(context.Background(), tok); err == nil {
			t.Fatalf("accepted %q as %+v", tok, p)
		}
	})
}

// TestVerifiedTokenCacheKeepsChecks shows the verified-token cache saves
// only the signature check: a token verified once still expires, and a
// forged token sharing nothing with it is still refused.
func TestVerifiedTokenCacheKeepsChecks(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.token(t, e.id, e.sec)
	ctx := context.Background()
	for range 3 {
		if _, err := e.iss.Verify(ctx, tok); err != nil {
			t.Fatalf("fresh token refused: %v", err)
		}
	}
	dot := strings.LastIndex(tok, ".")
	sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	if err != nil {
		t.Fatal(err)
	}
	sig[len(sig)/2] ^= 0xff
	if _, err := e.iss.Verify(ctx, tok[:dot+1]+base64.RawURLEncoding.EncodeToString(sig)); err == nil {
		t.Fatal("a token with a changed signature was accepted")
	}
	e.clk.Add(2 * time.Hour)
	if _, err := e.iss.Verify(ctx, tok); err == nil {
		t.Fatal("a cached token was accepted after it expired")
	}
}

// TestSETKeyIsNotTheTokenKey: SET deliveries are signed with a key of their
// own (RFC 8935 pushes must not be signed with the access-token key), both
// keys are in the JWKS under distinct kids, a SET key rotates on its own,
// and a JWT signed with the SET key is never accepted as an access token.
func TestSETKeyIsNotTheTokenKey(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	setKid, setKey := e.iss.SigningKey()
	tokKid, tokKey := e.iss.tokenKey()
	if setKid == tokKid || !strings.HasPrefix(setKid, setKidPrefix) || strings.HasPrefix(tokKid, setKidPrefix) {
		t.Fatalf("SET kid %q, token kid %q: want distinct, the SET one prefixed %q", setKid, tokKid, setKidPrefix)
	}
	if setKey.(*ecdsa.PrivateKey).Equal(tokKey) {
		t.Fatal("the SET key is the token key")
	}
	kids := jwksKids(t, e)
	for _, kid := range []string{setKid, tokKid} {
		k, ok := kids[kid]
		if !ok || k.Use != "sig" || k.Alg != "ES256" {
			t.Fatalf("JWKS entry of %s = %+v (present %v)", kid, k, ok)
		}
	}
	// A token forged with the SET key (valid claims, SET kid) is refused.
	now := e.clk.Now()
	c := Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: "https://otphub.example", Subject: e.id,
		Audience: jwt.ClaimStrings{"https://otphub.example"}, ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		IssuedAt: jwt.NewNumericDate(now), ID: "x"}, Scope: "otp", Org: "acme", OrgID: e.org.ID}
	tk := jwt.NewWithClaims(jwt.SigningMethodES256, c)
	tk.Header["kid"] = setKid
	forged, err := tk.SignedString(setKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.iss.Verify(ctx, forged); err == nil {
		t.Fatal("a JWT signed with the SET key was accepted as an access token")
	}
	// Another replica over the same store signs SETs with the same key.
	replica, err := New(Config{Issuer: "https://otphub.example", Now: e.clk.Now}, e.st, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if k, _ := replica.SigningKey(); k != setKid {
		t.Fatalf("replica SET kid %s, want %s", k, setKid)
	}
}
