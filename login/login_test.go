package login_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/otphub/otphub/app/apptest"
)

// These tests speak HTTP to a whole otphub with a plain client and no
// JavaScript: the prompt's forms work on their own. The browser tests are
// in examples/login-app.

type env struct {
	t                       *testing.T
	srv                     *apptest.TestServer
	token                   string
	clientID, secret, appID string
	redirect                string
}

const mobile = "+94771234567"

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, srv: apptest.Start(t), redirect: "https://rp.example/cb"}
	creds := regexp.MustCompile(`OTPHUB_ADMIN_CLIENT_ID=(\S+)\nOTPHUB_ADMIN_CLIENT_SECRET=(\S+)`).FindStringSubmatch(e.srv.Stdout.String())
	admin := e.clientToken(creds[1], creds[2])
	e.do(admin, "POST", "/api/v1/orgs", `{"name":"shop"}`, 201)
	e.do(admin, "POST", "/api/v1/orgs", `{"name":"other"}`, 201)
	c := e.do(admin, "POST", "/api/v1/orgs/shop/clients", `{"name":"admin","scopes":["otp","admin"]}`, 201)
	e.token = e.clientToken(c["clientId"].(string), c["clientSecret"].(string))
	e.do(e.token, "PUT", "/api/v1/orgs/shop/sms-provider", `{"type":"console"}`, 200)
	e.do(e.token, "PUT", "/api/v1/orgs/shop/sms-otp/settings", `{"backupCodesEnabled":true}`, 200)
	a := e.do(e.token, "POST", "/api/v1/orgs/shop/applications",
		`{"name":"Shop","redirectUris":["`+e.redirect+`"],"loginFlow":{"firstFactors":["pwd"],"backupCodes":true}}`, 201)
	e.clientID, e.secret, e.appID = a["clientId"].(string), a["clientSecret"].(string), a["id"].(string)
	return e
}

func (e *env) clientToken(id, secret string) string {
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest("POST", e.srv.URL+"/oauth2/token", strings.NewReader(form.Encode()))
	req.SetBasicAuth(id, secret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var b map[string]any
	e.send(req, 200, &b)
	return b["access_token"].(string)
}

func (e *env) send(req *http.Request, want int, out any) *http.Response {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		e.t.Fatalf("%s %s: %d %s, want %d", req.Method, req.URL.Path, resp.StatusCode, raw, want)
	}
	if out != nil {
		_ = json.Unmarshal(raw, out)
	}
	return resp
}

func (e *env) do(token, method, path, body string, want int) map[string]any {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	var out map[string]any
	e.send(req, want, &out)
	return out
}

// browser is a cookie-keeping client that does not follow redirects.
func browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

const verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-0123456789"

func challenge(v string) string {
	s := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

// authURL is a valid authorization request, changed by mod (claims) and
// query (query parameters).
func (e *env) authURL(mod func(jwt.MapClaims), query func(url.Values)) string {
	now := time.Now()
	claims := jwt.MapClaims{
		"iss": e.clientID, "aud": e.srv.URL, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(), "jti": uuid.NewString(),
		"login_hint": "alice", "phone_number": mobile, "amr": []string{"pwd"},
	}
	if mod != nil {
		mod(claims)
	}
	ro, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(e.secret))
	if err != nil {
		e.t.Fatal(err)
	}
	q := url.Values{"client_id": {e.clientID}, "response_type": {"code"}, "redirect_uri": {e.redirect}, "scope": {"openid"},
		"state": {"st"}, "nonce": {"nn"}, "code_challenge": {challenge(verifier)}, "code_challenge_method": {"S256"}, "request": {ro}}
	if query != nil {
		query(q)
	}
	return e.srv.URL + "/oauth2/authorize?" + q.Encode()
}

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// start runs the authorization request in c and returns the prompt's URL,
// its HTML and the OTP sent.
func (e *env) start(c *http.Client, u string) (prompt, html, otp string) {
	t := e.t
	before := strings.Count(e.srv.Stdout.String(), mobile)
	resp, _ := get(t, c, u)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/login/") {
		t.Fatalf("authorize: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	prompt = e.srv.URL + resp.Header.Get("Location")
	resp, html = get(t, c, prompt)
	if resp.StatusCode != 200 {
		t.Fatalf("prompt: %d %s", resp.StatusCode, html)
	}
	re := regexp.MustCompile(`to="\` + mobile + `" id="[^"]+" body="[^"]*? is ([0-9]{6})\.`)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindAllStringSubmatch(e.srv.Stdout.String(), -1); len(m) > before {
			return prompt, html, m[len(m)-1][1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no SMS")
	return
}

func (e *env) redeem(t *testing.T, form url.Values, basic bool) (int, map[string]any) {
	t.Helper()
	if !basic {
		form.Set("client_id", e.clientID)
		form.Set("client_secret", e.secret)
	}
	req, _ := http.NewRequest("POST", e.srv.URL+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(url.QueryEscape(e.clientID), url.QueryEscape(e.secret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestSignInWithoutJavaScript(t *testing.T) {
	e := newEnv(t)
	c := browser()
	prompt, html, otp := e.start(c, e.authURL(nil, nil))

	// The flow cookie.
	u, _ := url.Parse(prompt)
	var flowCookie *http.Cookie
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "otphub_login" {
			flowCookie = ck
		}
	}
	if flowCookie == nil {
		t.Fatal("no flow cookie")
	}
	// The page's security headers.
	resp, _ := get(t, c, prompt)
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "form-action 'self' https://rp.example", "default-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(html, "<script>") || strings.Contains(html, "onclick") {
		t.Error("inline script allowed or present")
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", resp.Header.Get("Cache-Control"))
	}
	for _, want := range []string{`autocomplete="one-time-code"`, `inputmode="numeric"`, `<label for="code">`, `aria-live="assertive"`, `lang="en"`} {
		if !strings.Contains(html, want) {
			t.Errorf("prompt lacks %s", want)
		}
	}
	csrf := csrfField.FindStringSubmatch(html)[1]

	// Another browser cannot use the flow.
	if resp, _ := get(t, browser(), prompt); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("another browser: %d", resp.StatusCode)
	}
	// No CSRF token, or a wrong one: refused, nothing consumed.
	if resp, _ := post(t, c, prompt+"/verify", url.Values{"code": {otp}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("no csrf: %d", resp.StatusCode)
	}
	resp, _ = post(t, c, prompt+"/verify", url.Values{"csrf": {csrf}, "code": {otp}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("verify: %d", resp.StatusCode)
	}
	back, _ := url.Parse(resp.Header.Get("Location"))
	code := back.Query().Get("code")
	if back.Host != "rp.example" || code == "" || back.Query().Get("state") != "st" || back.Query().Get("iss") != e.srv.URL {
		t.Fatalf("redirect %s", back)
	}
	// The flow is over.
	if resp, _ := get(t, c, prompt); resp.StatusCode == 200 {
		t.Fatal("the prompt still shows after completion")
	}

	// client_secret_post, then the ID token through go-oidc.
	status, tok := e.redeem(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {e.redirect}, "code_verifier": {verifier}}, false)
	if status != 200 || tok["id_token"] == nil || tok["token_type"] != "Bearer" {
		t.Fatalf("token: %d %v", status, tok)
	}
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: e.clientID}).Verify(ctx, tok["id_token"].(string))
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		AMR      []string `json:"amr"`
		ACR      string   `json:"acr"`
		AuthTime int64    `json:"auth_time"`
		AZP      string   `json:"azp"`
	}
	_ = idt.Claims(&claims)
	if idt.Subject != "alice" || idt.Nonce != "nn" || strings.Join(claims.AMR, " ") != "pwd sms otp mfa" ||
		claims.ACR == "" || claims.AZP != e.clientID || time.Since(time.Unix(claims.AuthTime, 0)) > time.Minute {
		t.Fatalf("claims sub=%s nonce=%s %+v", idt.Subject, idt.Nonce, claims)
	}
	// The access token is not an admin API token.
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/orgs/shop", nil)
	req.Header.Set("Authorization", "Bearer "+tok["access_token"].(string))
	e.send(req, http.StatusUnauthorized, nil)

	// Neither the OTP nor the code is in a log line.
	logs := e.srv.Logs.String()
	if strings.Contains(logs, otp) || strings.Contains(logs, code) || strings.Contains(logs, mobile) {
		t.Fatal("the OTP, the code or the mobile number appears in the logs")
	}
}

func TestAuthorizeErrors(t *testing.T) {
	e := newEnv(t)
	redirected := func(u string) url.Values {
		t.Helper()
		resp, body := get(t, browser(), u)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusSeeOther || loc.Host != "rp.example" {
			t.Fatalf("%d %s %s", resp.StatusCode, resp.Header.Get("Location"), body)
		}
		return loc.Query()
	}
	cases := []struct {
		name  string
		mod   func(jwt.MapClaims)
		query func(url.Values)
		code  string
		desc  string
	}{
		{"wrong audience", func(c jwt.MapClaims) { c["aud"] = "https://other.example" }, nil, "invalid_request_object", "aud"},
		{"expired", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() }, nil, "invalid_request_object", "expired"},
		{"too long-lived", func(c jwt.MapClaims) { c["exp"] = time.Now().Add(time.Hour).Unix() }, nil, "invalid_request_object", "at most"},
		{"no jti", func(c jwt.MapClaims) { delete(c, "jti") }, nil, "invalid_request_object", "jti"},
		{"wrong issuer", func(c jwt.MapClaims) { c["iss"] = "someone" }, nil, "invalid_request_object", "iss"},
		{"no amr", func(c jwt.MapClaims) { delete(c, "amr") }, nil, "invalid_request_object", "amr"},
		{"amr not accepted", func(c jwt.MapClaims) { c["amr"] = []string{"fed"} }, nil, "invalid_request_object", "amr"},
		{"no phone", func(c jwt.MapClaims) { delete(c, "phone_number") }, nil, "invalid_request_object", "phone_number"},
		{"invalid phone", func(c jwt.MapClaims) { c["phone_number"] = "+999" }, nil, "invalid_request_object", "phone_number"},
		{"no user", func(c jwt.MapClaims) { delete(c, "login_hint") }, nil, "invalid_request_object", "login_hint"},
		{"no request object", nil, func(q url.Values) { q.Del("request") }, "invalid_request_object", "required"},
		{"request_uri", nil, func(q url.Values) { q.Set("request_uri", "https://x/ro") }, "request_uri_not_supported", ""},
		{"token response type", nil, func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type", ""},
		{"claims win: response type", func(c jwt.MapClaims) { c["response_type"] = "id_token" }, nil, "unsupported_response_type", ""},
		{"no openid", nil, func(q url.Values) { q.Set("scope", "profile") }, "invalid_scope", ""},
		{"plain PKCE", nil, func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request", "PKCE"},
		{"no PKCE", nil, func(q url.Values) { q.Del("code_challenge") }, "invalid_request", "PKCE"},
		{"no nonce", nil, func(q url.Values) { q.Del("nonce") }, "invalid_request", "nonce"},
		{"prompt none", nil, func(q url.Values) { q.Set("prompt", "none") }, "login_required", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := redirected(e.authURL(tc.mod, tc.query))
			if q.Get("error") != tc.code || !strings.Contains(q.Get("error_description"), tc.desc) || q.Get("state") != "st" {
				t.Fatalf("got %v, want error=%s (%q)", q, tc.code, tc.desc)
			}
		})
	}
	t.Run("wrong signature", func(t *testing.T) {
		secret := e.secret
		e.secret = "not-the-secret"
		bad := e.authURL(nil, nil)
		e.secret = secret
		if q := redirected(bad); q.Get("error") != "invalid_request_object" || !strings.Contains(q.Get("error_description"), "signature") {
			t.Fatalf("got %v", q)
		}
	})
	// Never a redirect: unknown client, unregistered or mismatched redirect URI.
	for name, u := range map[string]string{
		"unknown client":            e.srv.URL + "/oauth2/authorize?client_id=nope&redirect_uri=" + url.QueryEscape(e.redirect),
		"unregistered redirect":     e.authURL(nil, func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") }),
		"request object redirect":   e.authURL(func(c jwt.MapClaims) { c["redirect_uri"] = "https://evil.example/cb" }, nil),
		"bad request, bad redirect": e.authURL(func(c jwt.MapClaims) { c["aud"] = "x" }, func(q url.Values) { q.Set("redirect_uri", "https://evil.example/cb") }),
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := get(t, browser(), u)
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(body, "Sign-in problem") {
				t.Fatalf("%d Location %q", resp.StatusCode, resp.Header.Get("Location"))
			}
		})
	}
}

func TestTokenErrors(t *testing.T) {
	e := newEnv(t)
	secret := e.secret
	codeOf := func() string {
		c := browser()
		prompt, html, otp := e.start(c, e.authURL(nil, nil))
		resp, _ := post(t, c, prompt+"/verify", url.Values{"csrf": {csrfField.FindStringSubmatch(html)[1]}, "code": {otp}})
		loc, _ := url.Parse(resp.Header.Get("Location"))
		return loc.Query().Get("code")
	}
	form := func(code, redirect, v string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {v}}
	}
	code := codeOf()
	e.secret = "wrong"
	if status, b := e.redeem(t, form(code, e.redirect, verifier), true); status != 401 || b["error"] != "invalid_client" {
		t.Fatalf("wrong secret: %d %v", status, b)
	}
	e.secret = secret
	if status, b := e.redeem(t, form(code, "https://rp.example/other", verifier), true); status != 400 || b["error"] != "invalid_grant" {
		t.Fatalf("wrong redirect_uri: %d %v", status, b)
	}
	// Spent by the wrong attempt.
	if status, b := e.redeem(t, form(code, e.redirect, verifier), true); status != 400 || b["error"] != "invalid_grant" {
		t.Fatalf("after a wrong attempt: %d %v", status, b)
	}
	if status, b := e.redeem(t, form(codeOf(), e.redirect, "short"), true); status != 400 || b["error"] != "invalid_request" {
		t.Fatalf("malformed verifier: %d %v", status, b)
	}
	if status, b := e.redeem(t, form("made-up", e.redirect, verifier), false); status != 400 || b["error"] != "invalid_grant" {
		t.Fatalf("unknown code: %d %v", status, b)
	}
	// Basic auth works.
	if status, b := e.redeem(t, form(codeOf(), e.redirect, verifier), true); status != 200 || b["id_token"] == nil {
		t.Fatalf("basic: %d %v", status, b)
	}
}

func TestBackupCodeAndCancel(t *testing.T) {
	e := newEnv(t)
	codes := e.do(e.token, "POST", "/api/v1/orgs/shop/users/alice/backup-codes", "", 201)["codes"].([]any)
	c := browser()
	prompt, html, _ := e.start(c, e.authURL(nil, nil))
	csrf := csrfField.FindStringSubmatch(html)[1]
	if _, page := get(t, c, prompt+"?method=backup"); !strings.Contains(page, `<label for="backup">Backup code</label>`) {
		t.Fatalf("backup form:\n%s", page)
	}
	resp, page := post(t, c, prompt+"/backup", url.Values{"csrf": {csrf}, "backup": {"AAAAA-AAAAA"}})
	if resp.StatusCode != 400 || !strings.Contains(page, "That code is not right. Attempts left: 4.") {
		t.Fatalf("wrong backup code: %d", resp.StatusCode)
	}
	resp, _ = post(t, c, prompt+"/backup", url.Values{"csrf": {csrf}, "backup": {codes[0].(string)}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("backup: %d", resp.StatusCode)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	status, tok := e.redeem(t, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {e.redirect}, "code_verifier": {verifier}}, true)
	if status != 200 {
		t.Fatalf("token: %d %v", status, tok)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok["id_token"].(string), ".")[1])
	var claims struct{ AMR []string }
	_ = json.Unmarshal(payload, &claims)
	if strings.Join(claims.AMR, " ") != "pwd otp mfa" {
		t.Fatalf("amr %v", claims.AMR)
	}

	// Cancel goes back with access_denied.
	c = browser()
	prompt, html, _ = e.start(c, e.authURL(nil, nil))
	resp, _ = post(t, c, prompt+"/cancel", url.Values{"csrf": {csrfField.FindStringSubmatch(html)[1]}})
	loc, _ = url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc.Query().Get("error") != "access_denied" {
		t.Fatalf("cancel: %d %s", resp.StatusCode, loc)
	}
}

func TestLockoutAndMetrics(t *testing.T) {
	e := newEnv(t)
	c := browser()
	prompt, html, otp := e.start(c, e.authURL(nil, nil))
	csrf := csrfField.FindStringSubmatch(html)[1]
	wrong := "000000"
	if otp == wrong {
		wrong = "111111"
	}
	for i := 4; i >= 0; i-- {
		resp, page := post(t, c, prompt+"/verify", url.Values{"csrf": {csrf}, "code": {wrong}})
		if resp.StatusCode != 400 || !strings.Contains(page, "Attempts left: "+string(rune('0'+i))+".") {
			t.Fatalf("wrong code %d: %d", 5-i, resp.StatusCode)
		}
	}
	resp, page := post(t, c, prompt+"/verify", url.Values{"csrf": {csrf}, "code": {otp}})
	if resp.StatusCode != 429 || !strings.Contains(page, "Too many wrong codes. Try again in 15 minutes.") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("locked out: %d", resp.StatusCode)
	}
	// A locked-out user cannot start another flow's SMS either; the prompt says why.
	_, html, _ = e.startNoSMS(browser(), e.authURL(nil, nil))
	if !strings.Contains(html, "Too many wrong codes.") || !strings.Contains(html, "Send a code") {
		t.Fatal("a new flow of a locked-out user does not say so")
	}
	families, err := e.srv.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		if f.GetName() == "otphub_login_outcomes_total" {
			for _, m := range f.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if got["started"] != 2 || got["invalid_code"] != 5 || got["locked_out"] != 2 || got["send_refused"] != 0 {
		t.Fatalf("outcomes %v", got)
	}
}

// startNoSMS runs an authorization request whose SMS is refused and
// returns the prompt.
func (e *env) startNoSMS(c *http.Client, u string) (prompt, html string, status int) {
	resp, _ := get(e.t, c, u)
	prompt = e.srv.URL + resp.Header.Get("Location")
	resp, html = get(e.t, c, prompt)
	return prompt, html, resp.StatusCode
}

func TestApplicationsAPI(t *testing.T) {
	e := newEnv(t)
	for _, body := range []string{
		`{"name":"x","redirectUris":["http://rp.example/cb"],"loginFlow":{"firstFactors":["pwd"]}}`,
		`{"name":"x","redirectUris":["https://rp.example/cb#f"],"loginFlow":{"firstFactors":["pwd"]}}`,
		`{"name":"x","redirectUris":["https://u:p@rp.example/cb"],"loginFlow":{"firstFactors":["pwd"]}}`,
		`{"name":"x","redirectUris":["/cb"],"loginFlow":{"firstFactors":["pwd"]}}`,
		`{"name":"x","redirectUris":[],"loginFlow":{"firstFactors":["pwd"]}}`,
		`{"name":"x","redirectUris":["https://rp.example/cb"],"loginFlow":{"firstFactors":[]}}`,
		`{"name":"x","redirectUris":["https://rp.example/cb"],"loginFlow":{"firstFactors":["sms"]}}`,
		`{"name":"x","redirectUris":["https://rp.example/cb"],"loginFlow":{"firstFactors":["pwd"],"secondFactor":"email"}}`,
		`{"name":"x","redirectUris":["https://rp.example/cb"]}`,
		`{"name":"","redirectUris":["https://rp.example/cb"],"loginFlow":{"firstFactors":["pwd"]}}`,
	} {
		if b := e.do(e.token, "POST", "/api/v1/orgs/shop/applications", body, 400); b["error"] != "invalid_field" {
			t.Fatalf("%s: %v", body, b)
		}
	}
	a := e.do(e.token, "POST", "/api/v1/orgs/shop/applications",
		`{"name":"Native","redirectUris":["http://127.0.0.1:7000/cb","http://[::1]:7000/cb"],"loginFlow":{"firstFactors":["fed","magic_link"]}}`, 201)
	id := a["id"].(string)
	got := e.do(e.token, "GET", "/api/v1/orgs/shop/applications/"+id, "", 200)
	if _, ok := got["clientSecret"]; ok || got["clientId"] != a["clientId"] {
		t.Fatalf("get %v", got)
	}
	upd := e.do(e.token, "PUT", "/api/v1/orgs/shop/applications/"+id,
		`{"name":"Native 2","redirectUris":["https://rp.example/n"],"loginFlow":{"firstFactors":["pwd"],"backupCodes":true}}`, 200)
	if upd["name"] != "Native 2" || upd["loginFlow"].(map[string]any)["backupCodes"] != true || upd["clientId"] != a["clientId"] {
		t.Fatalf("put %v", upd)
	}
	// Rotating the secret: the old one stops working at the token endpoint.
	old := e.secret
	rot := e.do(e.token, "POST", "/api/v1/orgs/shop/applications/"+e.appID+"/secret", "", 200)
	if rot["clientSecret"] == "" || rot["clientSecret"] == old || rot["clientId"] != e.clientID {
		t.Fatalf("rotate %v", rot)
	}
	if status, b := e.redeem(t, url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {e.redirect}, "code_verifier": {verifier}}, true); status != 401 || b["error"] != "invalid_client" {
		t.Fatalf("old secret: %d %v", status, b)
	}
	e.secret = rot["clientSecret"].(string)
	if status, b := e.redeem(t, url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "redirect_uri": {e.redirect}, "code_verifier": {verifier}}, true); status != 400 || b["error"] != "invalid_grant" {
		t.Fatalf("new secret: %d %v", status, b)
	}
	if list := e.do(e.token, "GET", "/api/v1/orgs/shop/applications", "", 200)["applications"].([]any); len(list) != 2 {
		t.Fatalf("list %v", list)
	}
	// Another org's admin sees nothing of it.
	e.do(e.token, "GET", "/api/v1/orgs/other/applications", "", 403)
	e.do(e.token, "DELETE", "/api/v1/orgs/shop/applications/"+id, "", 204)
	e.do(e.token, "GET", "/api/v1/orgs/shop/applications/"+id, "", 404)
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t)
	var d map[string]any
	req, _ := http.NewRequest("GET", e.srv.URL+"/.well-known/openid-configuration", nil)
	e.send(req, 200, &d)
	if d["issuer"] != e.srv.URL || d["authorization_endpoint"] != e.srv.URL+"/oauth2/authorize" ||
		d["jwks_uri"] != e.srv.URL+"/.well-known/jwks.json" || d["request_parameter_supported"] != true {
		t.Fatalf("discovery %v", d)
	}
	for key, want := range map[string]string{
		"response_types_supported": "code", "code_challenge_methods_supported": "S256",
		"id_token_signing_alg_values_supported": "ES256", "request_object_signing_alg_values_supported": "HS256",
		"amr_values_supported": "sms", "token_endpoint_auth_methods_supported": "client_secret_post",
	} {
		found := false
		for _, v := range d[key].([]any) {
			found = found || v == want
		}
		if !found {
			t.Errorf("%s lacks %s: %v", key, want, d[key])
		}
	}
}

// TestWebOTP: with the org's webOtp on, the prompt's SMS ends with the
// origin-bound line and the page asks the script to use it.
func TestWebOTP(t *testing.T) {
	e := newEnv(t)
	e.do(e.token, "PUT", "/api/v1/orgs/shop/sms-otp/settings", `{"webOtp":true}`, 200)
	_, html, otp := e.start(browser(), e.authURL(nil, nil))
	host := strings.TrimPrefix(e.srv.URL, "http://")
	host = host[:strings.LastIndex(host, ":")]
	if !strings.Contains(e.srv.Stdout.String(), `\n\n@`+host+` #`+otp+`"`) {
		t.Fatalf("no WebOTP line for %s in:\n%s", host, e.srv.Stdout.String())
	}
	if !strings.Contains(html, `data-webotp="on"`) || !strings.Contains(html, `<script src="/login/assets/login.js" defer></script>`) {
		t.Fatal("the page does not enable WebOTP")
	}
	resp, js := get(t, browser(), e.srv.URL+"/login/assets/login.js")
	if resp.StatusCode != 200 || !strings.Contains(js, "navigator.credentials.get({ otp: { transport: [\"sms\"] }") ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("login.js: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp, _ := get(t, browser(), e.srv.URL+"/login/assets/nope.js"); resp.StatusCode != 404 {
		t.Fatalf("unknown asset: %d", resp.StatusCode)
	}
}
