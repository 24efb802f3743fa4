package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/otphub/otphub/app/apptest"
	"github.com/otphub/otphub/authcore"
	"github.com/otphub/otphub/config"
)

// TestOTPLimitDefaultsMatchAuthcore: the --otp-limit-* defaults are
// authcore.DefaultLimits (config takes them from there).
func TestOTPLimitDefaultsMatchAuthcore(t *testing.T) {
	cfg, err := config.Parse(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		flag string
		got  authcore.Limit
		want authcore.Limit
	}{
		{"--otp-limit-per-number", cfg.OTPLimitPerNumber, authcore.DefaultLimits.PerNumber},
		{"--otp-limit-per-ip", cfg.OTPLimitPerIP, authcore.DefaultLimits.PerIP},
		{"--otp-limit-per-org", cfg.OTPLimitPerOrg, authcore.DefaultLimits.PerOrg},
	} {
		if c.got.Max != c.want.Max || c.got.Window != c.want.Window {
			t.Errorf("%s defaults to %d/%s, authcore's default is %d/%s", c.flag, c.got.Max, c.got.Window, c.want.Max, c.want.Window)
		}
	}
}

// TestOTPLimitFlagsReachAuthcore: the --otp-limit-* flags set the budgets
// the running server enforces, and 0 disables one.
func TestOTPLimitFlagsReachAuthcore(t *testing.T) {
	t.Run("per number and per ip", func(t *testing.T) {
		srv := apptest.Start(t, "--otp-limit-per-number", "2/1h", "--otp-limit-per-ip", "1/1h")
		start := otpStarter(t, srv)
		// Budgets are charged number, IP, org up to the first exhausted.
		if status, _ := start("198.51.100.1"); status != 201 {
			t.Fatalf("first start: %d", status)
		}
		if status, msg := start("198.51.100.1"); status != 429 || !strings.Contains(msg, "ip") {
			t.Fatalf("second start from one client IP: %d %q, want 429 for the ip budget", status, msg)
		}
		if status, msg := start("198.51.100.2"); status != 429 || !strings.Contains(msg, "number") {
			t.Fatalf("third send to one number: %d %q, want 429 for the number budget", status, msg)
		}
	})
	t.Run("0 disables, per org", func(t *testing.T) {
		srv := apptest.Start(t, "--otp-limit-per-number", "0", "--otp-limit-per-org", "12/1h")
		start := otpStarter(t, srv)
		// Past the default 10 per number: the number budget is off.
		for i := range 12 {
			if status, msg := start(""); status != 201 {
				t.Fatalf("start %d: %d %q", i+1, status, msg)
			}
		}
		if status, msg := start(""); status != 429 || !strings.Contains(msg, "org") {
			t.Fatalf("13th start of the org: %d %q, want 429 for the org budget", status, msg)
		}
	})
}

// otpStarter creates org "acme" with an otp client on srv and returns a
// function starting a challenge to one number with an optional clientIp;
// it returns the status and the error message.
func otpStarter(t *testing.T, srv *apptest.TestServer) func(clientIP string) (int, string) {
	t.Helper()
	call := func(method, path, tok, body string, out any) int {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			_ = json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	token := func(id, secret string) string {
		t.Helper()
		resp, err := http.PostForm(srv.URL+"/oauth2/token", url.Values{
			"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.AccessToken == "" {
			t.Fatalf("token: %d %v", resp.StatusCode, err)
		}
		return out.AccessToken
	}
	admin := token(srv.AdminClientID, srv.AdminClientSecret)
	if st := call("POST", "/api/v1/orgs", admin, `{"name":"acme"}`, nil); st != 201 {
		t.Fatalf("create org: %d", st)
	}
	var client struct{ ClientID, ClientSecret string }
	if st := call("POST", "/api/v1/orgs/acme/clients", admin, `{"name":"login server","scopes":["otp"]}`, &client); st != 201 {
		t.Fatalf("create client: %d", st)
	}
	otp := token(client.ClientID, client.ClientSecret)
	return func(clientIP string) (int, string) {
		t.Helper()
		body := `{"mobile":"+94771234567","userId":"alice","application":"myapp"`
		if clientIP != "" {
			body += `,"clientIp":"` + clientIP + `"`
		}
		var out struct{ Message string }
		st := call("POST", "/api/v1/orgs/acme/sms-otp/challenges", otp, body+"}", &out)
		return st, out.Message
	}
}
