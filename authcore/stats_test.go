package authcore_test

import (
	"context"
	"testing"
	"time"

	"github.com/otphub/otphub/store"
)

const stats = "/api/v1/orgs/acme/sms-otp/stats"

// TestStats: GET …/sms-otp/stats over the real HTTP API sums up the org's
// OTPs per hour (resends included) and per country calling code (with the
// handset receipts of each challenge's current SMS); it is the org
// admin's, and bad windows are 400s naming the parameter.
func TestStats(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()

	id1 := e.start(lkMobile, "alice") // 05:06:07
	if r := e.verify(id1, e.nextOTP()); r.status != 200 {
		t.Fatalf("verify: %d %v", r.status, r.body)
	}
	id2 := e.start(lkMobile, "bob")
	e.nextOTP()
	e.clk.Add(30 * time.Second)
	e.mustDo("POST", challenges+"/"+id2+"/resend", e.otp, "", 200)
	e.nextOTP()
	e.clk.Add(54 * time.Minute) // 06:00:37, within the tokens' hour
	id3 := e.start(usMobile, "carol")
	if r := e.verify(id3, e.nextOTP()); r.status != 200 {
		t.Fatalf("verify: %d %v", r.status, r.body)
	}
	// The first SMS was delivered to the handset, says its receipt.
	ch1, err := e.st.GetChallenge(ctx, e.org.ID, id1)
	if err != nil || ch1.CountryCode != 94 {
		t.Fatalf("challenge's country code: %v %v", ch1.CountryCode, err)
	}
	key := store.ReceiptKey{OrgID: e.org.ID, EventID: ch1.EventID, DestinationType: "twilio", DestinationID: store.ProviderPrimary}
	if err := e.st.RecordSMSAccepted(ctx, store.SMSReceipt{ReceiptKey: key, ProviderMessageID: "SM1", CountryCode: 94, AcceptedAt: ch1.CreatedAt, ExpiresAt: ch1.ExpiresAt}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.ApplyReceipt(ctx, store.Receipt{ReceiptKey: key, ProviderMessageID: "SM1", State: store.HandsetDelivered, ReceivedAt: ch1.CreatedAt.Add(3 * time.Second)}); err != nil {
		t.Fatal(err)
	}

	_, _, got := e.mustDo("GET", stats+"?hours=3", e.orgAdmin, "", 200)
	if got["from"] != "2026-03-04T04:00:00Z" || got["until"] != "2026-03-04T07:00:00Z" {
		t.Fatalf("window %v to %v", got["from"], got["until"])
	}
	hours := got["hours"].([]any)
	want := []struct {
		start          string
		sent, verified float64
	}{{"2026-03-04T04:00:00Z", 0, 0}, {"2026-03-04T05:00:00Z", 3, 1}, {"2026-03-04T06:00:00Z", 1, 1}}
	if len(hours) != len(want) {
		t.Fatalf("hours = %v", hours)
	}
	for i, w := range want {
		h := hours[i].(map[string]any)
		if h["start"] != w.start || h["sent"] != w.sent || h["verified"] != w.verified {
			t.Errorf("hour %d = %v, want %+v", i, h, w)
		}
	}
	countries := got["countries"].([]any)
	if len(countries) != 2 {
		t.Fatalf("countries = %v", countries)
	}
	lk, us := countries[0].(map[string]any), countries[1].(map[string]any)
	if lk["country"] != "+94" || lk["callingCode"] != 94.0 || lk["sent"] != 3.0 || lk["verified"] != 1.0 ||
		lk["delivered"] != 1.0 || lk["receipts"] != 1.0 || lk["conversion"] != 0.3333 {
		t.Errorf("+94 = %v", lk)
	}
	if us["country"] != "+1" || us["sent"] != 1.0 || us["verified"] != 1.0 || us["delivered"] != 0.0 || us["conversion"] != 1.0 {
		t.Errorf("+1 = %v", us)
	}

	// The default window is 24 hours; 168 is the longest.
	_, _, got = e.mustDo("GET", stats, e.orgAdmin, "", 200)
	if n := len(got["hours"].([]any)); n != 24 || got["until"] != "2026-03-04T07:00:00Z" {
		t.Errorf("default window: %d hours until %v", n, got["until"])
	}
	_, _, got = e.mustDo("GET", stats+"?hours=168", e.orgAdmin, "", 200)
	if n := len(got["hours"].([]any)); n != 168 {
		t.Errorf("hours=168: %d hours", n)
	}
	for _, q := range []string{"0", "169", "-1", "abc", "1.5", "", "24&hours=48"} {
		r := e.do("GET", stats+"?hours="+q, e.orgAdmin, "")
		wantError(t, r, 400, "invalid_hours")
		if r.body["message"] != "hours must be an integer from 1 to 168" {
			t.Errorf("hours=%s: message %q", q, r.body["message"])
		}
	}

	// Org admins only, of their own org: the otp scope, another org's
	// admin and an unknown org are refused; globex sees none of acme's.
	for _, tok := range []string{"", "not-a-jwt"} {
		if r := e.do("GET", stats, tok, ""); r.status != 401 {
			t.Errorf("token %q: %d", tok, r.status)
		}
	}
	wantError(t, e.do("GET", stats, e.otp, ""), 403, "forbidden")
	wantError(t, e.do("GET", stats, e.other, ""), 403, "forbidden")
	wantError(t, e.do("GET", "/api/v1/orgs/nosuch/sms-otp/stats", e.orgAdmin, ""), 403, "forbidden")
	wantError(t, e.do("GET", "/api/v1/orgs/nosuch/sms-otp/stats", e.admin, ""), 404, "org_not_found")
	_, _, got = e.mustDo("GET", "/api/v1/orgs/globex/sms-otp/stats", e.other, "", 200)
	if n := len(got["countries"].([]any)); n != 0 {
		t.Errorf("globex's stats show %d countries of acme's", n)
	}
	for _, h := range got["hours"].([]any) {
		if h.(map[string]any)["sent"] != 0.0 {
			t.Fatalf("globex's stats show acme's OTPs: %v", h)
		}
	}
	e.mustDo("GET", stats, e.admin, "", 200) // the platform admin
}
