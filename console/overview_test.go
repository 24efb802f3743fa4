package console_test

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/app/apptest"
)

// TestOverviewOTPCharts: the overview draws the OTPs sent and verified per
// hour (SVG with a table) and the conversion per country from GET
// …/sms-otp/stats, over HTTP against the whole binary; no browser needed.
func TestOverviewOTPCharts(t *testing.T) {
	srv := apptest.Start(t)
	admin := adminAPI(t, srv.URL, srv.AdminClientID, srv.AdminClientSecret)
	if code, body := admin.do("POST", "/api/v1/orgs", map[string]any{"name": "acme"}); code != 201 {
		t.Fatalf("create org: %d %v", code, body)
	}
	if code, body := admin.do("PUT", "/api/v1/orgs/acme/sms-provider", map[string]any{"type": "console"}); code != 200 {
		t.Fatalf("console provider: %d %v", code, body)
	}
	start := func(mobile, user string) string {
		code, body := admin.do("POST", "/api/v1/orgs/acme/sms-otp/challenges", map[string]any{"mobile": mobile, "userId": user, "application": "shop"})
		if code != 201 {
			t.Fatalf("start challenge: %d %v", code, body)
		}
		return body["id"].(string)
	}
	// Two OTPs to +94, one verified (conversion 50%), one to +1.
	id := start("+94771234001", "u1")
	otpRe := regexp.MustCompile(`\+94771234001.*"[^"]*? is ([0-9A-Z]{4,10})\.[^"]*"\s*$`)
	var otp string
	eventually(t, "the SMS on the console provider", func() bool {
		for _, line := range strings.Split(srv.Stdout.String(), "\n") {
			if m := otpRe.FindStringSubmatch(line); m != nil {
				otp = m[1]
			}
		}
		return otp != ""
	})
	if code, body := admin.do("POST", "/api/v1/orgs/acme/sms-otp/challenges/"+id+"/verify", map[string]any{"code": otp}); code != 200 {
		t.Fatalf("verify: %d %v", code, body)
	}
	start("+94771234002", "u2")
	start("+12015550123", "u3")

	// The first platform admin, signed in through the setup link.
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) string {
		t.Helper()
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", u, resp.StatusCode)
		}
		return string(b)
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(get(srv.ConsoleSetupLink))
	if m == nil {
		t.Fatal("setup page without a CSRF field")
	}
	resp, err := c.PostForm(srv.ConsoleSetupLink, url.Values{"csrf": {m[1]}, "email": {"root@example.com"}, "name": {"Root"},
		"mobile": {"+94771230000"}, "password": {password}, "confirm": {password}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("setup: %d", resp.StatusCode)
	}

	page := html.UnescapeString(get(srv.URL + "/console/orgs/acme/"))
	for _, want := range []string{
		"OTPs sent and verified per hour, last 24 hours (UTC)", "3 OTPs sent (resends included), 1 challenge verified",
		`<span class="key key-sent">sent</span>`, `<th scope="col">Sent</th><th scope="col">Verified</th>`,
		"Conversion per country, last 24 hours",
		`<th scope="row">+94</th><td>2</td><td>no receipts</td><td>1</td>`, "50.0%",
		`<th scope="row">+1</th><td>1</td><td>no receipts</td><td>0</td>`, "0.0%",
		"Deliveries per hour, last 24 hours (UTC)", // the other chart, drawn by the same template
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the overview lacks %q", want)
		}
	}
	if strings.Index(page, ">+94<") > strings.Index(page, ">+1<") {
		t.Error("countries not by OTPs sent, most first")
	}
	// Each hour's bar pair says what the API says, in its tooltip and its
	// table row.
	code, st := admin.do("GET", "/api/v1/orgs/acme/sms-otp/stats", nil)
	if code != 200 {
		t.Fatalf("stats API: %d %v", code, st)
	}
	sent := 0
	for _, h := range st["hours"].([]any) {
		h := h.(map[string]any)
		start, _ := time.Parse(time.RFC3339, h["start"].(string))
		label, s, v := start.Format("15:00"), int(h["sent"].(float64)), int(h["verified"].(float64))
		if s == 0 {
			continue
		}
		sent += s
		for _, want := range []string{fmt.Sprintf("<title>%s: %d sent, %d verified</title>", label, s, v),
			fmt.Sprintf(`<tr><th scope="row">%s</th><td>%d</td><td>%d</td></tr>`, label, s, v)} {
			if !strings.Contains(page, want) {
				t.Errorf("the overview lacks %q", want)
			}
		}
	}
	if sent != 3 {
		t.Errorf("the stats API counts %d OTPs sent, want 3", sent)
	}
	if n := strings.Count(page, `fill="#0b5cad"`); n != 24 {
		t.Errorf("%d bars of OTPs sent, want one per hour (24)", n)
	}
}
