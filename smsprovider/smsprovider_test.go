package smsprovider

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/egress"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/oauth"
	"github.com/otphub/otphub/smsprovider/console"
	"github.com/otphub/otphub/smsprovider/custom"
	"github.com/otphub/otphub/smsprovider/provider"
	"github.com/otphub/otphub/smsprovider/twilio"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/sqlite"
)

const (
	twSID   = "AC0123456789abcdef0123456789abcdef"
	twToken = "0123456789abcdef0123456789abcdef"
)

// syncBuffer is the console provider's "stdout".
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type env struct {
	st      store.Store
	svc     *Service
	srv     *httptest.Server
	org     store.Org
	admin   string // org admin token
	otpOnly string // token of an org client without admin
	other   string // admin token of another org
	platf   string // platform admin token
	stdout  *syncBuffer
	clk     *clock
	reg     *prometheus.Registry
}

type envOpts struct {
	noConsole, noHTTP bool
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	ctx := context.Background()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	st, err := sqlite.Open(ctx, t.TempDir(), store.Options{EncryptionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{st: st, stdout: &syncBuffer{}, clk: &clock{t: time.Date(2026, 11, 29, 1, 0, 0, 0, time.UTC)}, reg: prometheus.NewRegistry()}
	if e.org, err = st.CreateOrg(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	other, _ := st.CreateOrg(ctx, "other")
	iss, err := oauth.New(oauth.Config{Issuer: "http://otphub.test", Now: e.clk.Now}, st, nil, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	token := func(id string, org store.Org, scopes []string, platform bool) string {
		c := store.Client{ClientID: id, OrgID: org.ID, Name: id, SecretHash: []byte("unused"), Scopes: scopes, PlatformAdmin: platform, CreatedAt: e.clk.Now()}
		if err := st.CreateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		tok, err := iss.Issue(c, org, scopes)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	e.admin = token("acme-admin", e.org, []string{"admin"}, false)
	e.otpOnly = token("acme-otp", e.org, []string{"otp"}, false)
	e.other = token("other-admin", other, []string{"admin"}, false)
	e.platf = token("platform", store.Org{}, nil, true)

	eg, err := egress.New(egress.Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	e.svc, err = New(Config{AllowConsole: !o.noConsole, AllowHTTP: !o.noHTTP, Stdout: e.stdout, Now: e.clk.Now},
		st, eg.HTTP(), eg, nil, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	e.svc.Register(mux, iss)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

// do sends a request and decodes the JSON answer.
func (e *env) do(t *testing.T, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: %d non-JSON answer %q", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, out
}

// fakeTwilio answers CreateMessage: Basic auth and path checked.
func fakeTwilio(t *testing.T) (*httptest.Server, *[]url.Values) {
	var mu sync.Mutex
	var forms []url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/2010-04-01/Accounts/"+twSID+"/Messages.json" || r.Method != http.MethodPost {
			w.WriteHeader(404)
			_, _ = io.WriteString(w, `{"code":20404,"message":"not found","status":404}`)
			return
		}
		if subtle.ConstantTimeCompare([]byte(u+":"+p), []byte(twSID+":"+twToken)) != 1 {
			w.WriteHeader(401)
			_, _ = io.WriteString(w, `{"code":20003,"message":"Authenticate","more_info":"https://www.twilio.com/docs/errors/20003","status":401}`)
			return
		}
		_ = r.ParseForm()
		mu.Lock()
		forms = append(forms, r.PostForm)
		mu.Unlock()
		if r.PostForm.Get("To") == "+15005550001" {
			w.WriteHeader(400)
			_, _ = io.WriteString(w, `{"code":21211,"message":"The 'To' number is not a valid phone number.","status":400}`)
			return
		}
		w.WriteHeader(201)
		_, _ = io.WriteString(w, `{"sid":"SM0123456789abcdef0123456789abcdef","status":"queued"}`)
	}))
	t.Cleanup(srv.Close)
	return srv, &forms
}

// gateway is a custom SMS gateway receiver.
func gateway(t *testing.T, status int) (*httptest.Server, chan *http.Request, chan []byte) {
	reqs, bodies := make(chan *http.Request, 10), make(chan []byte, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		reqs <- r
		bodies <- b
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, reqs, bodies
}

func twilioBody(base string) map[string]any {
	return map[string]any{"type": "twilio", "accountSid": twSID, "authToken": twToken, "sender": "+14155550100", "baseUrl": base}
}

func TestTwilioConfigLifecycle(t *testing.T) {
	e := newEnv(t, envOpts{})
	tw, forms := fakeTwilio(t)
	const path = "/api/v1/orgs/acme/sms-provider"

	if code, body := e.do(t, "GET", path, e.admin, nil); code != 404 || body["error"] != "provider_not_configured" {
		t.Fatalf("GET before PUT: %d %v", code, body)
	}
	code, body := e.do(t, "PUT", path, e.admin, twilioBody(tw.URL+"/"))
	if code != 200 || body["authToken"] != "****cdef" || body["accountSid"] != twSID || body["slot"] != "primary" || body["baseUrl"] != tw.URL {
		t.Fatalf("PUT: %d %v", code, body)
	}
	code, body = e.do(t, "GET", path, e.admin, nil)
	if code != 200 || body["authToken"] != "****cdef" || body["type"] != "twilio" || body["updatedAt"] == nil {
		t.Fatalf("GET: %d %v", code, body)
	}
	// The store holds the full token (encrypted at rest by the adapter).
	p, err := e.st.GetSMSProvider(context.Background(), e.org.ID, store.ProviderPrimary)
	if err != nil || !strings.Contains(string(p.Config), twToken) || p.Type != "twilio" {
		t.Fatalf("stored %s %v", p.Config, err)
	}

	// The GET body, edited and PUT back with the masked token, keeps it.
	body["sender"] = "MyApp"
	if code, got := e.do(t, "PUT", path, e.admin, body); code != 200 || got["sender"] != "MyApp" {
		t.Fatalf("PUT masked: %d %v", code, got)
	}
	p, _ = e.st.GetSMSProvider(context.Background(), e.org.ID, store.ProviderPrimary)
	if !strings.Contains(string(p.Config), twToken) {
		t.Fatal("the masked PUT lost the token")
	}
	// …but not for another account.
	body["accountSid"] = "AC" + strings.Repeat("f", 32)
	if code, got := e.do(t, "PUT", path, e.admin, body); code != 400 || got["field"] != "authToken" {
		t.Fatalf("PUT masked, other account: %d %v", code, got)
	}

	// A test send goes through twilio-go to the fake.
	code, body = e.do(t, "POST", path+"/test", e.admin, map[string]any{"mobile": "+94771234567", "message": "hello"})
	if code != 200 || body["ok"] != true || body["providerMessageId"] != "SM0123456789abcdef0123456789abcdef" || body["statusCode"] != 201.0 {
		t.Fatalf("test: %d %v", code, body)
	}
	if f := (*forms)[0]; f.Get("To") != "+94771234567" || f.Get("Body") != "hello" || f.Get("From") != "MyApp" || f.Get("ValidityPeriod") != "300" {
		t.Fatalf("form %v", f)
	}
	code, body = e.do(t, "POST", path+"/test", e.admin, map[string]any{"mobile": "+15005550001"})
	if code != 200 || body["ok"] != false || body["reason"] != "provider_refused" || body["statusCode"] != 400.0 || !strings.Contains(body["error"].(string), "21211") {
		t.Fatalf("test refused: %d %v", code, body)
	}
	if got := counter(t, e.reg, "otphub_sms_provider_tests_total", "failed"); got != 1 {
		t.Fatalf("failed tests metric = %v", got)
	}

	if code, _ := e.do(t, "DELETE", path, e.admin, nil); code != 204 {
		t.Fatalf("DELETE: %d", code)
	}
	if code, _ := e.do(t, "GET", path, e.admin, nil); code != 404 {
		t.Fatalf("GET after DELETE: %d", code)
	}
	if code, body := e.do(t, "DELETE", path, e.admin, nil); code != 404 || body["error"] != "provider_not_configured" {
		t.Fatalf("DELETE twice: %d %v", code, body)
	}
	if code, body := e.do(t, "POST", path+"/test", e.admin, map[string]any{"mobile": "+94771234567"}); code != 404 {
		t.Fatalf("test without provider: %d %v", code, body)
	}
}

func TestValidation(t *testing.T) {
	e := newEnv(t, envOpts{})
	const path = "/api/v1/orgs/acme/sms-provider"
	with := func(base map[string]any, kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return m
	}
	tw := twilioBody("")
	delete(tw, "baseUrl")
	vo := map[string]any{"type": "vonage", "apiKey": "abcd1234", "apiSecret": "s3cr3tV0nage", "sender": "+14155550100"}
	cu := map[string]any{"type": "custom", "url": "https://127.0.0.1:9/sms", "contentType": "JSON", "method": "POST",
		"payloadTemplate": `{"content": {{body}}, "to": {{mobile}}}`, "headers": "authorisation: qwer1234asdfzxcv"}
	cases := []struct {
		name  string
		body  any
		field string
		msg   string
	}{
		{"unknown type", map[string]any{"type": "sns"}, "type", "must be one of"},
		{"sid", with(tw, "accountSid", "AC123"), "accountSid", "AC followed by 32"},
		{"no token", with(tw, "authToken", nil), "authToken", "required"},
		{"token chars", with(tw, "authToken", "abc-def-ghi-jkl-mno"), "authToken", "letters and digits"},
		{"no sender", with(tw, "sender", nil), "sender", "required unless messagingServiceSid"},
		{"service sid", with(tw, "sender", nil, "messagingServiceSid", "MG1"), "messagingServiceSid", "MG followed by 32"},
		{"sender", with(tw, "sender", "+1 415 555"), "sender", "E.164"},
		{"long alpha sender", with(tw, "sender", "MyVeryLongApp"), "sender", "E.164"},
		{"digits-only alpha", with(vo, "sender", "12345678901234"), "sender", "E.164"},
		{"field of another type", with(tw, "apiKey", "x"), "apiKey", "does not apply to provider type twilio"},
		{"receipts flag of another type", with(vo, "deliveryReceipts", true), "deliveryReceipts", "does not apply to provider type vonage"},
		{"signature method without secret", with(vo, "signatureMethod", "sha256"), "signatureMethod", "needs signatureSecret"},
		{"unknown signature method", with(vo, "signatureSecret", "s3cr3t-signature", "signatureMethod", "sha384"), "signatureMethod", "md5hash, md5, sha1, sha256, sha512"},
		{"signature secret chars", with(vo, "signatureSecret", "has spaces in it"), "signatureSecret", "printable ASCII"},
		{"short receipt secret", with(cu, "receiptSecret", "short"), "receiptSecret", "16 to 256"},
		{"base url query", with(tw, "baseUrl", "https://127.0.0.1/x?y=1"), "baseUrl", "query"},
		{"base url scheme", with(tw, "baseUrl", "ftp://127.0.0.1"), "baseUrl", "https"},
		{"base url creds", with(tw, "baseUrl", "https://u:p@127.0.0.1"), "baseUrl", "credentials"},
		{"base url private", with(tw, "baseUrl", "https://10.0.0.1"), "baseUrl", "not allowed"},
		{"metadata", with(cu, "url", "http://169.254.169.254/latest"), "url", "not allowed"},
		{"vonage key", with(vo, "apiKey", "a b"), "apiKey", "letters and digits"},
		{"vonage secret", with(vo, "apiSecret", "a b"), "apiSecret", "printable"},
		{"vonage masked no stored", with(vo, "apiSecret", "****"), "apiSecret", "masked"},
		{"custom no url", with(cu, "url", nil), "url", "required"},
		{"custom template", with(cu, "payloadTemplate", `{"content": {{body}} "to": {{mobile}}}`), "payloadTemplate", "at byte 21 (line 1, column 22)"},
		{"custom seed typo", with(cu, "payloadTemplate", "{“content”: {{body}},“to”: {{mobile}}}}"), "payloadTemplate", "typographic quote"},
		{"custom placeholder", with(cu, "payloadTemplate", `{"a": {{otp}}}`), "payloadTemplate", "unknown placeholder {{otp}}"},
		{"custom content type", with(cu, "contentType", "XML"), "contentType", "JSON or FORM"},
		{"custom method", with(cu, "method", "PATCH"), "method", "POST or PUT"},
		{"custom header crlf", with(cu, "headers", "x-a: b\r\nHost: evil"), "headers", "control character"},
		{"custom header host", with(cu, "headers", "Host: evil"), "headers", "Host"},
		{"custom masked header no stored", with(cu, "headers", "authorisation: ****zxcv"), "headers", "masked"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := e.do(t, "PUT", path, e.admin, c.body)
			msg, _ := body["message"].(string)
			if code != 400 || body["error"] != "invalid_provider_config" || body["field"] != c.field || !strings.Contains(msg, c.msg) {
				t.Fatalf("%d %v", code, body)
			}
		})
	}
	if _, err := e.st.GetSMSProvider(context.Background(), e.org.ID, store.ProviderPrimary); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a refused PUT was stored: %v", err)
	}
	for name, raw := range map[string]string{
		"unknown field": `{"type":"twilio","bogus":1}`,
		"malformed":     `{"type":`,
		"wrong type":    `{"type":1}`,
		"too large":     `{"type":"custom","payloadTemplate":"` + strings.Repeat("x", 70<<10) + `"}`,
	} {
		code, body := e.do(t, "PUT", path, e.admin, raw)
		if code/100 != 4 || body["error"] == nil {
			t.Errorf("%s: %d %v", name, code, body)
		}
	}

	// Valid configurations of every type.
	for _, b := range []map[string]any{tw, with(tw, "sender", nil, "messagingServiceSid", "MG0123456789abcdef0123456789abcdef"), vo, with(vo, "sender", "My App"), cu,
		with(cu, "contentType", "form", "method", "put", "payloadTemplate", "to={{mobile}}&text={{body}}"), {"type": "console"}} {
		if code, body := e.do(t, "PUT", path, e.admin, b); code != 200 {
			t.Errorf("PUT %v: %d %v", b, code, body)
		}
	}
	// Normalised: upper-case content type and method, canonical headers.
	code, body := e.do(t, "PUT", path, e.admin, with(cu, "contentType", "form", "method", "put", "payloadTemplate", "to={{mobile}}&text={{body}}",
		"headers", "x-api-key: k:e:y:1234567890, x-csrf: true"))
	if code != 200 || body["contentType"] != "FORM" || body["method"] != "PUT" || body["headers"] != "X-Api-Key: ****7890, X-Csrf: ****" {
		t.Fatalf("normalised: %d %v", code, body)
	}
	// Masked headers are kept when PUT back unchanged.
	if code, body := e.do(t, "PUT", path, e.admin, body); code != 200 {
		t.Fatalf("masked headers PUT back: %d %v", code, body)
	}
	p, _ := e.st.GetSMSProvider(context.Background(), e.org.ID, store.ProviderPrimary)
	var pc custom.Config
	_ = json.Unmarshal(p.Config, &pc)
	if pc.Headers != "X-Api-Key: k:e:y:1234567890, X-Csrf: true" {
		t.Fatalf("stored headers %q", pc.Headers)
	}
}

func TestServerPolicies(t *testing.T) {
	e := newEnv(t, envOpts{noConsole: true, noHTTP: true})
	const path = "/api/v1/orgs/acme/sms-provider"
	if code, body := e.do(t, "PUT", path, e.admin, map[string]any{"type": "console"}); code != 400 || body["field"] != "type" ||
		!strings.Contains(body["message"].(string), "--allow-console-provider") {
		t.Fatalf("console: %d %v", code, body)
	}
	if code, body := e.do(t, "PUT", path, e.admin, twilioBody("http://127.0.0.1:1")); code != 400 || body["field"] != "baseUrl" {
		t.Fatalf("http: %d %v", code, body)
	}
	// A console provider stored earlier (the flag since removed) fails as invalid.
	raw, _ := json.Marshal(console.Config{})
	_ = e.st.PutSMSProvider(context.Background(), store.SMSProvider{OrgID: e.org.ID, Slot: store.ProviderPrimary, Type: "console", Config: raw})
	code, body := e.do(t, "POST", path+"/test", e.admin, map[string]any{"mobile": "+94771234567"})
	if code != 200 || body["ok"] != false || body["reason"] != "invalid" {
		t.Fatalf("disabled console: %d %v", code, body)
	}
	if e.stdout.String() != "" {
		t.Fatal("a disabled console provider wrote")
	}
}

func TestAccess(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, c := range []struct {
		token, path string
		code        int
		errCode     string
	}{
		{"", "/api/v1/orgs/acme/sms-provider", 401, "unauthorized"},
		{"garbage", "/api/v1/orgs/acme/sms-provider", 401, "invalid_token"},
		{e.otpOnly, "/api/v1/orgs/acme/sms-provider", 403, "forbidden"},
		{e.other, "/api/v1/orgs/acme/sms-provider/fallback", 403, "forbidden"},
		{e.platf, "/api/v1/orgs/nosuch/sms-provider", 404, "org_not_found"},
		{e.platf, "/api/v1/orgs/acme/sms-provider", 404, "provider_not_configured"},
	} {
		if code, body := e.do(t, "GET", c.path, c.token, nil); code != c.code || body["error"] != c.errCode {
			t.Errorf("GET %s: %d %v, want %d %s", c.path, code, body, c.code, c.errCode)
		}
	}
	if code, _ := e.do(t, "POST", "/api/v1/orgs/acme/sms-provider/test", e.otpOnly, map[string]any{"mobile": "+94771234567"}); code != 403 {
		t.Errorf("test send with otp scope: %d", code)
	}
}

func TestTestSend(t *testing.T) {
	e := newEnv(t, envOpts{})
	gw, reqs, bodies := gateway(t, 200)
	const path = "/api/v1/orgs/acme/sms-provider"
	cfg := map[string]any{"type": "custom", "url": gw.URL + "/send", "payloadTemplate": `{"content": {{body}}, "to": {{mobile}}}`,
		"headers": "authorisation: qwer1234asdfzxcv, x-csrf: true"}
	if code, body := e.do(t, "PUT", path+"/fallback", e.admin, cfg); code != 200 || body["slot"] != "fallback" {
		t.Fatalf("PUT fallback: %d %v", code, body)
	}
	code, body := e.do(t, "POST", path+"/test", e.admin, map[string]any{"mobile": "+94771234567", "slot": "fallback"})
	if code != 200 || body["ok"] != true || body["statusCode"] != 200.0 {
		t.Fatalf("test: %d %v", code, body)
	}
	r, b := <-reqs, <-bodies
	var p struct{ Content, To string }
	if err := json.Unmarshal(b, &p); err != nil || p.To != "+94771234567" || !strings.Contains(p.Content, "acme") ||
		r.Header.Get("Authorisation") != "qwer1234asdfzxcv" || r.Method != "POST" {
		t.Fatalf("gateway got %s %s %v", r.Method, b, r.Header)
	}
	for _, bad := range []map[string]any{{"mobile": "0771234567"}, {"mobile": "+94771234567", "slot": "third"},
		{"mobile": "+94771234567", "message": strings.Repeat("x", 1601)}} {
		if code, body := e.do(t, "POST", path+"/test", e.admin, bad); code != 400 || body["field"] == nil {
			t.Errorf("test %v: %d %v", bad, code, body)
		}
	}
	if code, _ := e.do(t, "POST", path+"/test", e.admin, map[string]any{"mobile": "+94771234567"}); code != 404 {
		t.Errorf("test of the empty primary slot: %d", code)
	}

	// Test sends are real SMS: at most TestSendsPerMinute per org.
	for i := 1; i < 10; i++ {
		if code, body := e.do(t, "POST", path+"/test", e.admin, map[string]any{"mobile": "+94771234567", "slot": "fallback"}); code != 200 {
			t.Fatalf("test %d: %d %v", i, code, body)
		}
		<-reqs
		<-bodies
	}
	if code, body := e.do(t, "POST", path+"/test", e.admin, map[string]any{"mobile": "+94771234567", "slot": "fallback"}); code != 429 || body["error"] != "rate_limited" {
		t.Fatalf("11th test: %d %v", code, body)
	}
	e.clk.Advance(time.Minute)

	// The console provider prints the SMS, clearly marked.
	if code, body := e.do(t, "PUT", path, e.admin, map[string]any{"type": "console"}); code != 200 {
		t.Fatalf("PUT console: %d %v", code, body)
	}
	if code, body := e.do(t, "POST", path+"/test", e.admin, map[string]any{"mobile": "+94771234567", "message": "code 1234"}); code != 200 || body["ok"] != true {
		t.Fatalf("console test: %d %v", code, body)
	}
	if out := e.stdout.String(); !strings.Contains(out, "[otphub console SMS — development only]") || !strings.Contains(out, `to="+94771234567"`) || !strings.Contains(out, `body="code 1234"`) {
		t.Fatalf("stdout %q", out)
	}
}

func TestResolver(t *testing.T) {
	e := newEnv(t, envOpts{})
	tw, forms := fakeTwilio(t)
	gw, _, bodies := gateway(t, 200)
	res := e.svc.Resolver()
	ctx := context.Background()
	ev := &event.SmsOtpNotificationEvent{ID: "3b241101-e2bb-4255-8caf-4136c566a962", OrganizationID: e.org.ID, OrganizationName: "acme",
		SendTo: "+94771234567", MessageBody: "Your code is 123456", IssuedAt: e.clk.Now(), ExpiresAt: e.clk.Now().Add(2 * time.Minute)}

	if ts, err := res.Resolve(ctx, ev); err != nil || len(ts) != 0 {
		t.Fatalf("no provider: %v %v", ts, err)
	}
	const path = "/api/v1/orgs/acme/sms-provider"
	if code, _ := e.do(t, "PUT", path, e.admin, twilioBody(tw.URL)); code != 200 {
		t.Fatal(code)
	}
	if code, _ := e.do(t, "PUT", path+"/fallback", e.admin, map[string]any{"type": "custom", "url": gw.URL, "contentType": "FORM",
		"payloadTemplate": "to={{mobile}}&text={{body}}"}); code != 200 {
		t.Fatal(code)
	}
	ts, err := res.Resolve(ctx, ev) // the PUTs invalidated the cached "none"
	if err != nil || len(ts) != 1 {
		t.Fatalf("resolve: %v %v", ts, err)
	}
	p := ts[0]
	if p.Type != twilio.Type || p.ID != "primary" || p.Endpoint != tw.URL+"#"+twSID || p.Fallback == nil ||
		p.Fallback.Type != custom.Type || p.Fallback.ID != "fallback" || p.Fallback.Endpoint != gw.URL {
		t.Fatalf("target %+v fallback %+v", p, p.Fallback)
	}
	if r := p.Sender.Send(ctx, ev); !r.OK || r.ProviderID == "" {
		t.Fatalf("primary send %+v", r)
	}
	if f := (*forms)[0]; f.Get("ValidityPeriod") != "120" || f.Get("Body") != ev.MessageBody {
		t.Fatalf("form %v", f)
	}
	if r := p.Fallback.Sender.Send(ctx, ev); !r.OK {
		t.Fatalf("fallback send %+v", r)
	}
	if v, _ := url.ParseQuery(string(<-bodies)); v.Get("text") != ev.MessageBody {
		t.Fatalf("gateway got %v", v)
	}

	// Lookup for retries.
	if lt, err := res.Lookup(ctx, e.org.ID, "twilio", "primary"); err != nil || lt.Type != "twilio" || lt.Fallback == nil {
		t.Fatalf("lookup primary: %+v %v", lt, err)
	}
	if lt, err := res.Lookup(ctx, e.org.ID, "custom", "fallback"); err != nil || lt.Type != "custom" || lt.Fallback != nil {
		t.Fatalf("lookup fallback: %+v %v", lt, err)
	}
	if types := res.Types(); !slices.Equal(types, []string{"twilio", "vonage", "custom", "console"}) {
		t.Fatalf("the SMS resolver resolves %v", types)
	}
	if _, err := res.Lookup(ctx, e.org.ID, "twilio", "third"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("lookup of an unknown slot: %v", err)
	}

	// Deleting the primary leaves the fallback as the org's provider.
	if code, _ := e.do(t, "DELETE", path, e.admin, nil); code != 204 {
		t.Fatal(code)
	}
	if ts, _ := res.Resolve(ctx, ev); len(ts) != 1 || ts[0].ID != "fallback" || ts[0].Fallback != nil {
		t.Fatalf("after DELETE: %+v", ts)
	}
	if _, err := res.Lookup(ctx, e.org.ID, "twilio", "primary"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("lookup of the deleted primary: %v", err)
	}

	// A change made by another replica (straight into the store) shows
	// once the cache entry is older than CacheTTL.
	_ = e.st.DeleteSMSProvider(ctx, e.org.ID, store.ProviderFallback)
	if ts, _ := res.Resolve(ctx, ev); len(ts) != 1 {
		t.Fatalf("cached: %+v", ts)
	}
	e.clk.Advance(6 * time.Second)
	if ts, _ := res.Resolve(ctx, ev); len(ts) != 0 {
		t.Fatalf("after TTL: %+v", ts)
	}
}

func TestNewRequiresDependencies(t *testing.T) {
	if _, err := New(Config{}, nil, http.DefaultClient, nil, nil, nil); err == nil {
		t.Fatal("New without a store accepted")
	}
}

func TestMask(t *testing.T) {
	for in, want := range map[string]string{"0123456789abcdef": "****cdef", "short": "****", "": "****", "123456789012": "****9012"} {
		if got := provider.Mask(in); got != want {
			t.Errorf("mask(%q) = %q", in, got)
		}
	}
}

// counter reads one outcome of a counter from the registry.
func counter(t *testing.T, reg *prometheus.Registry, name, outcome string) float64 {
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
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{outcome=%q}", name, outcome)
	return 0
}
