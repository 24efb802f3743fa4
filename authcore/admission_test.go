package authcore_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/otphub/otphub/authcore"
	"github.com/otphub/otphub/internal/admit"
)

// TestOverloadedRefusedBeforeAnyWork: with every admission slot taken and
// no wait allowed, starts, resends and verifications are refused with 503
// overloaded and Retry-After, and nothing is written: no challenge, no
// resend used, no failed attempt counted, no event. A freed slot serves
// again.
func TestOverloadedRefusedBeforeAnyWork(t *testing.T) {
	t.Parallel()
	gate, err := admit.New(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *authcore.Config) { c.Admission = gate })
	id := e.start(lkMobile, "alice")
	code := e.nextOTP()
	e.clk.Add(time.Minute)

	release, err := gate.Enter(context.Background(), strconv.FormatInt(e.org.ID, 10))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []resp{
		e.do("POST", challenges, e.otp, `{"mobile":"`+lkMobile+`","userId":"bob","application":"myapp"}`),
		e.do("POST", challenges+"/"+id+"/resend", e.otp, ""),
		e.verify(id, "000000"),
		e.do("POST", challenges+"/"+id+"/verify", e.otp, `{"backupCode":"abcd-efgh"}`),
	} {
		wantError(t, r, 503, "overloaded")
		if r.header.Get("Retry-After") != "1" {
			t.Fatalf("Retry-After %q, want 1", r.header.Get("Retry-After"))
		}
	}
	// Validation still answers first: a bad request is told what is wrong.
	wantError(t, e.do("POST", challenges, e.otp, `{"mobile":"nope","userId":"bob","application":"myapp"}`), 400, "invalid_field")
	for op, want := range map[string]float64{"start": 1, "resend": 1, "verify": 2} {
		if v := e.metric("otphub_otp_overloaded_total", "operation", op); v != want {
			t.Errorf("overloaded %s = %v, want %v", op, v, want)
		}
	}
	release()

	if v := e.metric("otphub_otp_challenges_started_total", "", ""); v != 1 {
		t.Fatalf("challenges started %v, want the first only", v)
	}
	ch, err := e.st.GetChallenge(context.Background(), e.org.ID, id)
	if err != nil || ch.Resends != 0 {
		t.Fatalf("resends after a refused resend: %d %v", ch.Resends, err)
	}
	if n, _, err := e.st.FailedAttempts(context.Background(), e.org.ID, "alice"); err != nil || n != 0 {
		t.Fatalf("failed attempts after refused verifications: %d %v", n, err)
	}
	// The OTP sent before the overload still verifies.
	if r := e.verify(id, code); r.status != 200 {
		t.Fatalf("verify after the overload: %d %v", r.status, r.body)
	}
	if s := gate.Stats(); s != (admit.Stats{}) {
		t.Fatalf("gate after the requests: %+v", s)
	}
}
