package console_test

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

//go:embed testdata/axe.min.js
var axeSource string

// chromiumPath finds Debian's chromium; tests skip without it, except in
// CI (CI=true), where a missing browser fails them.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("OTPHUB_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (CI installs Debian's chromium; see .ci/run)")
	}
	t.Skip("chromium is not installed: the console's browser tests are skipped (install Debian's chromium to run them)")
	return ""
}

// The tests share one browser: starting chromium is the slow part.
var shared struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	err    error
}

func browser(t *testing.T) context.Context {
	path := chromiumPath(t)
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "otphub-chromium-")
		if err != nil {
			shared.err = err
			return
		}
		opts := []chromedp.ExecAllocatorOption{
			chromedp.ExecPath(path), chromedp.UserDataDir(dir),
			chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
			chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
			chromedp.WindowSize(1280, 900),
		}
		actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, bcancel := chromedp.NewContext(actx)
		if err := chromedp.Do(bctx); err != nil {
			shared.err = fmt.Errorf("start chromium: %w", err)
		}
		shared.ctx = bctx
		shared.cancel = func() { bcancel(); acancel(); os.RemoveAll(dir) }
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.ctx
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.cancel != nil {
		shared.cancel()
	}
	os.Exit(code)
}

// tab is one browser tab (an isolated cookie jar when incognito) that
// accepts confirm() prompts.
type tab struct {
	t       *testing.T
	ctx     context.Context
	base    string
	dialogs []string
	mu      sync.Mutex
}

func newTab(t *testing.T, base string, incognito bool) *tab {
	bctx := browser(t)
	var ctx context.Context
	var cancel context.CancelFunc
	if incognito {
		ctx, cancel = chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
	} else {
		ctx, cancel = chromedp.NewContext(bctx)
	}
	t.Cleanup(cancel)
	tb := &tab{t: t, ctx: ctx, base: base}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.dialogs = append(tb.dialogs, ev.Message)
			tb.mu.Unlock()
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return tb
}

func (b *tab) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v (at %s)", err, b.url())
	}
}

// get runs an action that returns a value.
func get[T any](b *tab, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("browser: %v (at %s)", err, b.url())
	}
	return v
}

func (b *tab) url() string {
	u, _ := chromedp.Run(b.ctx, chromedp.Location())
	return u
}

func (b *tab) open(path string) {
	b.t.Helper()
	if !strings.HasPrefix(path, "http") {
		path = b.base + path
	}
	b.run(chromedp.Navigate(path), chromedp.WaitReady("body"))
}

// Locators: by label, role and text, never by CSS class.
func byLabel(label string) string {
	return fmt.Sprintf(`//*[@id=//label[normalize-space()=%q]/@for]`, label)
}
func button(text string) string { return fmt.Sprintf(`//button[normalize-space()=%q]`, text) }
func link(text string) string   { return fmt.Sprintf(`//a[normalize-space()=%q]`, text) }

// fill replaces a labelled field's value.
func (b *tab) fill(label, value string) {
	b.t.Helper()
	b.run(chromedp.SetValue(byLabel(label), value))
}

func (b *tab) check(label string, on bool) {
	b.t.Helper()
	if get(b, chromedp.JavascriptAttribute[bool](byLabel(label), "checked")) != on {
		b.run(chromedp.Click(byLabel(label)))
	}
}

// navigate runs action (a click) and waits for the next page to load.
func (b *tab) navigate(action chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	b.run(chromedp.Evaluate[chromedp.Void](`window.__stale = true; undefined`), action)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		fresh, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`window.__stale === undefined && document.readyState === "complete"`))
		if err == nil && fresh {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.t.Fatalf("no page loaded after the click (at %s)", b.url())
}

func (b *tab) press(text string) { b.t.Helper(); b.navigate(chromedp.Click(button(text))) }
func (b *tab) follow(text string) {
	b.t.Helper()
	b.navigate(chromedp.Click(link(text)))
}

// text is the main region's visible text.
func (b *tab) text() string {
	return get(b, chromedp.Text(chromedp.CSS("main")))
}

func (b *tab) wantText(want ...string) {
	b.t.Helper()
	got := b.text()
	for _, w := range want {
		if !strings.Contains(got, w) {
			b.t.Fatalf("page %s lacks %q; it shows:\n%s", b.url(), w, got)
		}
	}
}

// fieldError is the error shown next to a labelled field (its
// aria-describedby ends with the error paragraph).
func (b *tab) fieldError(label string) string {
	b.t.Helper()
	return get(b, chromedp.Evaluate[string](fmt.Sprintf(`(() => {
		const l = [...document.querySelectorAll("label")].find(l => l.textContent.trim() === %q);
		const f = l && document.getElementById(l.htmlFor);
		if (!f || f.getAttribute("aria-invalid") !== "true") return "";
		const ids = (f.getAttribute("aria-describedby") || "").split(" ");
		const e = ids.map(id => document.getElementById(id)).find(e => e && e.id.endsWith("-err"));
		return e ? e.textContent.trim() : "";
	})()`, label)))
}

func (b *tab) wantFieldError(label, contains string) {
	b.t.Helper()
	if got := b.fieldError(label); !strings.Contains(got, contains) || got == "" {
		b.t.Fatalf("field %q: error %q, want one containing %q (page %s)", label, got, contains, b.url())
	}
}

// axe runs axe-core on the page and fails on serious or critical violations.
func (b *tab) axe() {
	b.t.Helper()
	for _, v := range b.seriousViolations() {
		b.t.Errorf("axe on %s: %s", b.url(), v)
	}
}

// seriousViolations runs axe-core on the page and describes its serious
// and critical violations.
func (b *tab) seriousViolations() []string {
	b.t.Helper()
	type violation struct {
		ID     string `json:"id"`
		Impact string `json:"impact"`
		Help   string `json:"help"`
		Nodes  []struct {
			Target []any `json:"target"`
		} `json:"nodes"`
	}
	b.run(chromedp.Evaluate[chromedp.Void](axeSource + "\n;undefined"))
	res := get(b, chromedp.Evaluate[[]violation](`axe.run(document, {resultTypes: ["violations"]}).then(r => r.violations)`, chromedp.EvalAwaitPromise))
	var out []string
	for _, v := range res {
		if v.Impact == "serious" || v.Impact == "critical" {
			out = append(out, fmt.Sprintf("%s (%s): %s, at %v", v.ID, v.Impact, v.Help, v.Nodes))
		}
	}
	return out
}

// shot saves a screenshot for docs/console.md when OTPHUB_SCREENSHOTS
// names a directory.
func (b *tab) shot(name string) {
	dir := os.Getenv("OTPHUB_SCREENSHOTS")
	if dir == "" {
		return
	}
	buf := get(b, chromedp.FullScreenshot(100)) // PNG
	if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// cookies returns the tab's cookies for base.
func (b *tab) cookies() []*network.Cookie {
	res, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.base}})
	if err != nil {
		b.t.Fatal(err)
	}
	return res.Cookies
}

// ---- API helpers ----

type api struct {
	t     *testing.T
	base  string
	token string
}

func adminAPI(t *testing.T, base, id, secret string) *api {
	resp, err := http.PostForm(base+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %v %d", err, resp.StatusCode)
	}
	return &api{t: t, base: base, token: tok.AccessToken}
}

func (a *api) do(method, path string, body any) (int, map[string]any) {
	a.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, a.base+path, r)
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// ---- local servers that speak the providers' APIs ----

const (
	twSID   = "AC0123456789abcdef0123456789abcdef"
	twToken = "TwilioAuthToken0123456789XYZ"
)

type recorded struct {
	mu    sync.Mutex
	forms []url.Values
	body  []string
}

func (r *recorded) add(f url.Values, body string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.forms = append(r.forms, f)
	r.body = append(r.body, body)
}

// formWith returns the first request whose body contains s.
func (r *recorded) formWith(s string) (url.Values, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, b := range r.body {
		if strings.Contains(b, s) {
			return r.forms[i], true
		}
	}
	return nil, false
}

func (r *recorded) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.forms)
}

// fakeTwilio answers CreateMessage, checking the path and Basic auth.
func fakeTwilio(t *testing.T) (*httptest.Server, *recorded) {
	rec := &recorded{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/2010-04-01/Accounts/"+twSID+"/Messages.json" || u != twSID || p != twToken {
			w.WriteHeader(401)
			_, _ = io.WriteString(w, `{"code":20003,"message":"Authenticate","status":401}`)
			return
		}
		_ = r.ParseForm()
		rec.add(r.PostForm, "")
		w.WriteHeader(201)
		_, _ = io.WriteString(w, `{"sid":"SM0123456789abcdef0123456789abcdef","status":"queued"}`)
	}))
	t.Cleanup(srv.Close)
	return srv, rec
}

// fakeVonage answers POST /sms/json like Vonage's SMS API.
func fakeVonage(t *testing.T) (*httptest.Server, *recorded) {
	rec := &recorded{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/sms/json" || r.PostForm.Get("api_key") != "abcd1234" || r.PostForm.Get("api_secret") != "Vonage-Secret-1" {
			_, _ = io.WriteString(w, `{"message-count":"1","messages":[{"status":"4","error-text":"Bad Credentials"}]}`)
			return
		}
		rec.add(r.PostForm, "")
		_, _ = io.WriteString(w, `{"message-count":"1","messages":[{"to":"94771234567","message-id":"0A0000000123ABCD1","status":"0"}]}`)
	}))
	t.Cleanup(srv.Close)
	return srv, rec
}

// gateway is a custom SMS gateway.
func gateway(t *testing.T) (*httptest.Server, *recorded) {
	rec := &recorded{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.add(url.Values{"authorisation": {r.Header.Get("Authorisation")}, "idempotency-key": {r.Header.Get("Idempotency-Key")}}, string(b))
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	return srv, rec
}

// receiver is a WebSub subscriber: it confirms intent and answers
// deliveries with status (changeable).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	status int
	got    int
}

func newReceiver(t *testing.T, status int) *receiver {
	rv := &receiver{status: status}
	rv.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, r.URL.Query().Get("hub.challenge"))
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		rv.mu.Lock()
		rv.got++
		st := rv.status
		rv.mu.Unlock()
		w.WriteHeader(st)
	}))
	t.Cleanup(rv.Close)
	return rv
}

func (rv *receiver) set(status int) { rv.mu.Lock(); rv.status = status; rv.mu.Unlock() }

var linkPattern = regexp.MustCompile(`http://[^\s]+/console/invitations/[A-Za-z0-9_-]{43}`)

// keyboard: Tab from the top reaches the skip link first.
func (b *tab) wantSkipLinkFirst() {
	b.t.Helper()
	b.run(chromedp.KeyEvent(kb.Tab))
	active := get(b, chromedp.Evaluate[string](`document.activeElement.textContent.trim()`))
	if active != "Skip to content" {
		b.t.Fatalf("first Tab focuses %q, want the skip link", active)
	}
}

func chromedpHTML() chromedp.Action[string] { return chromedp.OuterHTML(chromedp.CSS("html")) }

func chromedpEval[T any](expr string) chromedp.Action[T] { return chromedp.Evaluate[T](expr) }

func chromedpClickFirst(xpath string) chromedp.Action[chromedp.Void] { return chromedp.Click(xpath) }

func (b *tab) selectOption(label, value string) {
	b.t.Helper()
	b.run(chromedp.SetValue(byLabel(label), value))
}

// TestAxeScanCanFail proves the accessibility scan reports what it should:
// an input without a label and an image without alt text are serious.
func TestAxeScanCanFail(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, `<!doctype html><html lang="en"><title>bad</title><main><input name="x"><img src="/i.png"></main></html>`)
	}))
	defer srv.Close()
	b := newTab(t, srv.URL, false)
	b.open(srv.URL)
	if v := b.seriousViolations(); len(v) < 2 {
		t.Fatalf("axe reports %v on a page with an unlabelled input and an image without alt text", v)
	}
}
