package console_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/otphub/otphub/app/apptest"
	"github.com/otphub/otphub/websub/whsec"
)

// consoleClient is a signed-in console user over plain HTTP (no
// browser): a cookie jar, redirects not followed.
type consoleClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get GETs path and returns the status and body.
func (cc *consoleClient) get(path string) (int, string) {
	cc.t.Helper()
	resp, err := cc.c.Get(cc.base + path)
	if err != nil {
		cc.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// post POSTs form to action with the CSRF token of the page at path
// (none when path is empty) and returns the status, Location and body.
func (cc *consoleClient) post(path, action string, form url.Values) (int, string, string) {
	cc.t.Helper()
	if path != "" {
		_, page := cc.get(path)
		m := csrfInput.FindStringSubmatch(page)
		if m == nil {
			cc.t.Fatalf("GET %s: no CSRF field", path)
		}
		form.Set("csrf", html.UnescapeString(m[1]))
	}
	resp, err := cc.c.PostForm(cc.base+action, form)
	if err != nil {
		cc.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(b)
}

// signedIn creates the first platform admin through srv's setup link.
func signedIn(t *testing.T, srv *apptest.TestServer) *consoleClient {
	jar, _ := cookiejar.New(nil)
	cc := &consoleClient{t: t, base: srv.URL, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	u, err := url.Parse(srv.ConsoleSetupLink)
	if err != nil {
		t.Fatal(err)
	}
	code, _, body := cc.post(u.RequestURI(), u.RequestURI(), url.Values{"email": {"root@example.com"}, "name": {"Root"},
		"mobile": {"+94771234567"}, "password": {password}, "confirm": {password}})
	if code != http.StatusSeeOther {
		t.Fatalf("setup: %d %s", code, body)
	}
	return cc
}

// hookReceiver answers the WebSub challenge and records deliveries.
type hookReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	posts []hookPost
}

type hookPost struct {
	header http.Header
	body   []byte
}

func newHookReceiver(t *testing.T) *hookReceiver {
	rv := &hookReceiver{}
	rv.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, r.URL.Query().Get("hub.challenge"))
			return
		}
		b, _ := io.ReadAll(r.Body)
		rv.mu.Lock()
		rv.posts = append(rv.posts, hookPost{r.Header.Clone(), b})
		rv.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rv.Close)
	return rv
}

func (rv *hookReceiver) received() []hookPost {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return append([]hookPost(nil), rv.posts...)
}

func hubSig(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// standardSig is the Standard Webhooks v1 signature of d under secret
// (a whsec_ secret's key is its decoded material).
func standardSig(secret string, d hookPost) string {
	m := hmac.New(sha256.New, whsec.Key([]byte(secret)))
	m.Write([]byte(d.header.Get("Webhook-Id") + "." + d.header.Get("Webhook-Timestamp") + "." + string(d.body)))
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

var rotatedSecretCode = regexp.MustCompile(`<code id="rotated-secret">([^<]+)</code>`)

// TestWebhookTestEventAndRotation drives the Webhooks page over HTTP
// against a whole otphub: "Send test event" delivers one signed test event
// and links to its delivery; "Rotate secret" re-subscribes with a secret
// the hub generates, shown once, which signs the next delivery while the
// old one still does too; a too-long secret is refused next to its field;
// both forms refuse a POST without the CSRF token; the callback (with
// markup in its query) is escaped everywhere.
func TestWebhookTestEventAndRotation(t *testing.T) {
	srv := apptest.Start(t)
	admin := adminAPI(t, srv.URL, srv.AdminClientID, srv.AdminClientSecret)
	if code, body := admin.do("POST", "/api/v1/orgs", map[string]any{"name": "hooks"}); code != http.StatusCreated {
		t.Fatalf("create org: %d %v", code, body)
	}
	cc := signedIn(t, srv)
	rv := newHookReceiver(t)
	const xss = `<script>alert(1)</script>`
	callback := rv.URL + "/hook?tag=" + xss
	const page = "/console/orgs/hooks/webhooks"
	noRawMarkup := func(where, body string) {
		t.Helper()
		if strings.Contains(body, xss) {
			t.Fatalf("%s renders the callback's markup unescaped", where)
		}
	}

	code, loc, body := cc.post(page, page, url.Values{"callback": {callback}, "format": {"asgardeo"}, "secret": {"first-secret"}})
	if code != http.StatusSeeOther {
		t.Fatalf("add webhook: %d %s", code, body)
	}
	_, body = cc.get(loc)
	noRawMarkup("the page after adding", body)
	if !strings.Contains(body, "Verified: ") {
		t.Fatalf("not verified: %s", body)
	}
	_, subs := admin.do("GET", "/api/v1/orgs/hooks/subscriptions", nil)
	list, _ := subs["subscriptions"].([]any)
	if len(list) != 1 {
		t.Fatalf("subscriptions: %v", subs)
	}
	id := list[0].(map[string]any)["id"].(string)
	testPath, rotatePath := page+"/"+id+"/test", page+"/"+id+"/rotate"

	// No CSRF token: refused, nothing sent, nothing changed.
	if code, _, _ := cc.post("", testPath, url.Values{}); code != http.StatusForbidden {
		t.Errorf("test event without a CSRF token: %d", code)
	}
	if code, _, _ := cc.post("", rotatePath, url.Values{"secret": {"sneaky"}}); code != http.StatusForbidden {
		t.Errorf("rotation without a CSRF token: %d", code)
	}

	// Send test event: one delivery, signed with the secret, linked.
	code, loc, _ = cc.post(page, testPath, url.Values{})
	if code != http.StatusSeeOther {
		t.Fatalf("send test event: %d", code)
	}
	_, body = cc.get(loc)
	noRawMarkup("the test event's result", body)
	m := regexp.MustCompile(`href="/console/orgs/hooks/deliveries/([0-9a-f-]{36})"`).FindStringSubmatch(body)
	if !strings.Contains(body, "Test event delivered to ") || m == nil {
		t.Fatalf("the test event's result: %s", body)
	}
	got := rv.received()
	if len(got) != 1 {
		t.Fatalf("%d deliveries, want 1 (the refused POST sent none)", len(got))
	}
	if !strings.Contains(string(got[0].body), "+15555550100") || got[0].header.Get("X-Hub-Signature") != hubSig("first-secret", got[0].body) {
		t.Fatalf("the test delivery: %s %v", got[0].body, got[0].header)
	}
	if code, d := admin.do("GET", "/api/v1/orgs/hooks/deliveries/"+m[1], nil); code != http.StatusOK || d["destinationId"] != id || d["status"] != "delivered" {
		t.Fatalf("the linked delivery: %d %v", code, d)
	}

	// A secret too long for WebSub is refused next to its field.
	code, _, body = cc.post(page, rotatePath, url.Values{"secret": {strings.Repeat("x", 250)}})
	if code != http.StatusBadRequest || !regexp.MustCompile(`<p class="fielderr" id="secret-`+id+`-err">[^<]+</p>`).MatchString(body) {
		t.Fatalf("a too-long secret: %d %s", code, body)
	}

	// Rotate with no secret given: the hub generates one, shown once.
	code, _, body = cc.post(page, rotatePath, url.Values{"secret": {""}})
	noRawMarkup("the rotation's result", body)
	sm := rotatedSecretCode.FindStringSubmatch(body)
	if code != http.StatusOK || sm == nil || !strings.HasPrefix(sm[1], "whsec_") ||
		!strings.Contains(body, "Verified: ") || !strings.Contains(body, "the previous one is still accepted until ") {
		t.Fatalf("rotation: %d %s", code, body)
	}
	secret := html.UnescapeString(sm[1])
	_, body = cc.get(page)
	if strings.Contains(body, secret) {
		t.Fatal("the generated secret is shown again")
	}
	if !strings.Contains(body, "The previous secret is still accepted until ") {
		t.Error("the page does not say until when the previous secret is accepted")
	}
	if code, loc, _ = cc.post(page, testPath, url.Values{}); code != http.StatusSeeOther {
		t.Fatalf("second test event: %d", code)
	}
	got = rv.received()
	if len(got) != 2 {
		t.Fatalf("%d deliveries, want 2", len(got))
	}
	d := got[1]
	if d.header.Get("X-Hub-Signature") != hubSig(secret, d.body) {
		t.Errorf("after rotation X-Hub-Signature = %q, want the new secret's", d.header.Get("X-Hub-Signature"))
	}
	if want := standardSig(secret, d) + " " + standardSig("first-secret", d); d.header.Get("Webhook-Signature") != want {
		t.Errorf("after rotation webhook-signature = %q, want the new then the old secret's %q", d.header.Get("Webhook-Signature"), want)
	}
	_, body = cc.get(loc)
	noRawMarkup("the second test event's result", body)
}
