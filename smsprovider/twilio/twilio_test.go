package twilio

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/event"
)

var t0 = time.Date(2026, 11, 29, 1, 0, 0, 0, time.UTC)

func clock() time.Time { return t0 }

func testEvent(to string) *event.SmsOtpNotificationEvent {
	return &event.SmsOtpNotificationEvent{ID: "3b241101-e2bb-4255-8caf-4136c566a962", IssuedAt: t0, OrganizationID: 1,
		SendTo: to, MessageBody: "Your myapp code is 123456 😀", ExpiresAt: t0.Add(5 * time.Minute)}
}

func newSender(t testing.TB, srv *httptest.Server, cfg Config) *Sender {
	t.Helper()
	if cfg.AccountSID == "" {
		cfg.AccountSID, cfg.AuthToken = testSID, testToken
	}
	if cfg.From == "" && cfg.MessagingServiceSID == "" {
		cfg.From = testFrom
	}
	cfg.BaseURL = srv.URL
	s, err := New(cfg, srv.Client(), clock)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSendCreatesMessage(t *testing.T) {
	t.Setenv("TWILIO_EDGE", "sydney") // must not redirect our requests
	f, srv := newFakeTwilio(t)
	s := newSender(t, srv, Config{})
	res := s.Send(context.Background(), testEvent("+94771234567"))
	if !res.OK || res.StatusCode != http.StatusCreated || !strings.HasPrefix(res.ProviderID, "SM") || len(res.ProviderID) != 34 {
		t.Fatalf("result %+v", res)
	}
	form := f.lastForm(t)
	if form.Get("To") != "+94771234567" || form.Get("From") != testFrom || form.Get("Body") != "Your myapp code is 123456 😀" ||
		form.Get("ValidityPeriod") != "300" || form.Has("MessagingServiceSid") {
		t.Fatalf("form %v", form)
	}
	if !strings.HasPrefix(f.userAgent, "twilio-go/") {
		t.Fatalf("user agent %q: not sent by twilio-go", f.userAgent)
	}

	ms := newSender(t, srv, Config{MessagingServiceSID: testMGSID})
	if res := ms.Send(context.Background(), testEvent("+94771234567")); !res.OK {
		t.Fatalf("messaging service: %+v", res)
	}
	form = f.lastForm(t)
	if form.Get("MessagingServiceSid") != testMGSID || form.Has("From") || form.Has("StatusCallback") {
		t.Fatalf("form %v", form)
	}

	// With receipts on, the message names its status callback (the fake
	// validates the request against Twilio's OpenAPI).
	cb := newSender(t, srv, Config{StatusCallback: func(ev *event.SmsOtpNotificationEvent) string {
		return "https://otphub.example/receipts/twilio/acme/primary/" + ev.ID
	}})
	ev := testEvent("+94771234567")
	if res := cb.Send(context.Background(), ev); !res.OK {
		t.Fatalf("with a status callback: %+v", res)
	}
	if got := f.lastForm(t).Get("StatusCallback"); got != "https://otphub.example/receipts/twilio/acme/primary/"+ev.ID {
		t.Fatalf("StatusCallback = %q", got)
	}
}

func TestValidityPeriod(t *testing.T) {
	for _, c := range []struct {
		left time.Duration
		want int
	}{{5 * time.Minute, 300}, {1500 * time.Millisecond, 1}, {0, 1}, {-time.Hour, 1}, {20 * time.Hour, 36000}, {10*time.Hour + time.Second, 36000}} {
		if got := ValidityPeriod(t0.Add(c.left), t0); got != c.want {
			t.Errorf("ValidityPeriod(%v) = %d, want %d", c.left, got, c.want)
		}
	}
}

func TestSendErrors(t *testing.T) {
	f, srv := newFakeTwilio(t)
	s := newSender(t, srv, Config{})
	cases := []struct {
		name, mode, to string
		retry          bool
		reason         delivery.Reason
		status         int
		retryAfter     time.Duration
	}{
		{"invalid number", "", toInvalid, false, delivery.ReasonProviderRefused, 400, 0},
		{"region", "", toRegion, false, delivery.ReasonProviderRefused, 400, 0},
		{"unsubscribed", "", toUnsubscribed, false, delivery.ReasonProviderRefused, 400, 0},
		{"premium", "", toPremium, false, delivery.ReasonProviderRefused, 400, 0},
		{"throttled", "throttle", "+94771234567", true, delivery.ReasonRateLimited, 429, 2 * time.Second},
		{"500", "error500", "+94771234567", true, delivery.ReasonServerError, 500, 0},
		{"html 502", "html502", "+94771234567", true, delivery.ReasonServerError, 502, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.setMode(c.mode)
			res := s.Send(context.Background(), testEvent(c.to))
			if res.OK || res.Retry != c.retry || res.Reason != c.reason || res.StatusCode != c.status || res.RetryAfter != c.retryAfter || res.Err == nil {
				t.Fatalf("result %+v", res)
			}
			if strings.Contains(res.Err.Error(), testToken) {
				t.Fatal("the auth token leaked into the error")
			}
		})
	}
	f.setMode("garbled201")
	if res := s.Send(context.Background(), testEvent("+94771234567")); !res.OK || res.StatusCode != 201 {
		t.Fatalf("garbled 201 (the message exists; no retry): %+v", res)
	}
	f.setMode("")
	bad := newSender(t, srv, Config{AccountSID: testSID, AuthToken: "ffffffffffffffffffffffffffffffff"})
	if res := bad.Send(context.Background(), testEvent("+94771234567")); res.Reason != delivery.ReasonAuthError || res.Retry || res.StatusCode != 401 {
		t.Fatalf("bad token: %+v", res)
	}
	f.lastForm(t) // no request we sent failed schema validation
}

func TestSendTransportErrors(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	s, _ := New(Config{AccountSID: testSID, AuthToken: testToken, From: testFrom, BaseURL: "http://" + addr}, nil, clock)
	if res := s.Send(context.Background(), testEvent("+94771234567")); !res.Retry || res.Reason != delivery.ReasonConnection {
		t.Fatalf("refused: %+v", res)
	}
	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-block }))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(block) })
	s, _ = New(Config{AccountSID: testSID, AuthToken: testToken, From: testFrom, BaseURL: slow.URL}, slow.Client(), clock)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if res := s.Send(ctx, testEvent("+94771234567")); !res.Retry || res.Reason != delivery.ReasonTimeout {
		t.Fatalf("slow: %+v", res)
	}
	redir := httptest.NewServer(http.RedirectHandler("https://example.com/", http.StatusFound))
	t.Cleanup(redir.Close)
	s, _ = New(Config{AccountSID: testSID, AuthToken: testToken, From: testFrom, BaseURL: redir.URL}, nil, clock)
	if res := s.Send(context.Background(), testEvent("+94771234567")); res.OK || res.Retry || res.Reason != delivery.ReasonRedirect {
		t.Fatalf("redirect: %+v", res)
	}
}

// TestClassify covers every HTTP status, with and without Twilio codes.
func TestClassify(t *testing.T) {
	for code := 100; code < 600; code++ {
		for _, tc := range []int{0, 21211} {
			r := Classify(code, tc)
			var retry bool
			var reason delivery.Reason
			switch {
			case code == 429:
				retry, reason = true, delivery.ReasonRateLimited
			case code >= 500:
				retry, reason = true, delivery.ReasonServerError
			case code == 401 || code == 403:
				reason = delivery.ReasonAuthError
			case code == 408:
				retry, reason = true, delivery.ReasonTimeout
			case code == 425: // the table of every HTTP sender
				retry, reason = true, delivery.ReasonClientError
			case code >= 400 && tc != 0:
				reason = delivery.ReasonProviderRefused
			case code >= 400:
				reason = delivery.ReasonClientError
			case code >= 300:
				reason = delivery.ReasonRedirect
			default:
				retry, reason = true, delivery.ReasonServerError
			}
			if r.OK || r.Retry != retry || r.Reason != reason || r.StatusCode != code {
				t.Errorf("Classify(%d, %d) = %+v", code, tc, r)
			}
		}
	}
	codes := map[int]delivery.Result{
		CodeTooManyRequests:  {Retry: true, Reason: delivery.ReasonRateLimited},
		CodeAuthenticate:     {Reason: delivery.ReasonAuthError},
		CodeInvalidTo:        {Reason: delivery.ReasonProviderRefused},
		CodeRegionDisabled:   {Reason: delivery.ReasonProviderRefused},
		CodeUnsubscribed:     {Reason: delivery.ReasonProviderRefused},
		CodePremiumForbidden: {Reason: delivery.ReasonProviderRefused},
		21614:                {Reason: delivery.ReasonProviderRefused},
	}
	for code, want := range codes {
		if r := Classify(400, code); r.Retry != want.Retry || r.Reason != want.Reason {
			t.Errorf("Classify(400, %d) = %+v", code, r)
		}
	}
}

func TestNewRefusals(t *testing.T) {
	for _, cfg := range []Config{
		{AuthToken: testToken, From: testFrom},
		{AccountSID: testSID, From: testFrom},
		{AccountSID: testSID, AuthToken: testToken},
		{AccountSID: testSID, AuthToken: testToken, From: testFrom, BaseURL: "ftp://x"},
	} {
		if _, err := New(cfg, nil, nil); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func BenchmarkTwilioSend(b *testing.B) {
	_, srv := newFakeTwilio(b)
	s := newSender(b, srv, Config{})
	ev := testEvent("+94771234567")
	b.ReportAllocs()
	for b.Loop() {
		if res := s.Send(context.Background(), ev); !res.OK {
			b.Fatal(res)
		}
	}
}

// TestFakeValidates proves the fake's OpenAPI validation bites, so the
// clean runs above mean something.
func TestFakeValidates(t *testing.T) {
	f, srv := newFakeTwilio(t)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/2010-04-01/Accounts/"+testSID+"/Messages.json",
		strings.NewReader("To=%2B94771234567&From=%2B15005550006&Body=hi&ValidityPeriod=soon"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testSID, testToken)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || len(f.invalid) != 1 {
		t.Fatalf("status %d, invalid %v", resp.StatusCode, f.invalid)
	}
}

// TestEndpointIsPerAccount: the breaker and concurrency cap are per
// Twilio account, so one org's throttled account never holds back another
// org's on the same host.
func TestEndpointIsPerAccount(t *testing.T) {
	const token = "f00df00df00df00df00df00df00df00d"
	mk := func(sid string) string {
		s, err := New(Config{AccountSID: sid, AuthToken: token, From: testFrom}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s.Endpoint()
	}
	a, a2, b := mk(testSID), mk(testSID), mk("AC"+strings.Repeat("f", 32))
	if a != a2 || a == b || !strings.HasPrefix(a, "https://api.twilio.com#") {
		t.Fatalf("endpoints %q %q %q", a, a2, b)
	}
	if strings.Contains(a, token) {
		t.Fatal("the endpoint key holds the auth token")
	}
}
