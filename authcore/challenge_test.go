package authcore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/otphub/otphub/authcore"
	"github.com/otphub/otphub/bus/embedded"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/oauth"
	"github.com/otphub/otphub/store"
)

// syncBuffer is a bytes.Buffer safe for a logger and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func base64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

const (
	lkMobile = "+94771234567"
	usMobile = "+12015550123"
	ukMobile = "+447400123456"
)

func TestStartVerifyEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	r := e.do("POST", challenges, e.otp, `{"mobile":"`+lkMobile+`","userId":"alice","application":"myapp"}`)
	if r.status != 201 {
		t.Fatalf("start: %d %v", r.status, r.body)
	}
	id := r.body["id"].(string)
	if _, err := uuid.Parse(id); err != nil {
		t.Fatalf("id %q", id)
	}
	exp, err := time.Parse(time.RFC3339, r.body["expiresAt"].(string))
	if err != nil || !exp.Equal(e.clk.Now().Add(300*time.Second)) {
		t.Fatalf("expiresAt %v (%v)", r.body["expiresAt"], err)
	}
	if r.body["resendsRemaining"].(float64) != 3 {
		t.Fatalf("resendsRemaining %v", r.body["resendsRemaining"])
	}

	ev, msg := e.nextEvent()
	if string(msg.Key) != "acme" {
		t.Fatalf("record key %q", msg.Key)
	}
	if ev.Issuer != publicURL || ev.Audience != event.TopicURL(publicURL, "acme") ||
		ev.OrganizationName != "acme" || ev.OrganizationID != e.org.ID || ev.SendTo != lkMobile ||
		!ev.ExpiresAt.Equal(exp) || !ev.IssuedAt.Equal(e.clk.Now()) {
		t.Fatalf("event %+v", ev)
	}
	if _, err := uuid.Parse(ev.ID); err != nil {
		t.Fatalf("jti %q", ev.ID)
	}
	code := otpInBody.FindStringSubmatch(ev.MessageBody)[1]
	if !regexp.MustCompile(`^[0-9]{6}$`).MatchString(code) {
		t.Fatalf("default OTP %q is not 6 digits", code)
	}
	want := "Your one-time password for the myapp is " + code + ". This expires in 5 minutes."
	if ev.MessageBody != want {
		t.Fatalf("message %q, want %q", ev.MessageBody, want)
	}

	if r := e.verify(id, code); r.status != 200 || r.body["verified"] != true {
		t.Fatalf("verify: %d %v", r.status, r.body)
	}
	wantError(t, e.verify(id, code), 409, "already_verified")
	wantError(t, e.do("POST", challenges+"/"+id+"/resend", e.otp, ""), 409, "already_verified")

	if v := e.metric("otphub_otp_challenges_started_total", "", ""); v != 1 {
		t.Fatalf("challenges started %v", v)
	}
	if v := e.metric("otphub_events_published_total", "source", "authcore"); v != 1 {
		t.Fatalf("events published %v", v)
	}
	if v := e.metric("otphub_otp_verifications_total", "result", "verified"); v != 1 {
		t.Fatalf("verified %v", v)
	}
}

func TestStartValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authcore.Config) {})
	e.mustDo("PUT", "/api/v1/orgs/acme/sms-otp/settings", e.orgAdmin, `{"allowedCountryCodes":[94,1]}`, 200)
	ok := `"userId":"alice","application":"myapp"`
	cases := []struct {
		name, body string
		status     int
		code, msg  string
	}{
		{"malformed", `{"mobile":`, 400, "invalid_json", "malformed"},
		{"empty", ``, 400, "invalid_json", "empty"},
		{"array", `[]`, 400, "invalid_json", "the body must be a JSON object"},
		{"string", `"+94771234567"`, 400, "invalid_json", "the body must be a JSON object"},
		{"unknown field", `{"mobile":"` + lkMobile + `",` + ok + `,"admin":true}`, 400, "invalid_json", "admin"},
		{"wrong type", `{"mobile":94771234567,` + ok + `}`, 400, "invalid_json", `field "mobile" has a number where a string is expected`},
		{"trailing data", `{"mobile":"` + lkMobile + `",` + ok + `}{}`, 400, "invalid_json", ""},
		{"oversized", `{"mobile":"` + lkMobile + `",` + ok + `,"locale":"` + strings.Repeat("a", 5000) + `"}`, 413, "body_too_large", ""},
		{"no mobile", `{` + ok + `}`, 400, "invalid_field", "mobile"},
		{"no plus", `{"mobile":"94771234567",` + ok + `}`, 400, "invalid_field", "mobile"},
		{"too short", `{"mobile":"+9477",` + ok + `}`, 400, "invalid_field", "mobile"},
		{"letters", `{"mobile":"+9477ABCDEFG",` + ok + `}`, 400, "invalid_field", "mobile"},
		{"invalid number", `{"mobile":"+94001234567",` + ok + `}`, 400, "invalid_field", "mobile"},
		{"not allowed country", `{"mobile":"` + ukMobile + `",` + ok + `}`, 400, "invalid_field", "+44"},
		{"no user", `{"mobile":"` + lkMobile + `","application":"myapp"}`, 400, "invalid_field", "userId"},
		{"long user", `{"mobile":"` + lkMobile + `","userId":"` + strings.Repeat("u", 129) + `","application":"myapp"}`, 400, "invalid_field", "userId"},
		{"control in user", `{"mobile":"` + lkMobile + `","userId":"a\nb","application":"myapp"}`, 400, "invalid_field", "userId"},
		{"no application", `{"mobile":"` + lkMobile + `","userId":"alice"}`, 400, "invalid_field", "application"},
		{"bad locale", `{"mobile":"` + lkMobile + `",` + ok + `,"locale":"../../etc"}`, 400, "invalid_field", "locale"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do("POST", challenges, e.otp, c.body)
			wantError(t, r, c.status, c.code)
			if !strings.Contains(r.body["message"].(string), c.msg) {
				t.Fatalf("message %q does not name %q", r.body["message"], c.msg)
			}
			if strings.Contains(r.body["message"].(string), "struct") {
				t.Fatalf("message %q names a Go type", r.body["message"])
			}
		})
	}
	// Wrong content type.
	r := e.do("POST", challenges, e.otp, `{}`, "Content-Type", "text/plain")
	wantError(t, r, 415, "unsupported_media_type")
	// Allowed countries pass, in any accepted spelling.
	e.start(usMobile, "bob")
	if ev, _ := e.nextEvent(); ev.SendTo != usMobile {
		t.Fatalf("sendTo %q", ev.SendTo)
	}
	if v := e.metric("otphub_otp_challenges_started_total", "", ""); v != 1 {
		t.Fatalf("failed validations started challenges: %v", v)
	}
}

func TestAccessControl(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	id := e.start(lkMobile, "alice")
	routes := []struct{ method, path, body string }{
		{"GET", "/api/v1/orgs/acme/sms-otp/settings", ""},
		{"PUT", "/api/v1/orgs/acme/sms-otp/settings", `{"length":6}`},
		{"GET", "/api/v1/orgs/acme/sms-otp/templates", ""},
		{"GET", "/api/v1/orgs/acme/sms-otp/templates/en", ""},
		{"PUT", "/api/v1/orgs/acme/sms-otp/templates/en", `{"body":"{{otp}}"}`},
		{"DELETE", "/api/v1/orgs/acme/sms-otp/templates/en", ""},
		{"POST", challenges, `{"mobile":"` + lkMobile + `","userId":"alice","application":"myapp"}`},
		{"POST", challenges + "/" + id + "/resend", ""},
		{"POST", challenges + "/" + id + "/verify", `{"code":"123456"}`},
		{"POST", "/api/v1/orgs/acme/users/alice/backup-codes", ""},
	}
	for _, rt := range routes {
		// No token, a bad token: 401 with WWW-Authenticate.
		for _, tok := range []string{"", "not-a-jwt"} {
			r := e.do(rt.method, rt.path, tok, rt.body)
			if r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
				t.Fatalf("%s %s token %q: %d %v", rt.method, rt.path, tok, r.status, r.body)
			}
		}
		// Another org's token, even with admin: 403.
		wantError(t, e.do(rt.method, rt.path, e.other, rt.body), 403, "forbidden")
	}
	// The otp scope cannot change settings or templates.
	for _, rt := range []int{1, 2, 3, 4, 5} {
		wantError(t, e.do(routes[rt].method, routes[rt].path, e.otp, routes[rt].body), 403, "forbidden")
	}
	// An unknown org: 403 for an org client (no enumeration), 404 for the platform admin.
	wantError(t, e.do("GET", "/api/v1/orgs/nosuch/sms-otp/settings", e.otp, ""), 403, "forbidden")
	wantError(t, e.do("GET", "/api/v1/orgs/nosuch/sms-otp/settings", e.admin, ""), 404, "org_not_found")
	// Another org's challenge id is unknown, even to its admin.
	otherCh := e.do("POST", "/api/v1/orgs/globex/sms-otp/challenges", e.other, `{"mobile":"`+lkMobile+`","userId":"alice","application":"myapp"}`)
	if otherCh.status != 201 {
		t.Fatalf("globex start %d %v", otherCh.status, otherCh.body)
	}
	wantError(t, e.verify(otherCh.body["id"].(string), "123456"), 404, "challenge_not_found")
	wantError(t, e.do("POST", challenges+"/"+otherCh.body["id"].(string)+"/resend", e.otp, ""), 404, "challenge_not_found")
	wantError(t, e.verify("not-a-uuid", "123456"), 404, "challenge_not_found")
	wantError(t, e.verify(uuid.NewString(), "123456"), 404, "challenge_not_found")
}

// TestForgedTokensRefused drives the API with tokens the issuer must refuse.
func TestForgedTokensRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ctx := context.Background()
	// A token of an issuer with another audience, over the same keys.
	otherAud, err := oauth.New(oauth.Config{Issuer: publicURL, Audience: "https://elsewhere.test", Now: e.clk.Now}, e.st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, _ := e.st.ListClients(ctx, e.org.ID)
	wrongAud, err := otherAud.Issue(cl[0], e.org, []string{"otp", "admin"})
	if err != nil {
		t.Fatal(err)
	}
	// alg none.
	parts := strings.Split(e.otp, ".")
	none := base64url(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + "."
	for name, tok := range map[string]string{"wrong audience": wrongAud, "alg none": none} {
		r := e.do("GET", "/api/v1/orgs/acme/sms-otp/settings", tok, "")
		if r.status != 401 || r.body["error"] != "invalid_token" {
			t.Fatalf("%s: %d %v", name, r.status, r.body)
		}
	}
	// Expired: two hours later the otp token is refused.
	e.clk.Add(2 * time.Hour)
	wantError(t, e.do("GET", "/api/v1/orgs/acme/sms-otp/settings", e.otp, ""), 401, "invalid_token")
}

func TestResend(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	id := e.start(lkMobile, "alice")
	first := e.nextOTP()
	resend := func() resp { return e.do("POST", challenges+"/"+id+"/resend", e.otp, "") }

	r := resend()
	wantError(t, r, 429, "resend_too_soon")
	if ra, _ := strconv.Atoi(r.header.Get("Retry-After")); ra < 1 || ra > 30 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	// A failed attempt before the resend stays counted after it.
	if r := e.verify(id, "000000x"); r.status != 400 || r.body["attemptsRemaining"].(float64) != 4 {
		t.Fatalf("wrong code: %d %v", r.status, r.body)
	}
	e.clk.Add(30 * time.Second)
	r = resend()
	if r.status != 200 || r.body["id"] != id || r.body["resendsRemaining"].(float64) != 2 {
		t.Fatalf("resend: %d %v", r.status, r.body)
	}
	exp, _ := time.Parse(time.RFC3339, r.body["expiresAt"].(string))
	if !exp.Equal(e.clk.Now().Add(300 * time.Second)) {
		t.Fatalf("expiresAt %v", exp)
	}
	second := e.nextOTP()
	// The previous OTP is invalid at once; the failure count carried over.
	if r := e.verify(id, first); first != second && (r.status != 400 || r.body["attemptsRemaining"].(float64) != 3) {
		t.Fatalf("previous OTP: %d %v", r.status, r.body)
	}
	if r := e.verify(id, second); r.status != 200 {
		t.Fatalf("new OTP: %d %v", r.status, r.body)
	}

	// The resend limit.
	e.mustDo("PUT", "/api/v1/orgs/acme/sms-otp/settings", e.orgAdmin, `{"maxResends":1,"resendIntervalSeconds":0}`, 200)
	id = e.start(lkMobile, "bob")
	e.nextOTP()
	if r := e.do("POST", challenges+"/"+id+"/resend", e.otp, ""); r.status != 200 || r.body["resendsRemaining"].(float64) != 0 {
		t.Fatalf("first resend %d %v", r.status, r.body)
	}
	e.nextOTP()
	wantError(t, e.do("POST", challenges+"/"+id+"/resend", e.otp, ""), 429, "resend_limit_exceeded")
	if v := e.metric("otphub_otp_resends_total", "outcome", "limit_exceeded"); v != 1 {
		t.Fatalf("limit_exceeded metric %v", v)
	}
	if v := e.metric("otphub_otp_resends_total", "outcome", "sent"); v != 2 {
		t.Fatalf("sent metric %v", v)
	}
	// A malformed optional body.
	wantError(t, e.do("POST", challenges+"/"+id+"/resend", e.otp, `{"locale":1}`), 400, "invalid_json")
}

func TestVerifyErrorsAndLockout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.mustDo("PUT", "/api/v1/orgs/acme/sms-otp/settings", e.orgAdmin, `{"maxFailedAttempts":3}`, 200)
	id := e.start(lkMobile, "alice")
	code := e.nextOTP()
	path := challenges + "/" + id + "/verify"
	for name, body := range map[string]string{
		"both":        `{"code":"1","backupCode":"2"}`,
		"neither":     `{}`,
		"empty code":  `{"code":""}`,
		"long code":   `{"code":"` + strings.Repeat("1", 33) + `"}`,
		"number code": `{"code":123456}`,
		"unknown":     `{"otp":"123456"}`,
		"oversized":   `{"code":"` + strings.Repeat("1", 2000) + `"}`,
	} {
		r := e.do("POST", path, e.otp, body)
		if (r.status != 400 && r.status != 413) || r.body["error"] == "invalid_code" {
			t.Fatalf("%s: %d %v", name, r.status, r.body)
		}
	}
	// None of those counted as a failed attempt.
	wrong := "000000"
	if wrong == code {
		wrong = "111111"
	}
	for i, left := range []float64{2, 1, 0} {
		r := e.verify(id, wrong)
		if r.status != 400 || r.body["error"] != "invalid_code" || r.body["attemptsRemaining"].(float64) != left {
			t.Fatalf("failure %d: %d %v", i, r.status, r.body)
		}
	}
	// Locked out: even the right code, and across challenges.
	r := e.verify(id, code)
	wantError(t, r, 429, "too_many_attempts")
	if ra, _ := strconv.Atoi(r.header.Get("Retry-After")); ra < 1 || ra > 15*60 {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	r = e.do("POST", challenges, e.otp, `{"mobile":"`+lkMobile+`","userId":"alice","application":"myapp"}`)
	wantError(t, r, 429, "too_many_attempts")
	if ra, _ := strconv.Atoi(r.header.Get("Retry-After")); ra < 1 || ra > 15*60 {
		t.Fatalf("start's Retry-After %q", r.header.Get("Retry-After"))
	}
	wantError(t, e.do("POST", challenges+"/"+id+"/resend", e.otp, ""), 429, "too_many_attempts")
	// Another user is not affected.
	other := e.start(usMobile, "bob")
	if r := e.verify(other, e.nextOTP()); r.status != 200 {
		t.Fatalf("bob: %d %v", r.status, r.body)
	}
	// The lockout lifts after its duration (the OTP expired meanwhile).
	e.clk.Add(15 * time.Minute)
	wantError(t, e.verify(id, code), 410, "expired")
	id = e.start(lkMobile, "alice")
	code = e.nextOTP()
	// A success resets the count.
	if r := e.verify(id, wrong); r.body["attemptsRemaining"].(float64) != 2 {
		t.Fatalf("after lockout: %v", r.body)
	}
	if r := e.verify(id, strings.ToLower(code)); r.status != 200 {
		t.Fatalf("right code: %d %v", r.status, r.body)
	}
	id = e.start(lkMobile, "alice")
	e.nextOTP()
	if r := e.verify(id, wrong); r.body["attemptsRemaining"].(float64) != 2 {
		t.Fatalf("after success: %v", r.body)
	}
	if e.metric("otphub_otp_verifications_total", "result", "too_many_attempts") != 1 ||
		e.metric("otphub_otp_verifications_total", "result", "expired") != 1 {
		t.Fatal("verification metrics not counted")
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.mustDo("PUT", "/api/v1/orgs/acme/sms-otp/settings", e.orgAdmin, `{"expirySeconds":60}`, 200)
	id := e.start(lkMobile, "alice")
	code := e.nextOTP()
	e.clk.Add(60 * time.Second)
	wantError(t, e.verify(id, code), 410, "expired")
	// A resend issues a fresh OTP with a fresh expiry.
	e.mustDo("POST", challenges+"/"+id+"/resend", e.otp, "", 200)
	if r := e.verify(id, e.nextOTP()); r.status != 200 {
		t.Fatalf("after resend: %d %v", r.status, r.body)
	}
}

func TestConcurrentVerifySingleUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	id := e.start(lkMobile, "alice")
	code := e.nextOTP()
	var wg sync.WaitGroup
	statuses := make(chan int, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- e.verify(id, code).status
		}()
	}
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	// Each verify reserves an attempt before comparing, so past the first
	// maxFailedAttempts in flight the rest may be refused (429) before
	// the success resets the count; none is a 400.
	if counts[200] != 1 || counts[409]+counts[429] != 19 || counts[409] < 4 {
		t.Fatalf("statuses %v, want one 200 and the rest 409 (at least 4) or 429", counts)
	}
	// Every reservation was a right code: none is left counted.
	if n, _, err := e.st.FailedAttempts(context.Background(), e.org.ID, "alice"); err != nil || n != 0 {
		t.Fatalf("failed attempts after the burst %d %v", n, err)
	}
}

func TestConcurrentFailuresAllCounted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.mustDo("PUT", "/api/v1/orgs/acme/sms-otp/settings", e.orgAdmin, `{"maxFailedAttempts":100}`, 200)
	id := e.start(lkMobile, "alice")
	code := e.nextOTP()
	wrong := "999999"
	if wrong == code {
		wrong = "888888"
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[float64]bool{}
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.verify(id, wrong)
			mu.Lock()
			defer mu.Unlock()
			if r.status != 400 {
				t.Errorf("status %d %v", r.status, r.body)
				return
			}
			seen[r.body["attemptsRemaining"].(float64)] = true
		}()
	}
	wg.Wait()
	for left := 80.0; left <= 99; left++ {
		if !seen[left] {
			t.Fatalf("attemptsRemaining %v never seen: a count was lost (%v)", left, seen)
		}
	}
	n, _, err := e.st.FailedAttempts(context.Background(), e.org.ID, "alice")
	if err != nil || n != 20 {
		t.Fatalf("stored count %d %v", n, err)
	}
}

// TestParallelGuessesCappedAtMaxFailedAttempts: a burst of wrong codes,
// however large and whatever challenges of the user it targets, gets at
// most maxFailedAttempts of them compared (400 invalid_code); the rest are
// refused (429) and, after them, so is the right code. Backup codes go
// through the same reservation.
func TestParallelGuessesCappedAtMaxFailedAttempts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	const max, burst = 3, 100
	e.mustDo("PUT", "/api/v1/orgs/acme/sms-otp/settings", e.orgAdmin, `{"maxFailedAttempts":3,"backupCodesEnabled":true}`, 200)
	fire := func(body func(i int) (id, json string)) (answers map[string]int, remaining map[float64]int) {
		t.Helper()
		rs := make([]resp, burst)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range burst {
			wg.Go(func() {
				id, b := body(i)
				<-start
				rs[i] = e.do("POST", challenges+"/"+id+"/verify", e.otp, b)
			})
		}
		close(start)
		wg.Wait()
		answers, remaining = map[string]int{}, map[float64]int{}
		for _, r := range rs {
			answers[strconv.Itoa(r.status)+" "+r.body["error"].(string)]++
			if r.status == 429 && r.header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After: %v", r.body)
			}
			if left, ok := r.body["attemptsRemaining"].(float64); ok {
				remaining[left]++
			}
		}
		return answers, remaining
	}

	// Two users, so that a lucky schedule cannot hide an overshoot.
	for _, user := range []string{"alice", "carol"} {
		ids := []string{e.start(lkMobile, user), e.start(lkMobile, user)}
		codes := []string{e.nextOTP(), e.nextOTP()}
		wrong := "000000"
		for _, w := range []string{"111111", "222222"} {
			if wrong == codes[0] || wrong == codes[1] {
				wrong = w
			}
		}
		answers, remaining := fire(func(i int) (string, string) { return ids[i%2], `{"code":"` + wrong + `"}` })
		if answers["400 invalid_code"] != max || answers["429 too_many_attempts"] != burst-max {
			t.Fatalf("%s: %d parallel wrong codes, maxFailedAttempts %d: answers %v, want %d × 400 invalid_code and the rest 429", user, burst, max, answers, max)
		}
		if remaining[0] != 1 || remaining[1] != 1 || remaining[2] != 1 {
			t.Fatalf("%s: attemptsRemaining %v, want 2, 1 and 0 once each", user, remaining)
		}
		// The right code, after the burst exhausted the limit, is refused.
		for i, id := range ids {
			wantError(t, e.verify(id, codes[i]), 429, "too_many_attempts")
		}
		if n, _, err := e.st.FailedAttempts(context.Background(), e.org.ID, user); err != nil || n != max {
			t.Fatalf("%s: stored count %d %v, want %d", user, n, err, max)
		}
	}

	// Backup codes: bob's burst of wrong ones is capped the same way.
	e.mustDo("POST", "/api/v1/orgs/acme/users/bob/backup-codes", e.otp, "", 201)
	bob := e.start(usMobile, "bob")
	e.nextOTP()
	answers, _ := fire(func(int) (string, string) { return bob, `{"backupCode":"AAAAA-AAAAA"}` })
	if answers["400 invalid_code"] != max || answers["429 too_many_attempts"] != burst-max {
		t.Fatalf("%d parallel wrong backup codes: answers %v, want %d × 400 invalid_code and the rest 429", burst, answers, max)
	}
}

func TestAlphanumericOTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.mustDo("PUT", "/api/v1/orgs/acme/sms-otp/settings", e.orgAdmin, `{"numericOnly":false,"length":10}`, 200)
	seen := ""
	for range 5 {
		id := e.start(lkMobile, "alice")
		code := e.nextOTP()
		if !regexp.MustCompile(`^[A-HJ-NP-Z2-9]{10}$`).MatchString(code) {
			t.Fatalf("OTP %q not 10 unambiguous upper-case alphanumerics", code)
		}
		seen += code
		// Users may type it in lower case with spaces.
		typed := strings.ToLower(code[:5]) + " " + code[5:]
		if r := e.verify(id, typed); r.status != 200 {
			t.Fatalf("verify %q: %d %v", typed, r.status, r.body)
		}
	}
	if !regexp.MustCompile(`[A-Z]`).MatchString(seen) {
		t.Fatalf("no letter in 50 alphanumeric characters: %q", seen)
	}
}

// TestPublishFailure: when the log refuses the event, the API answers 503
// and nothing changes that a user could see.
func TestPublishFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	id := e.start(lkMobile, "alice")
	code := e.nextOTP()
	e.clk.Add(time.Minute)

	// A second auth core over the same store whose log is closed.
	closed, err := embedded.Open(t.TempDir(), embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	var logs syncBuffer
	down, err := authcore.New(e.cfg, e.st, closed, slog.New(slog.NewJSONHandler(&logs, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	down.Register(mux, e.iss)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	downEnv := *e
	downEnv.url = srv.URL

	r := downEnv.do("POST", challenges, e.otp, `{"mobile":"`+lkMobile+`","userId":"carol","application":"myapp"}`)
	wantError(t, r, 503, "log_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	// The challenge written before the publish was withdrawn.
	var rec struct {
		ChallengeID string `json:"challenge_id"`
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "challenge withdrawn") {
			json.Unmarshal([]byte(line), &rec)
		}
	}
	if rec.ChallengeID == "" {
		t.Fatalf("no withdrawal logged: %s", logs.String())
	}
	if ch, err := e.st.GetChallenge(context.Background(), e.org.ID, rec.ChallengeID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("challenge of the failed start still stored: %+v %v", ch, err)
	}
	// Nor does it count as an OTP sent.
	_, _, st := e.mustDo("GET", "/api/v1/orgs/acme/sms-otp/stats", e.orgAdmin, "", 200)
	if c := st["countries"].([]any); len(c) != 1 || c[0].(map[string]any)["sent"] != 1.0 {
		t.Fatalf("stats count the withdrawn challenge: %v", c)
	}
	if strings.Contains(logs.String(), code) {
		t.Fatal("an OTP in the logs")
	}
	// A failed resend uses no resend and keeps the previous OTP valid.
	wantError(t, downEnv.do("POST", challenges+"/"+id+"/resend", e.otp, ""), 503, "log_unavailable")
	ch, err := e.st.GetChallenge(context.Background(), e.org.ID, id)
	if err != nil || ch.Resends != 0 {
		t.Fatalf("resends after a failed publish: %d %v", ch.Resends, err)
	}
	if r := e.verify(id, code); r.status != 200 {
		t.Fatalf("previous OTP after a failed resend: %d %v", r.status, r.body)
	}
}

func TestRateLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authcore.Config) {
		c.Limits.PerNumber = authcore.Limit{Max: 2, Window: time.Hour}
		c.Limits.PerIP = authcore.Limit{Max: 3, Window: time.Hour}
		c.Limits.PerOrg = authcore.Limit{Max: 4, Window: time.Hour}
		c.TrustProxyHeaders = true
	})
	start := func(mobile, ip string) resp {
		return e.do("POST", challenges, e.otp, `{"mobile":"`+mobile+`","userId":"u","application":"myapp"}`, "X-Forwarded-For", "198.51.100.7, "+ip)
	}
	mustStart := func(mobile, ip string) {
		t.Helper()
		if r := start(mobile, ip); r.status != 201 {
			t.Fatalf("start %s from %s: %d %v", mobile, ip, r.status, r.body)
		}
	}
	limited := func(r resp, scope string) {
		t.Helper()
		wantError(t, r, 429, "rate_limited")
		if !strings.Contains(r.body["message"].(string), scope) {
			t.Fatalf("message %q does not name %s", r.body["message"], scope)
		}
		if ra, _ := strconv.Atoi(r.header.Get("Retry-After")); ra < 1 || ra > 3600 {
			t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
		}
	}
	mustStart(lkMobile, "203.0.113.1")
	mustStart(lkMobile, "203.0.113.1")
	limited(start(lkMobile, "203.0.113.1"), "number")
	mustStart(usMobile, "203.0.113.1")
	// Budgets are charged number, IP, org, up to the first exhausted one:
	// the refused request above counted for the number only.
	limited(start(ukMobile, "203.0.113.1"), "ip") // 4th counted from this IP
	mustStart(ukMobile, "203.0.113.2")
	limited(start("+94712345678", "203.0.113.3"), "org")
	// Other orgs have their own budgets.
	if r := e.do("POST", "/api/v1/orgs/globex/sms-otp/challenges", e.other, `{"mobile":"`+lkMobile+`","userId":"u","application":"a"}`, "X-Forwarded-For", "203.0.113.1"); r.status != 201 {
		t.Fatalf("globex: %d %v", r.status, r.body)
	}
	// The windows end.
	e.clk.Add(time.Hour)
	mustStart(lkMobile, "203.0.113.1")
	for _, sc := range []string{"number", "ip", "org"} {
		if v := e.metric("otphub_otp_send_limited_total", "scope", sc); v != 1 {
			t.Fatalf("send_limited{%s} = %v", sc, v)
		}
	}
}

func TestIPv6LimitPer64(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authcore.Config) {
		c.Limits.PerIP = authcore.Limit{Max: 2, Window: time.Hour}
		c.TrustProxyHeaders = true
	})
	start := func(mobile, ip string) resp {
		return e.do("POST", challenges, e.otp, `{"mobile":"`+mobile+`","userId":"u","application":"myapp"}`, "X-Forwarded-For", ip)
	}
	for i, want := range []int{201, 201, 429} {
		if r := start([]string{lkMobile, usMobile, ukMobile}[i], "2001:db8:1:2::"+strconv.Itoa(i+1)); r.status != want {
			t.Fatalf("start %d: %d %v", i, r.status, r.body)
		}
	}
	if r := start(ukMobile, "2001:db8:1:3::1"); r.status != 201 {
		t.Fatalf("another /64: %d %v", r.status, r.body)
	}
	// Without a proxy header the TCP peer counts (127.0.0.1 here, fresh).
	if r := e.do("POST", challenges, e.otp, `{"mobile":"+94712345678","userId":"u","application":"myapp"}`); r.status != 201 {
		t.Fatalf("no header: %d %v", r.status, r.body)
	}
}

// TestClientIPBudget: a login server (one caller IP for all its users)
// passes each end user's address as clientIp; each address gets its own
// per-IP budget, the same address is limited, and without clientIp the
// caller's address counts as before.
func TestClientIPBudget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authcore.Config) { c.Limits.PerIP = authcore.Limit{Max: 2, Window: time.Hour} })
	e.mustDo("PUT", "/api/v1/orgs/acme/sms-otp/settings", e.orgAdmin, `{"resendIntervalSeconds":0}`, 200)
	mobiles := []string{lkMobile, usMobile, ukMobile, "+94712345678"}
	n := 0
	start := func(clientIP string) resp {
		t.Helper()
		n++
		body := `{"mobile":"` + mobiles[n%len(mobiles)] + `","userId":"u` + strconv.Itoa(n) + `","application":"myapp"`
		if clientIP != "" {
			body += `,"clientIp":"` + clientIP + `"`
		}
		return e.do("POST", challenges, e.otp, body+"}")
	}
	for _, ip := range []string{"203.0.113.1", "203.0.113.2", "2001:db8:1:1::1", "203.0.113.1", "203.0.113.2", "2001:db8:1:1::2"} {
		if r := start(ip); r.status != 201 {
			t.Fatalf("start for clientIp %s: %d %v", ip, r.status, r.body)
		}
	}
	for _, ip := range []string{"203.0.113.1", "203.0.113.2", "2001:db8:1:1::3", "::ffff:203.0.113.1"} {
		r := start(ip)
		wantError(t, r, 429, "rate_limited")
		if !strings.Contains(r.body["message"].(string), "ip") {
			t.Fatalf("clientIp %s limited for %q, want the ip budget", ip, r.body["message"])
		}
	}
	// A resend's clientIp is charged too.
	id := start("203.0.113.9").body["id"].(string)
	e.mustDo("POST", challenges+"/"+id+"/resend", e.otp, `{"clientIp":"203.0.113.9"}`, 200)
	wantError(t, e.do("POST", challenges+"/"+id+"/resend", e.otp, `{"clientIp":"203.0.113.9"}`), 429, "rate_limited")
	e.mustDo("POST", challenges+"/"+id+"/resend", e.otp, `{"clientIp":"203.0.113.10"}`, 200)
	// Without clientIp the caller's address (127.0.0.1) counts, apart.
	for i, want := range []int{201, 201, 429} {
		if r := start(""); r.status != want {
			t.Fatalf("start %d without clientIp: %d %v", i, r.status, r.body)
		}
	}
	if v := e.metric("otphub_otp_send_limited_total", "scope", "ip"); v != 6 {
		t.Fatalf("send_limited{ip} = %v, want 6", v)
	}
	// Not an IP address: 400 invalid_field naming clientIp, nothing sent.
	for _, bad := range []string{"localhost", "203.0.113.300", "203.0.113.1:443", "fe80::1%eth0", "203.0.113.0/24", " 203.0.113.1"} {
		r := start(bad)
		wantError(t, r, 400, "invalid_field")
		if !strings.Contains(r.body["message"].(string), "clientIp") {
			t.Fatalf("clientIp %q: message %q", bad, r.body["message"])
		}
		r = e.do("POST", challenges+"/"+id+"/resend", e.otp, `{"clientIp":"`+bad+`"}`)
		wantError(t, r, 400, "invalid_field")
	}
	wantError(t, e.do("POST", challenges, e.otp, `{"mobile":"`+lkMobile+`","userId":"u","application":"a","clientIp":7}`), 400, "invalid_json")
}

// TestConcurrentResendsSendOneSMS: a double (or octuple) click on "resend"
// sends one SMS, and its code is the one that verifies; the other requests
// answer 429, send nothing and charge no send budget.
func TestConcurrentResendsSendOneSMS(t *testing.T) {
	t.Parallel()
	// The start, the burst's one resend and one more: 3 sends to the number.
	e := newEnv(t, func(c *authcore.Config) { c.Limits.PerNumber = authcore.Limit{Max: 3, Window: time.Hour} })
	id := e.start(lkMobile, "alice")
	e.nextOTP()
	e.clk.Add(30 * time.Second) // the resend interval has passed for every click
	const clicks = 8
	statuses := make([]int, clicks)
	var wg sync.WaitGroup
	for i := range clicks {
		wg.Go(func() { statuses[i] = e.do("POST", challenges+"/"+id+"/resend", e.otp, "").status })
	}
	wg.Wait()
	ok := 0
	for _, st := range statuses {
		switch st {
		case 200:
			ok++
		case 429:
		default:
			t.Fatalf("resend answered %d", st)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d concurrent resends succeeded (statuses %v), want 1", ok, clicks, statuses)
	}
	if v := e.metric("otphub_events_published_total", "source", "authcore"); v != 2 {
		t.Fatalf("events published %v, want 2 (the start and one resend)", v)
	}
	if r := e.verify(id, e.nextOTP()); r.status != 200 {
		t.Fatalf("the resent OTP: %d %v", r.status, r.body)
	}
	// The losers charged nothing: the number has one send left.
	e.start(lkMobile, "alice")
}

func TestResendCountsAgainstLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authcore.Config) { c.Limits.PerNumber = authcore.Limit{Max: 2, Window: time.Hour} })
	e.mustDo("PUT", "/api/v1/orgs/acme/sms-otp/settings", e.orgAdmin, `{"resendIntervalSeconds":0}`, 200)
	id := e.start(lkMobile, "alice")
	e.mustDo("POST", challenges+"/"+id+"/resend", e.otp, "", 200)
	r := e.do("POST", challenges+"/"+id+"/resend", e.otp, "")
	wantError(t, r, 429, "rate_limited")
	if v := e.metric("otphub_otp_resends_total", "outcome", "rate_limited"); v != 1 {
		t.Fatalf("rate_limited resends %v", v)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	key := make([]byte, 32)
	for name, cfg := range map[string]authcore.Config{
		"no url":       {HMACKey: key},
		"relative url": {PublicURL: "/x", HMACKey: key},
		"short key":    {PublicURL: publicURL, HMACKey: key[:16]},
		"bad defaults": {PublicURL: publicURL, HMACKey: key, DefaultSettings: store.OTPSettings{Length: 3, ExpirySeconds: 60, MaxFailedAttempts: 1}},
	} {
		if _, err := authcore.New(cfg, e.st, e.lg, nil, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := authcore.New(authcore.Config{PublicURL: publicURL, HMACKey: key}, nil, e.lg, nil, nil); err == nil {
		t.Error("nil store accepted")
	}
}

func TestMetricsExportedAtZero(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	for _, m := range []struct{ name, label, value string }{
		{"otphub_otp_challenges_started_total", "", ""},
		{"otphub_events_published_total", "source", "authcore"},
		{"otphub_otp_resends_total", "outcome", "sent"},
		{"otphub_otp_resends_total", "outcome", "too_soon"},
		{"otphub_otp_verifications_total", "result", "backup_code"},
		{"otphub_otp_verifications_total", "result", "invalid_code"},
		{"otphub_otp_send_limited_total", "scope", "ip"},
	} {
		if v := e.metric(m.name, m.label, m.value); v != 0 {
			t.Fatalf("%s = %v at start", m.name, v)
		}
	}
}

func BenchmarkStartChallenge(b *testing.B) {
	e := newEnv(b, func(c *authcore.Config) {
		c.Limits = authcore.Limits{PerNumber: authcore.Limit{Max: -1}, PerIP: authcore.Limit{Max: -1}, PerOrg: authcore.Limit{Max: -1}}
	})
	body := `{"mobile":"` + lkMobile + `","userId":"alice","application":"myapp"}`
	b.ResetTimer()
	for b.Loop() {
		if r := e.do("POST", challenges, e.otp, body); r.status != 201 {
			b.Fatal(r.status, r.body)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	e := newEnv(b, func(c *authcore.Config) {
		c.Limits = authcore.Limits{PerNumber: authcore.Limit{Max: -1}, PerIP: authcore.Limit{Max: -1}, PerOrg: authcore.Limit{Max: -1}}
	})
	body := `{"mobile":"` + lkMobile + `","userId":"alice","application":"myapp"}`
	type ch struct{ id, code string }
	n := b.N
	chs := make([]ch, 0, n)
	for range n {
		_, _, r := e.mustDo("POST", challenges, e.otp, body, 201)
		chs = append(chs, ch{r["id"].(string), e.nextOTP()})
	}
	b.ResetTimer()
	for i := range n {
		if r := e.verify(chs[i].id, chs[i].code); r.status != 200 {
			b.Fatal(r.status, r.body)
		}
	}
}

// TestOnVerifiedNamesTheEventOfTheCode: a verification is reported with
// the jti of the event that carried the verified code (after a resend, the
// resent one's), so receipts can count conversion by delivering provider.
func TestOnVerifiedNamesTheEventOfTheCode(t *testing.T) {
	var mu sync.Mutex
	var got []string
	e := newEnv(t, func(c *authcore.Config) {
		c.OnVerified = func(_ context.Context, orgID int64, eventID string) {
			mu.Lock()
			got = append(got, eventID)
			mu.Unlock()
		}
	})
	id := e.start("+94771234567", "alice")
	first, _ := e.nextEvent()
	e.clk.Add(time.Minute)
	e.mustDo("POST", challenges+"/"+id+"/resend", e.otp, `{}`, 200)
	resent, _ := e.nextEvent()
	if resent.ID == first.ID {
		t.Fatal("a resend reused the first event's jti")
	}
	code := otpInBody.FindStringSubmatch(resent.MessageBody)[1]
	if r := e.verify(id, code); r.status != 200 {
		t.Fatalf("verify: %d %s", r.status, r.body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != resent.ID {
		t.Fatalf("OnVerified got %v, want [%s]", got, resent.ID)
	}
}
