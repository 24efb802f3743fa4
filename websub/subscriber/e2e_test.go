package subscriber

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otphub/otphub/app/apptest"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/websub/whsec"
)

// The tests in this file run the SDK against the whole otphub started
// in-process (apptest): the real token endpoint, hub, auth core, log and
// delivery engine, over loopback HTTP.

type otphub struct {
	t   *testing.T
	srv *apptest.TestServer
}

func startOtphub(t *testing.T) *otphub {
	t.Helper()
	return &otphub{t: t, srv: apptest.Start(t)}
}

// call makes a JSON API call and decodes the answer into out (if set).
func (o *otphub) call(method, path, token string, in, out any, wantCode int) {
	o.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, o.srv.URL+path, body)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantCode {
		o.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			o.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

func (o *otphub) token(id, secret string) string {
	o.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, o.srv.URL+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		o.t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	return tok.AccessToken
}

// org creates org and returns a client with the subscribe scope and a
// token with the otp and admin scopes.
func (o *otphub) org(name string) (subID, subSecret, otpToken string) {
	o.t.Helper()
	admin := o.token(o.srv.AdminClientID, o.srv.AdminClientSecret)
	o.call(http.MethodPost, "/api/v1/orgs", admin, map[string]string{"name": name}, nil, http.StatusCreated)
	var sub, app struct{ ClientID, ClientSecret string }
	o.call(http.MethodPost, "/api/v1/orgs/"+name+"/clients", admin,
		map[string]any{"name": "sms-handler", "scopes": []string{"subscribe"}}, &sub, http.StatusCreated)
	o.call(http.MethodPost, "/api/v1/orgs/"+name+"/clients", admin,
		map[string]any{"name": "myapp", "scopes": []string{"otp", "admin"}}, &app, http.StatusCreated)
	return sub.ClientID, sub.ClientSecret, o.token(app.ClientID, app.ClientSecret)
}

// challenge starts an SMS OTP challenge and returns its ID.
func (o *otphub) challenge(org, token, mobile string) string {
	o.t.Helper()
	var c struct{ ID string }
	o.call(http.MethodPost, "/api/v1/orgs/"+org+"/sms-otp/challenges", token,
		map[string]string{"mobile": mobile, "userId": "alice", "application": "myapp"}, &c, http.StatusCreated)
	return c.ID
}

// handlerServer serves a Listener (swappable) on loopback and records the
// status of every delivery it answered.
type handlerServer struct {
	srv      *httptest.Server
	listener atomic.Pointer[Listener]
	mu       sync.Mutex
	codes    []int
}

// awaitActive waits until the hub lists an active subscription of org.
// Start returns once the Listener echoed the hub's challenge; the hub
// writes the subscription just after it reads that answer, so an event
// published at once could find no subscriber yet.
func (o *otphub) awaitActive(t *testing.T, org, token string) {
	t.Helper()
	var subs struct{ Subscriptions []struct{ State string } }
	waitFor(t, "the hub to activate the subscription", func() bool {
		o.call(http.MethodGet, "/api/v1/orgs/"+org+"/subscriptions", token, nil, &subs, http.StatusOK)
		for _, s := range subs.Subscriptions {
			if s.State == "active" {
				return true
			}
		}
		return false
	})
}

func newHandlerServer(t *testing.T) *handlerServer {
	h := &handlerServer{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.listener.Load().ServeHTTP(rec, r)
		if r.Method == http.MethodPost {
			h.mu.Lock()
			h.codes = append(h.codes, rec.Code)
			h.mu.Unlock()
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *handlerServer) deliveryCodes() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int(nil), h.codes...)
}

var otpPattern = regexp.MustCompile(`is ([0-9A-Za-z]+)\.`)

// channelHandler passes every event to a channel; fail decides whether a
// call fails.
type channelHandler struct {
	events chan event.SmsOtpNotificationEvent
	calls  atomic.Int32
	fail   func(call int32) error
}

func (c *channelHandler) OnSmsOtp(_ context.Context, ev event.SmsOtpNotificationEvent) error {
	n := c.calls.Add(1)
	if c.fail != nil {
		if err := c.fail(n); err != nil {
			return err
		}
	}
	c.events <- ev
	return nil
}

func receive(t *testing.T, ch <-chan event.SmsOtpNotificationEvent) event.SmsOtpNotificationEvent {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(20 * time.Second):
		t.Fatal("no event within 20s")
	}
	return event.SmsOtpNotificationEvent{}
}

func TestEndToEndEveryFormat(t *testing.T) {
	o := startOtphub(t)
	for i, format := range event.Formats {
		org := "e2e-" + strings.ReplaceAll(string(format), "-", "")
		t.Run(string(format), func(t *testing.T) {
			subID, subSecret, otpToken := o.org(org)
			hs := newHandlerServer(t)
			h := &channelHandler{events: make(chan event.SmsOtpNotificationEvent, 10)}
			l, err := New(Config{HubURL: o.srv.URL + "/hub", ClientID: subID, ClientSecret: subSecret, Org: org,
				CallbackURL: hs.srv.URL + "/sms?n=" + string(rune('0'+i)), Format: format}, h)
			if err != nil {
				t.Fatal(err)
			}
			hs.listener.Store(l)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := l.Start(ctx); err != nil {
				t.Fatal(err)
			}
			o.awaitActive(t, org, o.token(subID, subSecret))
			st := l.Status()
			if !st.Active || st.LeaseSeconds != 864000 {
				t.Errorf("status %+v (the hub's default lease is 10 days)", st)
			}

			id := o.challenge(org, otpToken, "+94771234567")
			ev := receive(t, h.events)
			if ev.OrganizationName != org || ev.SendTo != "+94771234567" || ev.Audience != l.Topic() || ev.Expiry().Before(ev.IssuedAt) {
				t.Errorf("event %+v", ev)
			}
			m := otpPattern.FindStringSubmatch(ev.MessageBody)
			if m == nil || !strings.HasPrefix(ev.MessageBody, "Your one-time password for the myapp is ") {
				t.Fatalf("message %q", ev.MessageBody)
			}
			var verified struct{ Verified bool }
			o.call(http.MethodPost, "/api/v1/orgs/"+org+"/sms-otp/challenges/"+id+"/verify", otpToken,
				map[string]string{"code": m[1]}, &verified, http.StatusOK)
			if !verified.Verified {
				t.Error("the OTP delivered to the SDK did not verify")
			}

			if err := l.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			var subs struct{ Subscriptions []struct{ State string } }
			waitFor(t, "the hub to drop the subscription", func() bool {
				o.call(http.MethodGet, "/api/v1/orgs/"+org+"/subscriptions", o.token(subID, subSecret), nil, &subs, http.StatusOK)
				return len(subs.Subscriptions) == 0
			})
		})
	}
}

func TestEndToEndHandlerErrorsCauseRetries(t *testing.T) {
	o := startOtphub(t)
	subID, subSecret, otpToken := o.org("retries")
	hs := newHandlerServer(t)
	h := &channelHandler{events: make(chan event.SmsOtpNotificationEvent, 10), fail: func(n int32) error {
		if n <= 2 {
			return errors.New("gateway down")
		}
		return nil
	}}
	l, err := New(Config{HubURL: o.srv.URL + "/hub", ClientID: subID, ClientSecret: subSecret, Org: "retries",
		CallbackURL: hs.srv.URL + "/sms"}, h)
	if err != nil {
		t.Fatal(err)
	}
	hs.listener.Store(l)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	o.awaitActive(t, "retries", o.token(subID, subSecret))
	defer func() {
		if err := l.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()

	o.challenge("retries", otpToken, "+94771234567")
	receive(t, h.events)
	waitFor(t, "the third answer", func() bool { return len(hs.deliveryCodes()) >= 3 })
	if n := h.calls.Load(); n != 3 {
		t.Errorf("handler called %d times, want 3 (two failures, then success)", n)
	}
	codes := hs.deliveryCodes()
	if len(codes) != 3 || codes[0] != 500 || codes[1] != 500 || codes[2] != 200 {
		t.Errorf("delivery answers %v, want [500 500 200]", codes)
	}
}

func TestEndToEndBadSignaturesRefused(t *testing.T) {
	o := startOtphub(t)
	subID, subSecret, otpToken := o.org("badsig")
	hs := newHandlerServer(t)
	good := &channelHandler{events: make(chan event.SmsOtpNotificationEvent, 10)}
	cfg := Config{HubURL: o.srv.URL + "/hub", ClientID: subID, ClientSecret: subSecret, Org: "badsig",
		CallbackURL: hs.srv.URL + "/sms"}
	l, err := New(cfg, good)
	if err != nil {
		t.Fatal(err)
	}
	hs.listener.Store(l)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	o.awaitActive(t, "badsig", o.token(subID, subSecret))
	defer func() {
		if err := l.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()

	// The callback now expects another secret than the one the hub signs
	// with: every delivery must be refused and never reach a handler.
	impostor := &channelHandler{events: make(chan event.SmsOtpNotificationEvent, 10)}
	cfg.Secret = "not-the-subscription-secret"
	other, err := New(cfg, impostor)
	if err != nil {
		t.Fatal(err)
	}
	hs.listener.Store(other)
	o.challenge("badsig", otpToken, "+94771234567")
	waitFor(t, "the hub's delivery attempt", func() bool { return len(hs.deliveryCodes()) > 0 })
	if codes := hs.deliveryCodes(); codes[0] != http.StatusForbidden {
		t.Errorf("delivery answered %v, want 403", codes)
	}
	if impostor.calls.Load() != 0 || good.calls.Load() != 0 {
		t.Error("a wrongly signed delivery reached a handler")
	}

	// Back with the right secret, the next OTP is delivered.
	hs.listener.Store(l)
	o.challenge("badsig", otpToken, "+94771234568")
	if ev := receive(t, good.events); ev.SendTo != "+94771234568" {
		t.Errorf("received %+v", ev)
	}
}

// TestEndToEndStandardWebhooksSecret: with a "whsec_" secret the hub keys
// webhook-signature by its key material and the SDK verifies it the same
// way (a delivery carrying only webhook-signature is accepted).
func TestEndToEndStandardWebhooksSecret(t *testing.T) {
	o := startOtphub(t)
	subID, subSecret, otpToken := o.org("whsecorg")
	hs := newHandlerServer(t)
	h := &channelHandler{events: make(chan event.SmsOtpNotificationEvent, 10)}
	secret := whsec.New()
	l, err := New(Config{HubURL: o.srv.URL + "/hub", ClientID: subID, ClientSecret: subSecret, Org: "whsecorg",
		CallbackURL: hs.srv.URL + "/sms", Secret: secret}, h)
	if err != nil {
		t.Fatal(err)
	}
	// Only webhook-signature reaches the Listener: X-Hub-Signature, keyed
	// by the secret string, would pass on its own.
	hs.srv.Config.Handler = stripHeader(hs.srv.Config.Handler, "X-Hub-Signature")
	hs.listener.Store(l)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	o.awaitActive(t, "whsecorg", o.token(subID, subSecret))
	defer func() {
		if err := l.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()
	o.challenge("whsecorg", otpToken, "+94771234567")
	if ev := receive(t, h.events); ev.SendTo != "+94771234567" {
		t.Errorf("received %+v", ev)
	}
}

func stripHeader(next http.Handler, name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del(name)
		next.ServeHTTP(w, r)
	})
}

func TestEndToEndLeaseRenewal(t *testing.T) {
	o := startOtphub(t)
	subID, subSecret, otpToken := o.org("renewal")
	hs := newHandlerServer(t)
	h := &channelHandler{events: make(chan event.SmsOtpNotificationEvent, 10)}
	l, err := New(Config{HubURL: o.srv.URL + "/hub", ClientID: subID, ClientSecret: subSecret, Org: "renewal",
		CallbackURL: hs.srv.URL + "/sms", LeaseSeconds: 600}, h)
	if err != nil {
		t.Fatal(err)
	}
	// The hub grants at least minutes; renew every 100 ms instead of at 80 %.
	l.renewAfter = func(time.Duration) time.Duration { return 100 * time.Millisecond }
	hs.listener.Store(l)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	}()
	first := l.Status()
	if first.LeaseSeconds != 600 {
		t.Errorf("granted %d, asked 600", first.LeaseSeconds)
	}
	waitFor(t, "two renewals by the real hub", func() bool { return l.Status().Verifications >= 3 })
	if st := l.Status(); !st.Active || !st.LeaseExpires.After(first.LeaseExpires) {
		t.Errorf("after renewals: %+v (first %+v)", st, first)
	}
	// Renewal updated the subscription in place: one subscription, still delivering.
	var subs struct{ Subscriptions []struct{ State string } }
	o.call(http.MethodGet, "/api/v1/orgs/renewal/subscriptions", o.token(subID, subSecret), nil, &subs, http.StatusOK)
	if len(subs.Subscriptions) != 1 || subs.Subscriptions[0].State != "active" {
		t.Errorf("subscriptions %+v", subs)
	}
	o.challenge("renewal", otpToken, "+94771234567")
	receive(t, h.events)
}
