package authcore_test

import (
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/authcore"
)

// The numbers of issue 18's red-team pass: SMS pumping's favourite targets.
const (
	premiumRate = "+449098790000"
	tollFree    = "+18005550199"
	fixedLine   = "+442079460000"
)

// TestNumberTypesScreenedByOrgPolicy: by default only mobile and
// fixed-line-or-mobile numbers get an SMS; an org may allow more.
func TestNumberTypesScreenedByOrgPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, c := range []struct{ number, kind string }{{premiumRate, "premium-rate"}, {tollFree, "toll-free"}, {fixedLine, "fixed-line"}} {
		r := e.do("POST", challenges, e.otp, `{"mobile":"`+c.number+`","userId":"u","application":"a"}`)
		wantError(t, r, 400, "invalid_field")
		if msg := r.body["message"].(string); !strings.Contains(msg, c.kind+" numbers are not allowed") || strings.Contains(msg, c.number[1:]) {
			t.Errorf("%s: message %q, want it to name the %s type and not the number", c.number, msg, c.kind)
		}
	}
	e.start(lkMobile, "mobile-user") // mobile
	e.start(usMobile, "nanp-user")   // fixed-line-or-mobile

	_, _, got := e.mustDo("GET", "/api/v1/orgs/acme/sms-otp/settings", e.orgAdmin, "", 200)
	if types, _ := got["allowedNumberTypes"].([]any); len(types) != 2 || types[0] != "mobile" || types[1] != "fixed_line_or_mobile" {
		t.Errorf("default allowedNumberTypes = %v", got["allowedNumberTypes"])
	}
	e.mustDo("PUT", "/api/v1/orgs/acme/sms-otp/settings", e.orgAdmin, `{"allowedNumberTypes":["mobile","fixed_line"]}`, 200)
	e.start(fixedLine, "landline-user")
	wantError(t, e.do("POST", challenges, e.otp, `{"mobile":"`+usMobile+`","userId":"u","application":"a"}`), 400, "invalid_field")
	// Another org keeps the default.
	wantError(t, e.do("POST", "/api/v1/orgs/globex/sms-otp/challenges", e.other, `{"mobile":"`+fixedLine+`","userId":"u","application":"a"}`), 400, "invalid_field")

	r := e.do("PUT", "/api/v1/orgs/acme/sms-otp/settings", e.orgAdmin, `{"allowedNumberTypes":["mobile","satellite"]}`)
	wantError(t, r, 400, "invalid_field")
	if !strings.Contains(r.body["message"].(string), "allowedNumberTypes") {
		t.Errorf("message %q", r.body["message"])
	}
	e.mustDo("PUT", "/api/v1/orgs/acme/sms-otp/settings", e.orgAdmin, `{"allowedNumberTypes":[]}`, 200)
	wantError(t, e.do("POST", challenges, e.otp, `{"mobile":"`+fixedLine+`","userId":"u","application":"a"}`), 400, "invalid_field")
}

// TestSendBudgetsArePerOrgWithinCeilings: an org lowers its own budget;
// it cannot raise it past the server's; another org keeps the server's.
func TestSendBudgetsArePerOrgWithinCeilings(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authcore.Config) {
		c.Limits.PerNumber = authcore.Limit{Max: 4, Window: time.Hour}
	})
	r := e.do("PUT", "/api/v1/orgs/acme/sms-otp/settings", e.orgAdmin, `{"maxSendsPerNumber":5}`)
	wantError(t, r, 400, "invalid_field")
	if msg := r.body["message"].(string); !strings.Contains(msg, "maxSendsPerNumber") || !strings.Contains(msg, "at most 4") {
		t.Errorf("above the ceiling: %q", msg)
	}
	wantError(t, e.do("PUT", "/api/v1/orgs/acme/sms-otp/settings", e.orgAdmin, `{"maxSendsPerOrg":-3}`), 400, "invalid_field")
	_, _, got := e.mustDo("PUT", "/api/v1/orgs/acme/sms-otp/settings", e.orgAdmin, `{"maxSendsPerNumber":2}`, 200)
	if got["maxSendsPerNumber"] != 2.0 || got["maxSendsPerOrg"] != 1000.0 {
		t.Errorf("settings after PUT: %v", got)
	}
	e.start(lkMobile, "a")
	e.start(lkMobile, "b")
	wantError(t, e.do("POST", challenges, e.otp, `{"mobile":"`+lkMobile+`","userId":"c","application":"a"}`), 429, "rate_limited")
	for i := range 4 {
		if r := e.do("POST", "/api/v1/orgs/globex/sms-otp/challenges", e.other, `{"mobile":"`+lkMobile+`","userId":"u","application":"a"}`); r.status != 201 {
			t.Fatalf("globex send %d within the server's 4: %d %v", i+1, r.status, r.body)
		}
	}
	wantError(t, e.do("POST", "/api/v1/orgs/globex/sms-otp/challenges", e.other, `{"mobile":"`+lkMobile+`","userId":"u","application":"a"}`), 429, "rate_limited")
	// 0 restores the ceiling.
	_, _, got = e.mustDo("PUT", "/api/v1/orgs/acme/sms-otp/settings", e.orgAdmin, `{"maxSendsPerNumber":0}`, 200)
	if got["maxSendsPerNumber"] != 4.0 {
		t.Errorf("maxSendsPerNumber after 0 = %v, want the ceiling 4", got["maxSendsPerNumber"])
	}
}
