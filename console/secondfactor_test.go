package console_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/otphub/otphub/app/apptest"
)

// TestConsoleSMSSecondFactor signs in to the console with a password and
// then the SMS OTP of otphub's own hosted login step, the console being an
// application of the org named by --console-sign-in-org.
func TestConsoleSMSSecondFactor(t *testing.T) {
	browser(t)
	// The console creates its application at the first sign-in…
	t.Run("NewApplication", func(t *testing.T) { testSecondFactor(t, false) })
	// …or finds one it kept no secret of, and gives it a new secret.
	t.Run("FoundApplication", func(t *testing.T) { testSecondFactor(t, true) })
}

func testSecondFactor(t *testing.T, preexisting bool) {
	// apptest allows the console provider (a development server): the
	// start creates the sign-in org and gives it that provider.
	srv := apptest.Start(t, "--console-sign-in-org", "ops")
	admin := adminAPI(t, srv.URL, srv.AdminClientID, srv.AdminClientSecret)
	if code, body := admin.do("GET", "/api/v1/orgs/ops/sms-provider", nil); code != 200 || body["type"] != "console" {
		t.Fatalf("the sign-in org's provider after the first start: %d %v", code, body)
	}
	if preexisting {
		if code, body := admin.do("POST", "/api/v1/orgs/ops/applications", map[string]any{"name": "otphub console",
			"redirectUris": []string{srv.URL + "/console/sign-in/callback"},
			"loginFlow":    map[string]any{"firstFactors": []string{"pwd"}, "secondFactor": "sms-otp"}}); code != 201 {
			t.Fatalf("application: %d %v", code, body)
		}
	}
	b := newTab(t, srv.URL, true)
	// The setup link signs the first admin in (holding it is the proof).
	b.open(srv.ConsoleSetupLink)
	b.fill("Email", "root@example.com")
	b.fill("Your name", "Root")
	b.fill("Mobile number", "+94771230000")
	b.fill("Password", password)
	b.fill("Password again", password)
	b.press("Create account")
	b.press("Sign out")

	b.open("/console/sign-in?next=/console/platform/users")
	b.fill("Email", "root@example.com")
	b.fill("Password", password)
	b.press("Sign in")
	if !strings.Contains(b.url(), "/login/") {
		t.Fatalf("after the password at %s, want the hosted SMS OTP step", b.url())
	}
	if _, l := statusOf(t, srv.URL+"/console/platform/users"); !strings.Contains(l, "/console/sign-in") {
		t.Fatalf("signed in before the second factor (%s)", l)
	}
	b.axe()
	if !preexisting {
		b.shot("sign-in-sms-otp")
	}
	otp := lastSMSCode(t, srv, "+94771230000")
	t.Logf("the sign-in SMS: %s", otp)
	b.fill("Verification code", otp)
	b.press("Continue")
	if !strings.HasSuffix(b.url(), "/console/platform/users") {
		t.Fatalf("after the SMS OTP at %s (%s)", b.url(), b.text())
	}
	_, audit := admin.do("GET", "/api/v1/audit-log", nil)
	entries := fmt.Sprint(audit["entries"])
	if !strings.Contains(entries, "console.sign_in") {
		t.Fatalf("no sign-in in the audit log: %v", entries)
	}
	want := "POST /api/v1/orgs/{org}/applications"
	if preexisting {
		want = "POST /api/v1/orgs/{org}/applications/{id}/secret"
	}
	found := false
	for _, e := range audit["entries"].([]any) {
		m := e.(map[string]any)
		found = found || (m["actor"] == "client:console" && m["action"] == want && m["status"] == float64(map[bool]int{false: 201, true: 200}[preexisting]))
	}
	if !found {
		t.Fatalf("the console's application was not made through the API (%q): %v", want, entries)
	}
	if preexisting {
		return
	}
	// Without a provider the step cannot run: password only, and every
	// platform admin page says so.
	if code, body := admin.do("DELETE", "/api/v1/orgs/ops/sms-provider", nil); code != 204 {
		t.Fatalf("delete provider: %d %v", code, body)
	}
	b.press("Sign out")
	b.open("/console/sign-in")
	b.fill("Email", "root@example.com")
	b.fill("Password", password)
	b.press("Sign in")
	if !strings.HasSuffix(b.url(), "/console/platform/orgs") || !strings.Contains(b.text(), "Console sign-in is password only: the org ops") {
		t.Fatalf("password-only sign-in at %s: %s", b.url(), b.text())
	}
}

func statusOf(t *testing.T, u string) (int, string) {
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}
