package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/otphub/otphub/app/apptest"
)

// The browser tests drive Debian's chromium (installed by .ci/run) through
// the example app and otphub's hosted prompt, over real HTTP: the first
// factor in the example app, the OTP read from the console SMS provider,
// typed into the prompt, and the ID token verified by go-oidc.

const (
	aliceMobile = "+94771234567"
	bobMobile   = "+94771234568" // out of its SMS budget: signs in with a backup code
	carolMobile = "+94771234569"
)

// chromiumPath finds the browser, or skips the test when it is absent and
// this is not CI (in CI, with CI=true, it fails instead).
func chromiumPath(t *testing.T) string {
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed; CI must install it (.ci/run does: apt-get install chromium)")
	}
	t.Skip("chromium is not installed (Debian: apt-get install chromium); skipping the browser tests outside CI")
	return ""
}

// browser starts one headless chromium for the whole test; each subtest
// opens its own browser context (its own cookies) with tab.
func browser(t *testing.T) context.Context {
	path := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	// Start the browser now, once.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return ctx
}

func tab(t *testing.T, browserCtx context.Context) context.Context {
	ctx, cancel := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancel() })
	return ctx
}

// env is otphub, an org with the console SMS provider, two applications
// (the example app, and a test client whose callback records what comes
// back) and the example app itself.
type env struct {
	t         *testing.T
	srv       *apptest.TestServer
	token     string // the org's admin client token
	appURL    string
	exampleID string // the example application's client id
	example   *app
	testApp   struct{ id, clientID, secret, redirect string }
	callbacks chan url.Values
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, callbacks: make(chan url.Values, 8)}
	// bob's number spends its budget before his sign-in, so the limit is
	// low; alice and carol stay far below it.
	e.srv = apptest.Start(t, "--otp-limit-per-number", "6/1h")
	creds := regexp.MustCompile(`OTPHUB_ADMIN_CLIENT_ID=(\S+)\nOTPHUB_ADMIN_CLIENT_SECRET=(\S+)`).FindStringSubmatch(e.srv.Stdout.String())
	if creds == nil {
		t.Fatalf("no admin credentials on stdout")
	}
	admin := e.clientToken(creds[1], creds[2])
	e.call(admin, "POST", "/api/v1/orgs", `{"name":"myorg"}`, 201)
	c := e.call(admin, "POST", "/api/v1/orgs/myorg/clients", `{"name":"myapp","scopes":["otp","admin"]}`, 201)
	e.token = e.clientToken(c["clientId"].(string), c["clientSecret"].(string))
	e.call(e.token, "PUT", "/api/v1/orgs/myorg/sms-provider", `{"type":"console"}`, 200)
	e.call(e.token, "PUT", "/api/v1/orgs/myorg/sms-otp/settings",
		`{"resendIntervalSeconds":3,"maxResends":1,"backupCodesEnabled":true,"webOtp":true}`, 200)

	// The example app's listener first: its URL is its redirect URI.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.appURL = "http://" + ln.Addr().String()
	// The README's walkthrough registers the example app.
	env := e.readmeWalkthrough()
	o, err := parseOptions([]string{"--users", "alice:wonderland:" + aliceMobile + ",bob:builder:" + bobMobile},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.url != e.appURL || o.issuer != e.srv.URL {
		t.Fatalf("the walkthrough's environment: url %s issuer %s", o.url, o.issuer)
	}
	e.exampleID = o.clientID
	e.example, err = newApp(context.Background(), o, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: e.example}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })

	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/cb" {
			http.NotFound(w, r) // the browser's /favicon.ico
			return
		}
		e.callbacks <- r.URL.Query()
		_, _ = io.WriteString(w, "recorded")
	}))
	t.Cleanup(rec.Close)
	e.testApp.redirect = rec.URL + "/cb"
	ta := e.call(e.token, "POST", "/api/v1/orgs/myorg/applications", `{"name":"Test client","redirectUris":["`+e.testApp.redirect+`"],
		"loginFlow":{"firstFactors":["pwd","fed"],"backupCodes":false}}`, 201)
	e.testApp.id, e.testApp.clientID, e.testApp.secret = ta["id"].(string), ta["clientId"].(string), ta["clientSecret"].(string)
	return e
}

// readmeWalkthrough runs README.md's login walkthrough block, unchanged,
// as after the quickstart ($OTPHUB and $TOKEN set), and returns the
// LOGIN_APP_* variables it exported.
func (e *env) readmeWalkthrough() map[string]string {
	t := e.t
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- login-walkthrough:begin -->\n```sh\n(.*?)```\n<!-- login-walkthrough:end -->").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no login walkthrough block")
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", string(m[1])+"\nenv | grep '^LOGIN_APP_'")
	cmd.Env = append(os.Environ(), "OTPHUB="+e.srv.URL, "TOKEN="+e.token, "LOGIN_APP_URL="+e.appURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README's walkthrough failed: %v\n%s", err, out)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	if vars["LOGIN_APP_CLIENT_ID"] == "" || vars["LOGIN_APP_CLIENT_SECRET"] == "" {
		t.Fatalf("the walkthrough exported no credentials:\n%s", out)
	}
	return vars
}

func (e *env) clientToken(id, secret string) string {
	req, _ := http.NewRequest("POST", e.srv.URL+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.SetBasicAuth(id, secret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil || b.AccessToken == "" {
		e.t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	return b.AccessToken
}

func (e *env) call(token, method, path, body string, want int) map[string]any {
	return e.callT(e.t, token, method, path, body, want)
}

func (e *env) callT(t *testing.T, token, method, path, body string, want int) map[string]any {
	t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, raw, want)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

var smsLine = regexp.MustCompile(`to="(\+[0-9]+)" id="[^"]+" body="[^"]*? is ([0-9A-Z]+)\.`)

// sms returns the codes sent to mobile so far, oldest first.
func (e *env) sms(mobile string) []string {
	var out []string
	for _, m := range smsLine.FindAllStringSubmatch(e.srv.Stdout.String(), -1) {
		if m[1] == mobile {
			out = append(out, m[2])
		}
	}
	return out
}

// nthSMS waits for the n-th SMS (1-based) to mobile and returns its code.
func (e *env) nthSMS(t *testing.T, mobile string, n int) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if codes := e.sms(mobile); len(codes) >= n {
			return codes[n-1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no SMS #%d to %s; stdout:\n%s", n, mobile, e.srv.Stdout.String())
	return ""
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	must(t, err, "text of "+sel)
	return strings.TrimSpace(s)
}

const (
	codeInput = `input[autocomplete="one-time-code"]`
	continueB = `//button[normalize-space()="Continue"]`
)

// firstFactor signs in to the example app with a password and waits for
// otphub's prompt.
func (e *env) firstFactor(t *testing.T, ctx context.Context, user, password string) {
	must(t, chromedp.Do(ctx,
		chromedp.Navigate(e.appURL),
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="username"]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[autocomplete="current-password"]`), password),
		chromedp.Click(chromedp.Search(`//button[normalize-space()="Sign in"]`)),
	), "first factor")
}

func (e *env) typeCode(t *testing.T, ctx context.Context, code string) {
	must(t, chromedp.Do(ctx,
		chromedp.WaitVisible(chromedp.CSS(codeInput)),
		clearInput(codeInput),
		chromedp.SendKeys(chromedp.CSS(codeInput), code),
		chromedp.Click(chromedp.Search(continueB)),
	), "type the code")
}

// clearInput empties the input of sel.
func clearInput(sel string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[bool](`(() => { document.querySelector(`+strconvQuote(sel)+`).value = ""; return true })()`)(ctx, t)
		return chromedp.Void{}, err
	}
}

// capture screenshots the tab once its page has loaded, is in front and
// has painted twice. A capture that still fails (the page was being
// replaced; on a busy machine chromium can report "not attached to an
// active page" just after a form POST) is tried again: the picture is
// documentation, not behaviour under test.
func capture(ctx context.Context) ([]byte, error) {
	var err error
	for try := 0; try < 3; try++ {
		if try > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		var png []byte
		_, err = chromedp.Run(cctx, chromedp.Poll[bool](`document.readyState === "complete"`))
		if err == nil {
			err = chromedp.Do(cctx, bringToFront)
		}
		if err == nil {
			_, err = chromedp.Run(cctx, chromedp.Evaluate[bool](`new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))`, chromedp.EvalAwaitPromise))
		}
		if err == nil {
			png, err = chromedp.Run(cctx, chromedp.CaptureScreenshot())
		}
		cancel()
		if err == nil {
			return png, nil
		}
	}
	return nil, err
}

func bringToFront(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
	_, err := cdp.Call(ctx, t, cdppage.BringToFront, cdp.Empty{})
	return chromedp.Void{}, err
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

func (e *env) waitSignedIn(t *testing.T, ctx context.Context) string {
	must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("signed-in"))), "signed in")
	return text(t, ctx, "#amr")
}

func TestBrowser(t *testing.T) {
	b := browser(t)
	e := newEnv(t)

	t.Run("SignIn", func(t *testing.T) {
		ctx := tab(t, b)
		e.firstFactor(t, ctx, "alice", "wonderland")
		must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(codeInput))), "prompt")
		intro := text(t, ctx, "main")
		if !strings.Contains(intro, "+94\u00a0•••••••\u00a067") || strings.Contains(intro, aliceMobile) {
			t.Fatalf("the prompt does not show the masked number only:\n%s", intro)
		}
		for attr, want := range map[string]string{"inputmode": "numeric", "autocomplete": "one-time-code"} {
			v, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(codeInput), attr))
			if err != nil || v.Value != want {
				t.Fatalf("code input %s = %q (%v), want %q", attr, v.Value, err, want)
			}
		}
		label, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`label[for="code"]`)))
		if err != nil || label != "Verification code" {
			t.Fatalf("code label %q, %v", label, err)
		}
		e.typeCode(t, ctx, e.nthSMS(t, aliceMobile, 1))
		if amr := e.waitSignedIn(t, ctx); amr != "pwd sms otp mfa" {
			t.Fatalf("amr %q, want pwd sms otp mfa", amr)
		}
	})

	t.Run("WrongCode", func(t *testing.T) {
		ctx := tab(t, b)
		n := len(e.sms(aliceMobile))
		e.firstFactor(t, ctx, "alice", "wonderland")
		code := e.nthSMS(t, aliceMobile, n+1)
		wrong := "000000"
		if code == wrong {
			wrong = "111111"
		}
		e.typeCode(t, ctx, wrong)
		must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#alert p"))), "alert")
		if msg := text(t, ctx, "#alert"); msg != "That code is not right. Attempts left: 4." {
			t.Fatalf("alert %q", msg)
		}
		if v, _ := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(codeInput), "aria-invalid")); v.Value != "true" {
			t.Fatal("the code input is not marked aria-invalid")
		}
		e.typeCode(t, ctx, code)
		e.waitSignedIn(t, ctx)
	})

	t.Run("ResendCountdownAndLimit", func(t *testing.T) {
		ctx := tab(t, b)
		n := len(e.sms(aliceMobile))
		e.firstFactor(t, ctx, "alice", "wonderland")
		first := e.nthSMS(t, aliceMobile, n+1)
		must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("resend"))), "resend button")
		dis, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("resend"), "disabled"))
		if err != nil || !dis.Exists {
			t.Fatalf("Resend is enabled before the interval passed (%v)", err)
		}
		if c := text(t, ctx, "#countdown"); !regexp.MustCompile(`^You can request a new code in [1-3] seconds\.$`).MatchString(c) {
			t.Fatalf("countdown %q", c)
		}
		if c := text(t, ctx, ".resend"); !strings.Contains(c, "Resends left: 1.") {
			t.Fatalf("resends left not shown: %q", c)
		}
		// The script enables it when the countdown ends.
		must(t, chromedp.Do(ctx, chromedp.WaitEnabled(chromedp.ID("resend")), chromedp.Click(chromedp.ID("resend"))), "resend")
		must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#status p"))), "resent notice")
		if s := text(t, ctx, "#status"); s != "A new code was sent." {
			t.Fatalf("status %q", s)
		}
		second := e.nthSMS(t, aliceMobile, n+2)
		if c := text(t, ctx, ".resend"); !strings.Contains(c, "No more codes can be sent for this sign-in. Use a backup code, or go back to Example app and sign in again.") {
			t.Fatalf("limit not explained: %q", c)
		}
		if nodes, _ := chromedp.Run(ctx, chromedp.Nodes(chromedp.CSSAll("#resend"), chromedp.AtLeast(0))); len(nodes) != 0 {
			t.Fatal("a Resend button is offered at the limit")
		}
		if first != second {
			// The new code replaced the old one.
			e.typeCode(t, ctx, first)
			must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#alert p"))), "alert")
		}
		e.typeCode(t, ctx, second)
		e.waitSignedIn(t, ctx)
	})

	t.Run("BackupCodeWithoutSMS", func(t *testing.T) {
		codes := e.callT(t, e.token, "POST", "/api/v1/orgs/myorg/users/bob/backup-codes", "", 201)["codes"].([]any)
		// Spend bob's number's budget.
		for n := 1; n <= 6; n++ {
			e.callT(t, e.token, "POST", "/api/v1/orgs/myorg/sms-otp/challenges", `{"mobile":"`+bobMobile+`","userId":"bob","application":"x"}`, 201)
			e.nthSMS(t, bobMobile, n)
		}
		ctx := tab(t, b)
		e.firstFactor(t, ctx, "bob", "builder")
		must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#alert p"))), "alert")
		if msg := text(t, ctx, "#alert"); !strings.HasPrefix(msg, "Too many codes were sent to this number.") {
			t.Fatalf("alert %q", msg)
		}
		must(t, chromedp.Do(ctx, chromedp.Click(chromedp.Search(`//a[normalize-space()="Use a backup code"]`)),
			chromedp.WaitVisible(chromedp.ID("backup")),
			chromedp.SendKeys(chromedp.ID("backup"), codes[0].(string)),
			chromedp.Click(chromedp.Search(continueB))), "backup code")
		if amr := e.waitSignedIn(t, ctx); amr != "pwd otp mfa" {
			t.Fatalf("amr %q, want pwd otp mfa (no sms)", amr)
		}
		if n := len(e.sms(bobMobile)); n != 6 {
			t.Fatalf("%d SMS to bob, want the 6 of the budget only", n)
		}
		if left := e.callT(t, e.token, "GET", "/api/v1/orgs/myorg/users/bob/backup-codes", "", 200)["remaining"]; left != 9.0 {
			t.Fatalf("remaining %v", left)
		}
	})

	t.Run("UnregisteredRedirectURI", func(t *testing.T) {
		ctx := tab(t, b)
		u := e.srv.URL + "/oauth2/authorize?" + url.Values{"client_id": {e.testApp.clientID}, "response_type": {"code"},
			"redirect_uri": {"https://evil.example/cb"}, "scope": {"openid"}}.Encode()
		must(t, chromedp.Do(ctx, chromedp.Navigate(u), chromedp.WaitVisible(chromedp.CSS("h1"))), "navigate")
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		if !strings.HasPrefix(loc, e.srv.URL+"/oauth2/authorize") {
			t.Fatalf("the browser left otphub for %s", loc)
		}
		if h := text(t, ctx, "h1"); h != "Sign-in problem" {
			t.Fatalf("heading %q", h)
		}
	})

	t.Run("TamperedRequestObject", func(t *testing.T) {
		ctx := tab(t, b)
		u, _ := e.testAuthURL(t, "carol", carolMobile, []string{"pwd"})
		pu, _ := url.Parse(u)
		q := pu.Query()
		ro := q.Get("request")
		parts := strings.Split(ro, ".")
		// Change the user without the secret: the signature no longer matches.
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		must(t, err, "decode")
		payload = bytes.Replace(payload, []byte(`"login_hint":"carol"`), []byte(`"login_hint":"alice"`), 1)
		q.Set("request", parts[0]+"."+base64.RawURLEncoding.EncodeToString(payload)+"."+parts[2])
		pu.RawQuery = q.Encode()
		must(t, chromedp.Do(ctx, chromedp.Navigate(pu.String())), "navigate")
		got := e.callback(t)
		if got.Get("error") != "invalid_request_object" || got.Get("iss") != e.srv.URL {
			t.Fatalf("callback %v, want error=invalid_request_object and iss", got)
		}
		if n := len(e.sms(carolMobile)); n != 0 {
			t.Fatalf("%d SMS sent for a tampered request", n)
		}
	})

	t.Run("ReplayedRequestObject", func(t *testing.T) {
		ctx := tab(t, b)
		u, _ := e.testAuthURL(t, "carol", carolMobile, []string{"pwd"})
		must(t, chromedp.Do(ctx, chromedp.Navigate(u), chromedp.WaitVisible(chromedp.CSS(codeInput))), "first use")
		must(t, chromedp.Do(ctx, chromedp.Navigate(u)), "replay")
		if got := e.callback(t); got.Get("error") != "invalid_request_object" || !strings.Contains(got.Get("error_description"), "jti") {
			t.Fatalf("replay callback %v", got)
		}
	})

	t.Run("NoAMR", func(t *testing.T) {
		ctx := tab(t, b)
		u, _ := e.testAuthURL(t, "carol", carolMobile, nil)
		must(t, chromedp.Do(ctx, chromedp.Navigate(u)), "navigate")
		if got := e.callback(t); got.Get("error") != "invalid_request_object" || !strings.HasPrefix(got.Get("error_description"), "amr:") {
			t.Fatalf("callback %v", got)
		}
	})

	t.Run("CodeReplayAndPKCEMismatch", func(t *testing.T) {
		cfg, verifier := e.testOAuth(), ""
		code := func() string {
			ctx := tab(t, b)
			var u string
			u, verifier = e.testAuthURL(t, "carol", carolMobile, []string{"fed"})
			n := len(e.sms(carolMobile))
			must(t, chromedp.Do(ctx, chromedp.Navigate(u)), "authorize")
			e.typeCode(t, ctx, e.nthSMS(t, carolMobile, n+1))
			got := e.callback(t)
			if got.Get("code") == "" || got.Get("state") != "st" {
				t.Fatalf("callback %v", got)
			}
			return got.Get("code")
		}
		ctx := context.Background()
		// A wrong verifier: refused, and the code is spent.
		c := code()
		if _, err := cfg.Exchange(ctx, c, oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
			t.Fatalf("exchange with a wrong verifier: %v", err)
		}
		if _, err := cfg.Exchange(ctx, c, oauth2.VerifierOption(verifier)); err == nil {
			t.Fatal("a code survived a PKCE mismatch")
		}
		// The right verifier, then a replay.
		c = code()
		tok, err := cfg.Exchange(ctx, c, oauth2.VerifierOption(verifier))
		must(t, err, "exchange")
		provider, err := oidc.NewProvider(ctx, e.srv.URL)
		must(t, err, "discovery")
		idt, err := provider.Verifier(&oidc.Config{ClientID: e.testApp.clientID}).Verify(ctx, tok.Extra("id_token").(string))
		must(t, err, "verify the ID token")
		var claims struct {
			AMR []string `json:"amr"`
			ACR string   `json:"acr"`
		}
		_ = idt.Claims(&claims)
		if idt.Subject != "carol" || idt.Nonce != "n-carol" || strings.Join(claims.AMR, " ") != "fed sms otp mfa" || claims.ACR == "" {
			t.Fatalf("ID token sub=%q nonce=%q amr=%v acr=%q", idt.Subject, idt.Nonce, claims.AMR, claims.ACR)
		}
		if _, err := cfg.Exchange(ctx, c, oauth2.VerifierOption(verifier)); err == nil || !strings.Contains(err.Error(), "invalid_grant") {
			t.Fatalf("a replayed code: %v", err)
		}
	})

	t.Run("ExpiredCode", func(t *testing.T) {
		e.callT(t, e.token, "PUT", "/api/v1/orgs/myorg/sms-otp/settings", `{"expirySeconds":1}`, 200)
		defer e.callT(t, e.token, "PUT", "/api/v1/orgs/myorg/sms-otp/settings", `{"expirySeconds":300}`, 200)
		ctx := tab(t, b)
		n := len(e.sms(carolMobile))
		u, _ := e.testAuthURL(t, "carol", carolMobile, []string{"pwd"})
		must(t, chromedp.Do(ctx, chromedp.Navigate(u)), "authorize")
		code := e.nthSMS(t, carolMobile, n+1)
		time.Sleep(1100 * time.Millisecond) // the OTP's whole lifetime
		e.typeCode(t, ctx, code)
		must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#alert p"))), "alert")
		if msg := text(t, ctx, "#alert"); msg != "This code has expired. Request a new one." {
			t.Fatalf("alert %q", msg)
		}
	})

	t.Run("Locale", func(t *testing.T) {
		ctx := tab(t, b)
		u, _ := e.testAuthURL(t, "carol", carolMobile, []string{"pwd"}, "fr-CA")
		must(t, chromedp.Do(ctx, chromedp.Navigate(u), chromedp.WaitVisible(chromedp.CSS(codeInput))), "authorize")
		if label := text(t, ctx, `label[for="code"]`); label != "Code de vérification" {
			t.Fatalf("label %q in fr-CA", label)
		}
		lang, _ := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("html"), "lang"))
		if lang.Value != "fr" {
			t.Fatalf("lang %q", lang.Value)
		}
	})

	t.Run("Screenshots", func(t *testing.T) {
		// OTPHUB_SCREENSHOTS=<dir> writes them there (make screenshots
		// writes docs/login/); otherwise they go to a temporary directory.
		dir := os.Getenv("OTPHUB_SCREENSHOTS")
		if dir == "" {
			dir = t.TempDir()
		}
		must(t, os.MkdirAll(dir, 0o755), "mkdir")
		for _, shot := range []struct {
			name          string
			width, height int64
			mobile, wrong bool
		}{{"prompt-desktop", 1280, 800, false, false}, {"prompt-phone", 390, 844, true, false}, {"prompt-wrong-code-phone", 390, 844, true, true}} {
			// One subtest each, so each closes its tab (a background tab
			// cannot be captured).
			t.Run(shot.name, func(t *testing.T) {
				ctx := tab(t, b)
				// The example application: it offers backup codes.
				p := &pending{user: "carol", state: "st", nonce: "n", verifier: oauth2.GenerateVerifier()}
				u, err := e.example.authURL(p, carolMobile, []string{"pwd"})
				must(t, err, "auth url")
				vp := []chromedp.EmulateViewportOption{chromedp.EmulateScale(2)}
				if shot.mobile {
					vp = append(vp, chromedp.EmulateMobile)
				}
				must(t, chromedp.Do(ctx, chromedp.EmulateViewport(shot.width, shot.height, vp...),
					chromedp.Navigate(u), chromedp.WaitVisible(chromedp.CSS(codeInput))), "authorize")
				if shot.wrong {
					e.typeCode(t, ctx, "12345")
					must(t, chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS("#alert p"))), "alert")
				}
				png, err := capture(ctx)
				must(t, err, "screenshot")
				if !bytes.HasPrefix(png, []byte("\x89PNG")) {
					t.Fatal("not a PNG")
				}
				must(t, os.WriteFile(filepath.Join(dir, shot.name+".png"), png, 0o644), "write")
			})
		}
	})
}

// testOAuth is the test client's oauth2 configuration.
func (e *env) testOAuth() *oauth2.Config {
	return &oauth2.Config{ClientID: e.testApp.clientID, ClientSecret: e.testApp.secret, RedirectURL: e.testApp.redirect,
		Endpoint: oauth2.Endpoint{AuthURL: e.srv.URL + "/oauth2/authorize", TokenURL: e.srv.URL + "/oauth2/token"}, Scopes: []string{"openid"}}
}

// testAuthURL is an authorization request of the test client for user,
// signed the way the example app signs its own; it returns the URL and
// the PKCE verifier.
func (e *env) testAuthURL(t *testing.T, userID, mobile string, amr []string, uiLocales ...string) (string, string) {
	cfg := e.testOAuth()
	a := &app{o: &options{issuer: e.srv.URL, clientID: e.testApp.clientID, clientSecret: e.testApp.secret}, oauth: *cfg}
	p := &pending{user: userID, state: "st", nonce: "n-" + userID, verifier: oauth2.GenerateVerifier()}
	u, err := a.authURL(p, mobile, amr)
	must(t, err, "auth url")
	if len(uiLocales) > 0 {
		u += "&ui_locales=" + url.QueryEscape(uiLocales[0])
	}
	return u, p.verifier
}

// callback waits for the test client's callback.
func (e *env) callback(t *testing.T) url.Values {
	t.Helper()
	select {
	case q := <-e.callbacks:
		return q
	case <-time.After(20 * time.Second):
		t.Fatal("no callback")
		return nil
	}
}
