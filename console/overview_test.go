package console_test

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
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

// TestOverviewDeliveryCharts: the overview's deliveries section (totals
// per kind, webhook and SMS deliveries per hour, webhook delivery latency
// per hour) is what GET …/deliveries/stats says, over HTTP against the
// whole binary: real webhook deliveries to a local receiver (test events)
// and real SMS deliveries (the console provider).
func TestOverviewDeliveryCharts(t *testing.T) {
	srv := apptest.Start(t)
	admin := adminAPI(t, srv.URL, srv.AdminClientID, srv.AdminClientSecret)
	if code, body := admin.do("POST", "/api/v1/orgs", map[string]any{"name": "acme"}); code != 201 {
		t.Fatalf("create org: %d %v", code, body)
	}
	cc := signedIn(t, srv)
	_, page := cc.get("/console/orgs/acme/")
	if !strings.Contains(page, "No delivery in the last 24 hours.") {
		t.Error("the overview of an org without deliveries does not say so")
	}
	if code, body := admin.do("PUT", "/api/v1/orgs/acme/sms-provider", map[string]any{"type": "console"}); code != 200 {
		t.Fatalf("console provider: %d %v", code, body)
	}
	for _, user := range []string{"u1", "u2"} {
		if code, body := admin.do("POST", "/api/v1/orgs/acme/sms-otp/challenges", map[string]any{"mobile": "+94771234001", "userId": user, "application": "shop"}); code != 201 {
			t.Fatalf("start challenge: %d %v", code, body)
		}
	}
	rv := newHookReceiver(t)
	const hooks = "/console/orgs/acme/webhooks"
	if code, _, body := cc.post(hooks, hooks, url.Values{"callback": {rv.URL + "/hook"}, "format": {"asgardeo"}}); code != http.StatusSeeOther {
		t.Fatalf("add webhook: %d %s", code, body)
	}
	_, subs := admin.do("GET", "/api/v1/orgs/acme/subscriptions", nil)
	list, _ := subs["subscriptions"].([]any)
	if len(list) != 1 {
		t.Fatalf("subscriptions: %v", subs)
	}
	testPath := hooks + "/" + list[0].(map[string]any)["id"].(string) + "/test"
	for range 2 {
		if code, _, _ := cc.post(hooks, testPath, url.Values{}); code != http.StatusSeeOther {
			t.Fatalf("send test event: %d", code)
		}
	}

	// The stats count them once the dispatcher has recorded them (webhook
	// successes are written asynchronously).
	type kind struct {
		Delivered, Failed, Pending int
		Latency                    struct {
			Count        int
			P50Ms, P90Ms float64
		}
	}
	var st struct {
		Hours []struct {
			Start    time.Time
			Webhooks kind
			SMS      kind
		}
		Totals struct{ Webhooks, SMS kind }
	}
	eventually(t, "two webhook and two SMS deliveries in the stats", func() bool {
		code, body := admin.do("GET", "/api/v1/orgs/acme/deliveries/stats", nil)
		if code != 200 {
			t.Fatalf("stats API: %d %v", code, body)
		}
		b, _ := json.Marshal(body)
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		return st.Totals.Webhooks.Delivered == 2 && st.Totals.SMS.Delivered == 2
	})
	if st.Totals.Webhooks.Latency.Count != 2 || st.Totals.Webhooks.Latency.P50Ms <= 0 {
		t.Fatalf("webhook latency %+v", st.Totals.Webhooks.Latency)
	}

	_, page = cc.get("/console/orgs/acme/")
	page = html.UnescapeString(page)
	for _, want := range []string{
		"Deliveries per hour, last 24 hours (UTC)",
		`<tr><th scope="row">Webhooks</th><td>2</td><td>0</td><td>0</td>`,
		`<tr><th scope="row">SMS</th><td>2</td><td>0</td><td>0</td>`,
		`aria-label="Webhooks success">100%</meter>`,
		`<h3 id="ov-webhooks">Webhook deliveries per hour</h3>`,
		`<h3 id="ov-sms">SMS deliveries per hour</h3>`,
		`<span class="key key-ok">accepted by the provider</span>`,
		"Webhook delivery latency per hour (milliseconds rounded up, first attempt's start to the receiver's 2xx)",
		`aria-labelledby="ov-webhook-latency"`,
		"Over the 24 hours: median ",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the overview lacks %q", want)
		}
	}
	// Each hour's bars say what the API says, in their tooltips.
	for _, h := range st.Hours {
		label := h.Start.Format("15:00")
		if w := h.Webhooks; w.Delivered > 0 {
			for _, want := range []string{
				fmt.Sprintf("<title>%s: %d delivered, 0 failed, dead or expired, 0 pending</title>", label, w.Delivered),
				fmt.Sprintf("<title>%s: %d ms median, %d ms 90th percentile</title>", label, int(math.Ceil(w.Latency.P50Ms)), int(math.Ceil(w.Latency.P90Ms))),
			} {
				if !strings.Contains(page, want) {
					t.Errorf("the overview lacks %q", want)
				}
			}
		}
		if s := h.SMS; s.Delivered > 0 {
			if want := fmt.Sprintf("<title>%s: %d accepted by the provider, 0 failed, dead or expired, 0 pending</title>", label, s.Delivered); !strings.Contains(page, want) {
				t.Errorf("the overview lacks %q", want)
			}
		}
	}
	if strings.Contains(page, "SMS delivered to handsets") {
		t.Error("a handset summary without delivery receipts")
	}
}
