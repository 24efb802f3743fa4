package smspolicy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/smspolicy"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/sqlite"
)

func TestScreen(t *testing.T) {
	t.Parallel()
	cases := []struct {
		number   string
		settings store.OTPSettings
		want     string // E.164, or "" when refused
	}{
		{"+94771234567", store.OTPSettings{}, "+94771234567"},
		{"+12015550123", store.OTPSettings{}, "+12015550123"},
		{"+449098790000", store.OTPSettings{}, ""}, // premium rate
		{"+18005550199", store.OTPSettings{}, ""},  // toll free
		{"+442079460000", store.OTPSettings{}, ""}, // fixed line
		{"+442079460000", store.OTPSettings{AllowedNumberTypes: []string{"fixed_line"}}, "+442079460000"},
		{"+94771234567", store.OTPSettings{AllowedCountryCodes: []int{1}}, ""},
		{"+12015550123", store.OTPSettings{AllowedCountryCodes: []int{1}}, "+12015550123"},
		// International freephone: a calling code of no country.
		{"+80012345678", store.OTPSettings{AllowedNumberTypes: []string{"toll_free"}}, "+80012345678"},
		{"+1", store.OTPSettings{}, ""},
		{"94771234567", store.OTPSettings{}, ""},
	}
	for _, c := range cases {
		got, why := smspolicy.Screen(c.number, c.settings)
		if got != c.want || (c.want == "") != (why != "") {
			t.Errorf("Screen(%s, %+v) = %q, %q; want %q", c.number, c.settings, got, why, c.want)
		}
		// ScreenNumber's calling code is the one CallingCode reads back.
		if n, _ := smspolicy.ScreenNumber(c.number, c.settings); n.E164 != got || (got != "" && n.CallingCode != smspolicy.CallingCode(got)) {
			t.Errorf("ScreenNumber(%s) = %+v; Screen gave %q, CallingCode %d", c.number, n, got, smspolicy.CallingCode(got))
		}
	}
}

func TestForOrgStaysWithinCeilings(t *testing.T) {
	t.Parallel()
	ceil := smspolicy.Limits{}.WithDefaults()
	l := ceil.ForOrg(store.OTPSettings{SendLimitPerNumber: 3, SendLimitPerOrg: 5000})
	if l.PerNumber.Max != 3 || l.PerNumber.Window != time.Hour || l.PerOrg.Max != ceil.PerOrg.Max || l.PerIP != ceil.PerIP {
		t.Fatalf("ForOrg = %+v", l)
	}
	if msg := smspolicy.ValidateOrgLimit(11, ceil.PerNumber); msg == "" {
		t.Error("11 per hour passed a ceiling of 10")
	}
	if msg := smspolicy.ValidateOrgLimit(500, smspolicy.Limit{Max: -1, Window: time.Hour}); msg != "" {
		t.Errorf("an unlimited ceiling refused 500: %s", msg)
	}
}

// TestChargeOnce: an event is charged once however many attempts it
// takes; one marked charged (by authcore) is not charged at all.
func TestChargeOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir(), store.Options{EncryptionKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	exp := now.Add(5 * time.Minute)
	l := smspolicy.Limits{PerNumber: smspolicy.Limit{Max: 2, Window: time.Hour}}.WithDefaults()
	const number = "+94771234567"
	for attempt := range 5 {
		if scope, err := smspolicy.ChargeOnce(ctx, st, 1, "ev-1", number, exp, l, now); err != nil || scope != "" {
			t.Fatalf("attempt %d of one event: %q %v", attempt+1, scope, err)
		}
	}
	if err := smspolicy.MarkCharged(ctx, st, 1, "ev-authcore", exp); err != nil {
		t.Fatal(err)
	}
	if scope, err := smspolicy.ChargeOnce(ctx, st, 1, "ev-authcore", number, exp, l, now); err != nil || scope != "" {
		t.Fatalf("a marked event: %q %v", scope, err)
	}
	if scope, _ := smspolicy.ChargeOnce(ctx, st, 1, "ev-2", number, exp, l, now); scope != "" {
		t.Fatalf("the second event: %q", scope)
	}
	if scope, _ := smspolicy.ChargeOnce(ctx, st, 1, "ev-3", number, exp, l, now); scope != smspolicy.ScopeNumber {
		t.Fatalf("the third event to the number: %q, want number", scope)
	}
	// Another org's budget is its own, even for the same event ID.
	if scope, _ := smspolicy.ChargeOnce(ctx, st, 2, "ev-3", number, exp, l, now); scope != "" {
		t.Fatalf("another org: %q", scope)
	}
}

func TestGuard(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir(), store.Options{EncryptionKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	org, err := st.CreateOrg(ctx, "guarded")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	g := smspolicy.NewGuard(st, smspolicy.Limits{PerNumber: smspolicy.Limit{Max: 3, Window: time.Hour}}, func() time.Time { return now })
	ev := func(id, number string) *event.SmsOtpNotificationEvent {
		return &event.SmsOtpNotificationEvent{ID: id, OrganizationID: org.ID, SendTo: number, IssuedAt: now}
	}
	// Built-in policy: premium rate refused, mobile sent.
	if why, err := g.CheckSend(ctx, ev("e0", "+449098790000")); err != nil || !strings.Contains(why, "premium-rate") {
		t.Fatalf("premium rate: %q %v", why, err)
	}
	if err := st.PutOTPSettings(ctx, store.OTPSettings{OrgID: org.ID, ExpirySeconds: 300, Length: 6, MaxFailedAttempts: 5,
		AllowedCountryCodes: []int{94}, SendLimitPerNumber: 2}); err != nil {
		t.Fatal(err)
	}
	if why, _ := g.CheckSend(ctx, ev("e1", "+447400123456")); !strings.Contains(why, "+44") {
		t.Fatalf("a country outside the allow-list: %q", why)
	}
	for i, id := range []string{"e2", "e2", "e3"} { // e2 twice: a retry
		if why, err := g.CheckSend(ctx, ev(id, "+94771234567")); why != "" || err != nil {
			t.Fatalf("send %d: %q %v", i, why, err)
		}
	}
	if why, _ := g.CheckSend(ctx, ev("e4", "+94771234567")); !strings.Contains(why, "budget per number") {
		t.Fatalf("the org's own budget of 2: %q", why)
	}
	if why, over, _ := g.Replay(ctx, org.ID, "e2", "+94771234567", now.Add(time.Minute)); !over || !strings.Contains(why, "budget per number") {
		t.Fatalf("a replay over budget: %q", why)
	}
	if why, over, _ := g.Replay(ctx, org.ID, "e1", "+447400123456", now.Add(time.Minute)); over || !strings.Contains(why, "+44") {
		t.Fatalf("a replay the policy refuses: %q", why)
	}
	if why, _, _ := g.Replay(ctx, org.ID, "e5", "+94712345678", now.Add(time.Minute)); why != "" {
		t.Fatalf("a replay within budget: %q", why)
	}
	// The replay was charged: its send is not charged again.
	if why, _ := g.CheckSend(ctx, ev("e5", "+94712345678")); why != "" {
		t.Fatalf("the replayed send: %q", why)
	}
	if why, _ := g.CheckSend(ctx, ev("e6", "+94712345678")); why != "" {
		t.Fatalf("a second SMS to the replayed number: %q", why)
	}
	if why, _ := g.CheckSend(ctx, ev("e7", "+94712345678")); !strings.Contains(why, "budget per number") {
		t.Fatalf("a third SMS to the replayed number: %q (the replay was not charged?)", why)
	}
}

func TestCallingCode(t *testing.T) {
	for in, want := range map[string]int{"+94771234567": 94, "+14155550100": 1, "+447911123456": 44, "garbage": 0, "+999123": 0} {
		if got := smspolicy.CallingCode(in); got != want {
			t.Errorf("CallingCode(%q) = %d, want %d", in, got, want)
		}
	}
}

// BenchmarkScreenNumber is the number screening every challenge start
// pays (libphonenumber's parse and its type patterns).
func BenchmarkScreenNumber(b *testing.B) {
	for _, number := range []string{"+94771234567", "+14155550123", "+447911123456"} {
		b.Run(number[:3], func(b *testing.B) {
			for b.Loop() {
				if _, refusal := smspolicy.ScreenNumber(number, store.OTPSettings{AllowedNumberTypes: smspolicy.NumberTypes()}); refusal != "" {
					b.Fatal(refusal)
				}
			}
		})
	}
}
