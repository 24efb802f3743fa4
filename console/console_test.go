package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otphub/otphub/audit"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/sqlite"
)

func TestCheckPassword(t *testing.T) {
	for _, c := range []struct {
		pw, email, want string
	}{
		{"correct violet staple horizon", "ann@example.com", ""},
		{"ÄÖÜ ünïcödé päss wörd", "ann@example.com", ""},
		{"short pass", "ann@example.com", "at least 15"},
		{strings.Repeat("x", 129) + "yz", "ann@example.com", "at most 128"},
		{"PasswordPassword", "ann@example.com", "breached"},
		{"passwordpassword123", "ann@example.com", "breached"},
		{"abababababababab", "ann@example.com", "repeated or sequential"},
		{"abcdefghijklmnopq", "ann@example.com", "repeated or sequential"},
		{"9876543210987654", "ann@example.com", "repeated or sequential"},
		{"annabelle-annabelle!", "annabelle@example.com", "account name"},
		{"\xff\xfe invalid utf-8 here", "ann@example.com", "not valid text"},
	} {
		err := CheckPassword(c.pw, c.email)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("CheckPassword(%q) = %v, want nil", c.pw, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("CheckPassword(%q) = %v, want an error containing %q", c.pw, err, c.want)
		}
	}
}

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("ﬁve boxing wizards jump")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q is not a PHC argon2id string with the documented parameters", h)
	}
	// NFKC: the ligature and the two letters are one password.
	if !VerifyPassword("five boxing wizards jump", h) || !VerifyPassword("ﬁve boxing wizards jump", h) {
		t.Fatal("the password does not verify")
	}
	if VerifyPassword("five boxing wizards jumP", h) {
		t.Fatal("a wrong password verifies")
	}
	h2, _ := HashPassword("ﬁve boxing wizards jump")
	if h2 == h {
		t.Fatal("two hashes share a salt")
	}
	for _, bad := range []string{"", "$argon2id$v=19$m=0,t=2,p=1$AAAA$AAAA", "$argon2i$v=19$m=19456,t=2,p=1$AAAA$AAAA", "$argon2id$v=19$m=99999999,t=2,p=1$AAAA$AAAA"} {
		if VerifyPassword("x", bad) {
			t.Fatalf("VerifyPassword accepts %q", bad)
		}
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/console/orgs/acme/webhooks": "/console/orgs/acme/webhooks",
		"https://evil.example/":       "/console/",
		"//evil.example/console/":     "/console/",
		"/console/\\evil":             "/console/",
		"/api/v1/orgs":                "/console/",
		"":                            "/console/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// env is a console over a fresh SQLite store with a settable clock.
type env struct {
	t   *testing.T
	c   *Console
	st  store.Store
	srv *httptest.Server
	mu  sync.Mutex
	now time.Time
}

func newEnv(t *testing.T, sf SecondFactor) *env { return newEnvOver(t, sf, false) }

// newEnvOver is newEnv, behind https when tls is set: the console then
// names its cookies __Host- and every browser from e.browser refuses a
// Set-Cookie a real browser would drop.
func newEnvOver(t *testing.T, sf SecondFactor, tls bool) *env {
	st, err := sqlite.Open(context.Background(), t.TempDir(), store.Options{EncryptionKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, st: st, now: time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)}
	clock := func() time.Time { e.mu.Lock(); defer e.mu.Unlock(); return e.now }
	mux := http.NewServeMux()
	lg := audit.New(audit.Config{Now: clock}, st, nil, nil)
	public := "http://console.test"
	if tls {
		public = "https://console.test"
	}
	e.c, err = New(context.Background(), Config{PublicURL: public, Now: clock, SecondFactor: sf}, st, mux, lg, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.c.Register(mux)
	if tls {
		e.srv = httptest.NewTLSServer(mux)
	} else {
		e.srv = httptest.NewServer(mux)
	}
	t.Cleanup(e.srv.Close)
	return e
}

// hostPrefixRules fails the test on a Set-Cookie named __Host- that is not
// Secure, not Path=/ or has a Domain: browsers silently drop such a cookie
// (RFC 6265bis 4.1.3.2), which would break sign-in only behind https.
type hostPrefixRules struct {
	t    *testing.T
	next http.RoundTripper
}

func (h hostPrefixRules) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := h.next.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	for _, ck := range resp.Cookies() {
		if strings.HasPrefix(ck.Name, "__Host-") && (!ck.Secure || ck.Path != "/" || ck.Domain != "") {
			h.t.Errorf("%s %s sets %s a browser drops (Secure=%v Path=%q Domain=%q)", r.Method, r.URL.Path, ck.Name, ck.Secure, ck.Path, ck.Domain)
		}
	}
	return resp, nil
}

func (e *env) advance(d time.Duration) { e.mu.Lock(); e.now = e.now.Add(d); e.mu.Unlock() }

// browser is an HTTP client with a cookie jar that does not follow redirects.
func (e *env) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Transport: hostPrefixRules{e.t, e.srv.Client().Transport}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// form GETs path and POSTs values to it with the page's CSRF token.
func (e *env) form(c *http.Client, path string, values url.Values) *http.Response {
	e.t.Helper()
	return e.post(c, path, path, values)
}

// post POSTs values to action with the CSRF token of the page at path.
func (e *env) post(c *http.Client, path, action string, values url.Values) *http.Response {
	e.t.Helper()
	resp, err := c.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := csrfField.FindSubmatch(body)
	if m == nil {
		e.t.Fatalf("GET %s: %d, no CSRF field", path, resp.StatusCode)
	}
	values.Set("csrf", string(m[1]))
	resp, err = c.PostForm(e.srv.URL+action, values)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

const pw = "correct violet staple horizon"

// user creates a platform admin through an invitation and returns a signed-in client.
func (e *env) user(email string) *http.Client {
	e.t.Helper()
	link, _, err := e.c.Invite(context.Background(), email, 0, "test")
	if err != nil {
		e.t.Fatal(err)
	}
	c := e.browser()
	u, err := url.Parse(link)
	if err != nil {
		e.t.Fatal(err)
	}
	resp := e.form(c, u.RequestURI(), url.Values{"name": {"N"}, "mobile": {"+94771234567"}, "password": {pw}, "confirm": {pw}})
	if resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("accept invitation: %d", resp.StatusCode)
	}
	return c
}

func (e *env) status(c *http.Client, path string) (int, string) {
	e.t.Helper()
	resp, err := c.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

func TestSessionTimeouts(t *testing.T) {
	e := newEnv(t, nil)
	c := e.user("root@example.com")
	signedIn := func() bool {
		code, loc := e.status(c, "/console/")
		return code == http.StatusSeeOther && loc == "/console/platform/orgs"
	}
	if !signedIn() {
		t.Fatal("not signed in after accepting the invitation")
	}
	// Idle timeout (30 min): activity keeps it alive, a pause ends it.
	for range 5 {
		e.advance(25 * time.Minute)
		if !signedIn() {
			t.Fatal("an active session ended")
		}
	}
	e.advance(31 * time.Minute)
	if signedIn() {
		t.Fatal("the session outlived the idle timeout")
	}
	// Absolute timeout (12 h), however active.
	c = e.browser()
	if resp := e.form(c, "/console/sign-in", url.Values{"email": {"root@example.com"}, "password": {pw}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	for i := 0; i < 12*60/20-1; i++ {
		e.advance(20 * time.Minute)
		if !signedIn() {
			t.Fatalf("the session ended after %v", time.Duration(i+1)*20*time.Minute)
		}
	}
	e.advance(20 * time.Minute)
	if signedIn() {
		t.Fatal("the session outlived the absolute timeout")
	}
}

func TestSignInNewSessionIDAndLimit(t *testing.T) {
	e := newEnv(t, nil)
	e.user("root@example.com")
	c := e.browser()
	cookie := func() string {
		for _, ck := range c.Jar.Cookies(mustURL(e.srv.URL)) {
			if ck.Name == "otphub_console" {
				return ck.Value
			}
		}
		return ""
	}
	e.form(c, "/console/sign-in", url.Values{"email": {"root@example.com"}, "password": {pw}})
	first := cookie()
	e.post(c, "/console/platform/orgs", "/console/sign-out", url.Values{})
	e.form(c, "/console/sign-in", url.Values{"email": {"root@example.com"}, "password": {pw}})
	if second := cookie(); first == "" || second == "" || first == second {
		t.Fatalf("session IDs %q then %q: want a new one at each sign-in", first, second)
	}
	// Ten attempts per account per window (the two sign-ins above count);
	// then even the right password waits.
	for i := range 8 {
		if resp := e.form(e.browser(), "/console/sign-in", url.Values{"email": {"root@example.com"}, "password": {"wrong " + pw}}); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i, resp.StatusCode)
		}
	}
	if resp := e.form(e.browser(), "/console/sign-in", url.Values{"email": {"root@example.com"}, "password": {pw}}); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("sign-in over the limit: %d", resp.StatusCode)
	}
	e.advance(16 * time.Minute)
	if resp := e.form(e.browser(), "/console/sign-in", url.Values{"email": {"root@example.com"}, "password": {pw}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in after the window: %d", resp.StatusCode)
	}
	entries, err := e.st.ListAudit(context.Background(), store.AuditFilter{AllOrgs: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, en := range entries {
		seen[en.Action]++
	}
	if seen["console.sign_in_failed"] != 8 || seen["console.sign_in_throttled"] != 1 || seen["console.sign_in"] < 3 {
		t.Fatalf("audit of sign-ins: %v", seen)
	}
}

func mustURL(s string) *url.URL { u, _ := url.Parse(s); return u }

// fakeFactor stands in for the hosted SMS OTP step: Begin redirects to
// /fake-step, whose "approval" the test chooses.
type fakeFactor struct {
	userID string
	ready  error
}

func (f *fakeFactor) Ready(context.Context) error { return f.ready }

func (f *fakeFactor) Begin(w http.ResponseWriter, r *http.Request, u store.ConsoleUser, state string) error {
	http.Redirect(w, r, "/fake-step?state="+url.QueryEscape(state), http.StatusSeeOther)
	return nil
}

func (f *fakeFactor) Finish(r *http.Request) (string, string, error) {
	return r.URL.Query().Get("state"), f.userID, nil
}

func TestSecondFactorPlugsIn(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[tls], func(t *testing.T) { testSecondFactor(t, tls) })
	}
}

func testSecondFactor(t *testing.T, tls bool) {
	sf := &fakeFactor{}
	e := newEnvOver(t, sf, tls)
	e.user("root@example.com")
	u, _ := e.st.GetConsoleUserByEmail(context.Background(), "root@example.com")
	c := e.browser()
	resp := e.form(c, "/console/sign-in", url.Values{"email": {"root@example.com"}, "password": {pw}, "next": {"/console/platform/users"}})
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, "/fake-step?state=") {
		t.Fatalf("after the password: %d %s, want the second factor", resp.StatusCode, loc)
	}
	if _, l := e.status(c, "/console/"); l != "/console/sign-in" {
		t.Fatalf("signed in before the second factor (%s)", l)
	}
	state := strings.TrimPrefix(loc, "/fake-step?state=")
	// Another user's result, or another state, is refused.
	sf.userID = "999"
	if code, _ := e.status(c, "/console/sign-in/callback?state="+state); code != http.StatusForbidden {
		t.Fatalf("callback for another user: %d", code)
	}
	sf.userID = itoa(u.ID)
	if code, _ := e.status(c, "/console/sign-in/callback?state=other"); code != http.StatusForbidden {
		t.Fatalf("callback with another state: %d", code)
	}
	code, l := e.status(c, "/console/sign-in/callback?state="+state)
	if code != http.StatusSeeOther || l != "/console/platform/users" {
		t.Fatalf("callback: %d %s", code, l)
	}
	if _, l := e.status(c, "/console/"); l != "/console/platform/orgs" {
		t.Fatalf("not signed in after the second factor (%s)", l)
	}
	// Expired: ten minutes to finish.
	c = e.browser()
	resp = e.form(c, "/console/sign-in", url.Values{"email": {"root@example.com"}, "password": {pw}})
	state = strings.TrimPrefix(resp.Header.Get("Location"), "/fake-step?state=")
	e.advance(11 * time.Minute)
	if code, _ := e.status(c, "/console/sign-in/callback?state="+state); code != http.StatusForbidden {
		t.Fatalf("late callback: %d", code)
	}
}

// TestSecondFactorNotSetUp: while the step cannot run for want of set-up
// (no SMS provider yet) sign-in is password only, audited and announced to
// platform admins; any other failure of the step refuses sign-in.
func TestSecondFactorNotSetUp(t *testing.T) {
	sf := &fakeFactor{ready: fmt.Errorf("%w: the org ops, which sends the console's sign-in codes, has no SMS provider", ErrNotSetUp)}
	e := newEnv(t, sf)
	e.user("root@example.com")
	c := e.browser()
	resp := e.form(c, "/console/sign-in", url.Values{"email": {"root@example.com"}, "password": {pw}})
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/console/" {
		t.Fatalf("password-only sign-in: %d %s", resp.StatusCode, loc)
	}
	got, err := c.Get(e.srv.URL + "/console/platform/orgs")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(got.Body)
	got.Body.Close()
	if !strings.Contains(string(body), `class="notice" role="alert">Console sign-in is password only: the org ops`) {
		t.Fatalf("no notice on the page:\n%s", body)
	}
	entries, err := e.st.ListAudit(context.Background(), store.AuditFilter{AllOrgs: true, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(entries, func(en store.AuditEntry) bool { return en.Action == "console.sign_in_password_only" }) {
		t.Fatalf("password-only sign-in not audited: %+v", entries)
	}
	// Set up: the notice goes, and sign-in needs the step again.
	sf.ready = nil
	got, err = c.Get(e.srv.URL + "/console/platform/orgs")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(got.Body)
	got.Body.Close()
	if strings.Contains(string(body), `class="notice"`) {
		t.Fatal("notice still shown once the step is set up")
	}
	if loc := e.form(e.browser(), "/console/sign-in", url.Values{"email": {"root@example.com"}, "password": {pw}}).Header.Get("Location"); !strings.HasPrefix(loc, "/fake-step") {
		t.Fatalf("after set-up, sign-in goes to %q, want the second factor", loc)
	}
	// Broken is not "not set up": fail closed.
	sf.ready = errors.New("store unavailable")
	if resp := e.form(e.browser(), "/console/sign-in", url.Values{"email": {"root@example.com"}, "password": {pw}}); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("sign-in with a failing step: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestFlashCannotBeForged(t *testing.T) {
	e := newEnv(t, nil)
	c := e.user("root@example.com")
	get := func(path string) string {
		resp, err := c.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if body := get("/console/platform/users?done=Your+account+is+locked.+Call+us"); strings.Contains(body, "account is locked") {
		t.Fatal("a crafted link shows its own message")
	}
	msg := "Invitation created."
	if body := get("/console/platform/users?done=" + url.QueryEscape(msg) + "&ds=" + e.c.mac("flash", msg)); !strings.Contains(body, msg) {
		t.Fatal("the console's own message is not shown")
	}
}

// TestOverviewFromStats: the overview's deliveries section, handset
// summary and latency charts are GET …/deliveries/stats's answer (decoded
// from its JSON), laid out: totals per kind with the success rate, webhook
// and SMS deliveries per hour stacked, latencies per hour in milliseconds
// rounded up (a sub-millisecond answer is still a bar), the window's
// percentiles as durations; no deliveries or no receipts is no section.
func TestOverviewFromStats(t *testing.T) {
	const answer = `{"from":"2026-03-04T10:00:00Z","until":"2026-03-04T12:00:00Z","hours":[
	 {"start":"2026-03-04T10:00:00Z",
	  "webhooks":{"delivered":0,"failed":0,"pending":1,"latency":{"count":0,"p50Ms":0,"p90Ms":0,"maxMs":0}},
	  "sms":{"delivered":0,"failed":0,"pending":0,"handset":{"records":0,"delivered":0,"failed":0,"awaiting":0,"latency":{"count":0,"p50Ms":0,"p90Ms":0,"maxMs":0}}}},
	 {"start":"2026-03-04T11:00:00Z",
	  "webhooks":{"delivered":3,"failed":1,"pending":0,"latency":{"count":3,"p50Ms":0.42,"p90Ms":1500.2,"maxMs":1500.2}},
	  "sms":{"delivered":4,"failed":1,"pending":0,"handset":{"records":4,"delivered":2,"failed":1,"awaiting":1,"latency":{"count":2,"p50Ms":4000,"p90Ms":9000,"maxMs":9000}}}}],
	 "totals":{"webhooks":{"delivered":3,"failed":1,"pending":1,"latency":{"count":3,"p50Ms":0.42,"p90Ms":1500.2,"maxMs":1500.2}},
	  "sms":{"delivered":4,"failed":1,"pending":0,"handset":{"records":4,"delivered":2,"failed":1,"awaiting":1,"latency":{"count":2,"p50Ms":4000,"p90Ms":9000,"maxMs":9000}}}}}`
	var st deliveryStats
	if err := json.Unmarshal([]byte(answer), &st); err != nil {
		t.Fatal(err)
	}
	d := summarizeDeliveries(st)
	if d == nil {
		t.Fatal("no deliveries section")
	}
	wantRows := []deliveryRow{{Kind: "Webhooks", Delivered: 3, Failed: 1, Pending: 1, Finished: true, Rate: 75},
		{Kind: "SMS", Delivered: 4, Failed: 1, Finished: true, Rate: 80}}
	if !slices.Equal(d.Rows, wantRows) {
		t.Errorf("rows %+v, want %+v", d.Rows, wantRows)
	}
	if d.WebhookMedian != "420µs" || d.WebhookP90 != "1.5s" {
		t.Errorf("webhook latency of the window: median %q, 90th %q", d.WebhookMedian, d.WebhookP90)
	}
	for _, c := range []struct {
		name     string
		ch       *hourChart
		h10, h11 []int
	}{
		{"webhooks", d.Webhooks, []int{0, 0, 1}, []int{3, 1, 0}},
		{"SMS", d.SMS, []int{0, 0, 0}, []int{4, 1, 0}},
		{"webhook latency", d.WebhookLatency, []int{0, 0}, []int{1, 1501}},
		{"handset latency", handsetLatencyChart(st), []int{0, 0}, []int{4000, 9000}},
	} {
		if c.ch == nil || len(c.ch.Hours) != 2 || c.ch.Hours[0].Label != "10:00" {
			t.Fatalf("%s chart: %+v", c.name, c.ch)
		}
		if !slices.Equal(c.ch.Hours[0].Counts, c.h10) || !slices.Equal(c.ch.Hours[1].Counts, c.h11) {
			t.Errorf("%s: %v %v, want %v %v", c.name, c.ch.Hours[0].Counts, c.ch.Hours[1].Counts, c.h10, c.h11)
		}
	}
	if d.SMS.Series[0].Name != "accepted by the provider" {
		t.Errorf("SMS series %+v", d.SMS.Series)
	}
	got := summarizeHandsets(st)
	want := handsetSummary{Total: 4, Delivered: 2, Failed: 1, Awaiting: 1, Rate: 66, Median: "4s", P90: "9s"}
	if got == nil || *got != want {
		t.Fatalf("summary %+v, want %+v", got, want)
	}

	// Nothing delivered: no section, no summary, no charts.
	st.Totals = deliveryCounts{}
	for i := range st.Hours {
		st.Hours[i].deliveryCounts = deliveryCounts{}
	}
	if summarizeDeliveries(st) != nil || summarizeHandsets(st) != nil || handsetLatencyChart(st) != nil {
		t.Fatal("a section of nothing")
	}
}

// TestNewHourChart: one layout for both hourly charts: stacked series
// share a bar scaled by their sum; side by side, each series has its own
// narrower bar scaled by the largest single count; all zero is no chart.
func TestNewHourChart(t *testing.T) {
	start := time.Date(2026, 3, 4, 22, 0, 0, 0, time.UTC)
	two := []chartSeries{{Name: "a"}, {Name: "b"}}
	st := newHourChart(start, two, [][]int{{1, 1}, {0, 0}, {3, 1}}, true)
	if st == nil || st.Max != 4 || len(st.Hours) != 3 || st.Width != 3*(chartBar+4) {
		t.Fatalf("stacked: %+v", st)
	}
	h := st.Hours[2]
	if h.Label != "00:00" || h.X != 2*(chartBar+4) || !h.Any || st.Hours[1].Any ||
		h.Rects[0] != (chartRect{X: h.X, Y: chartHeight - 105, W: chartBar, H: 105}) ||
		h.Rects[1] != (chartRect{X: h.X, Y: chartHeight - 140, W: chartBar, H: 35}) {
		t.Fatalf("stacked hour: %+v", h)
	}
	gr := newHourChart(start, two, [][]int{{1, 1}, {0, 0}, {3, 1}}, false)
	h = gr.Hours[2]
	if gr.Max != 3 || h.Rects[0] != (chartRect{X: h.X, Y: chartHeight - 140, W: 10, H: 140}) ||
		h.Rects[1] != (chartRect{X: h.X + 11, Y: chartHeight - 46, W: 10, H: 46}) {
		t.Fatalf("side by side: max %d, hour %+v", gr.Max, h)
	}
	if newHourChart(start, two, [][]int{{0, 0}, {0, 0}}, false) != nil {
		t.Fatal("a chart of nothing")
	}
}
