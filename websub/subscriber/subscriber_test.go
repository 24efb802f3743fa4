package subscriber

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otphub/otphub/event"
)

type fixture struct {
	hub      *specHub
	l        *Listener
	rec      *recorder
	callback string
	cfg      Config
}

// newFixture starts a spec hub and a Listener served on its own loopback
// server, not yet subscribed.
func newFixture(t *testing.T, edit func(*Config)) *fixture {
	t.Helper()
	f := &fixture{hub: newSpecHub(t, "acme"), rec: &recorder{}}
	var served atomic.Pointer[Listener]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.callback = srv.URL + "/otp-callback?tenant=acme"
	f.cfg = Config{
		HubURL: f.hub.hubURL(), ClientID: "client-1", ClientSecret: "s3cret", Org: "acme",
		CallbackURL: f.callback,
	}
	if edit != nil {
		edit(&f.cfg)
	}
	l, err := New(f.cfg, f.rec)
	if err != nil {
		t.Fatal(err)
	}
	served.Store(l)
	f.l = l
	return f
}

func (f *fixture) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = f.l.Shutdown(ctx)
	})
	waitFor(t, "the hub to activate the subscription", func() bool { return f.hub.sub(f.callback) != nil })
}

func TestSubscribeAndReceiveEveryFormat(t *testing.T) {
	for _, format := range event.Formats {
		t.Run(string(format), func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.Format = format; c.LeaseSeconds = 3600 })
			f.start(t)
			sub := f.hub.sub(f.callback)
			if sub.Format != string(format) || string(sub.Secret) != f.l.Secret() || sub.LeaseSeconds != 3600 {
				t.Fatalf("hub recorded %+v", sub)
			}
			if st := f.l.Status(); !st.Active || st.LeaseSeconds != 3600 || st.Verifications != 1 {
				t.Fatalf("status %+v", st)
			}
			ev := testEvent("acme")
			if res := f.hub.deliver(f.callback, ev); !res.OK {
				t.Fatalf("delivery: %+v", res)
			}
			calls, got := f.rec.snapshot()
			if calls != 1 || len(got) != 1 {
				t.Fatalf("handler calls %d", calls)
			}
			want := *ev
			want.Audience = f.hub.topic() // the sender fills aud from the topic
			if got[0] != want {
				t.Errorf("handler got %+v\nwant %+v", got[0], want)
			}
			// A redelivery of the same jti is acknowledged, not handled again.
			if res := f.hub.deliver(f.callback, ev); !res.OK {
				t.Fatalf("redelivery: %+v", res)
			}
			if calls, _ := f.rec.snapshot(); calls != 1 {
				t.Errorf("duplicate reached the handler (%d calls)", calls)
			}
		})
	}
}

func TestSignatureAlgorithms(t *testing.T) {
	for _, alg := range []string{"sha1", "sha256", "sha384", "sha512"} {
		f := newFixture(t, func(c *Config) { c.SignatureAlg = alg })
		f.start(t)
		req := f.hub.request(f.callback, testEvent("acme"))
		if !strings.HasPrefix(req.Header.Get("X-Hub-Signature"), alg+"=") {
			t.Fatalf("%s: header %q", alg, req.Header.Get("X-Hub-Signature"))
		}
		req.Header.Del("Webhook-Signature") // X-Hub-Signature alone suffices
		if code := do(t, req); code != http.StatusOK {
			t.Errorf("%s: status %d", alg, code)
		}
	}
}

func do(t *testing.T, req *http.Request) int {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// resign recomputes both signatures of req over body with secret.
func resign(t *testing.T, req *http.Request, secret string, body []byte) *http.Request {
	t.Helper()
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	out, err := http.NewRequest(http.MethodPost, req.URL.String(), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	out.Header = req.Header.Clone()
	out.Header.Set("X-Hub-Signature", "sha256="+hexString(m.Sum(nil)))
	ts := req.Header.Get("Webhook-Timestamp")
	s := hmac.New(sha256.New, []byte(secret))
	s.Write([]byte(req.Header.Get("Webhook-Id") + "." + ts + "."))
	s.Write(body)
	out.Header.Set("Webhook-Signature", "v1,"+base64.StdEncoding.EncodeToString(s.Sum(nil)))
	return out
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestDeliveryRefusals(t *testing.T) {
	f := newFixture(t, nil)
	f.start(t)
	ev := testEvent("acme")
	good := func() *http.Request { return f.hub.request(f.callback, ev) }
	body := func(r *http.Request) []byte { b, _ := io.ReadAll(r.Body); return b }

	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forged, _ := event.SignSET(ev, otherKey, "hub-key-1")
	otherOrg := testEvent("other-org")
	otherOrgBody, _ := event.MarshalAsgardeo(otherOrg)

	for name, tc := range map[string]struct {
		req  func() *http.Request
		want int
	}{
		"unsigned": {func() *http.Request {
			r := good()
			r.Header.Del("X-Hub-Signature")
			r.Header.Del("Webhook-Signature")
			return r
		}, http.StatusUnauthorized},
		"wrong X-Hub-Signature": {func() *http.Request {
			r := good()
			r.Header.Set("X-Hub-Signature", "sha256="+strings.Repeat("ab", 32))
			return r
		}, http.StatusForbidden},
		"X-Hub-Signature unknown alg": {func() *http.Request {
			r := good()
			r.Header.Set("X-Hub-Signature", "md5=00")
			return r
		}, http.StatusForbidden},
		"X-Hub-Signature not hex": {func() *http.Request {
			r := good()
			r.Header.Set("X-Hub-Signature", "sha256=zz")
			return r
		}, http.StatusForbidden},
		"right X-Hub, wrong webhook-signature": {func() *http.Request {
			r := good()
			r.Header.Set("Webhook-Signature", "v1,"+base64.StdEncoding.EncodeToString(make([]byte, 32)))
			return r
		}, http.StatusForbidden},
		"webhook-signature v2 only": {func() *http.Request {
			r := good()
			r.Header.Del("X-Hub-Signature")
			r.Header.Set("Webhook-Signature", strings.Replace(r.Header.Get("Webhook-Signature"), "v1,", "v2,", 1))
			return r
		}, http.StatusForbidden},
		"webhook-signature without id": {func() *http.Request {
			r := good()
			r.Header.Del("X-Hub-Signature")
			r.Header.Del("Webhook-Id")
			return r
		}, http.StatusUnauthorized},
		"stale timestamp": {func() *http.Request {
			r := good()
			r.Header.Set("Webhook-Timestamp", strconv.FormatInt(time.Now().Add(-6*time.Minute).Unix(), 10))
			return r
		}, http.StatusForbidden},
		"future timestamp": {func() *http.Request {
			r := good()
			r.Header.Set("Webhook-Timestamp", strconv.FormatInt(time.Now().Add(6*time.Minute).Unix(), 10))
			return r
		}, http.StatusForbidden},
		"timestamp not a number": {func() *http.Request {
			r := good()
			r.Header.Set("Webhook-Timestamp", "yesterday")
			return r
		}, http.StatusForbidden},
		"body tampered": {func() *http.Request {
			r := good()
			b := bytes.Replace(body(r), []byte("075052"), []byte("000000"), 1)
			out, _ := http.NewRequest(http.MethodPost, r.URL.String(), bytes.NewReader(b))
			out.Header = r.Header
			return out
		}, http.StatusForbidden},
		"signed with another secret": {func() *http.Request {
			r := good()
			return resign(t, r, "not-the-secret", body(r))
		}, http.StatusForbidden},
		"malformed event, correctly signed": {func() *http.Request {
			r := good()
			return resign(t, r, f.l.Secret(), []byte(`{"event":{}}`))
		}, http.StatusBadRequest},
		"unsupported content type": {func() *http.Request {
			r := good()
			r.Header.Set("Content-Type", "text/plain")
			return r
		}, http.StatusUnsupportedMediaType},
		"signed SET by a key not in the JWKS": {func() *http.Request {
			r := good()
			r.Header.Set("Content-Type", event.SETContentType)
			return resign(t, r, f.l.Secret(), []byte(forged))
		}, http.StatusForbidden},
		"event of another org": {func() *http.Request {
			return resign(t, good(), f.l.Secret(), otherOrgBody)
		}, http.StatusBadRequest},
		"too large": {func() *http.Request {
			return resign(t, good(), f.l.Secret(), bytes.Repeat([]byte(" "), event.MaxEventBytes+1))
		}, http.StatusRequestEntityTooLarge},
		"PUT": {func() *http.Request {
			r := good()
			r.Method = http.MethodPut
			return r
		}, http.StatusMethodNotAllowed},
	} {
		if code := do(t, tc.req()); code != tc.want {
			t.Errorf("%s: status %d, want %d", name, code, tc.want)
		}
	}
	if calls, _ := f.rec.snapshot(); calls != 0 {
		t.Errorf("a refused delivery reached the handler (%d calls)", calls)
	}
	// The untouched request still works.
	if code := do(t, good()); code != http.StatusOK {
		t.Errorf("good request: %d", code)
	}
}

func TestHandlerErrorAnswers5xxAndRetrySucceeds(t *testing.T) {
	f := newFixture(t, nil)
	f.start(t)
	f.rec.setFailing(true)
	ev := testEvent("acme")
	res := f.hub.deliver(f.callback, ev)
	if res.OK || !res.Retry || res.StatusCode != http.StatusInternalServerError {
		t.Fatalf("failing handler: %+v", res)
	}
	res = f.hub.deliver(f.callback, ev)
	if res.OK || res.StatusCode != http.StatusInternalServerError {
		t.Fatalf("second failing attempt (must not be deduplicated): %+v", res)
	}
	f.rec.setFailing(false)
	if res := f.hub.deliver(f.callback, ev); !res.OK {
		t.Fatalf("retry after recovery: %+v", res)
	}
	if calls, got := f.rec.snapshot(); calls != 3 || len(got) != 1 {
		t.Errorf("calls %d, handled %d", calls, len(got))
	}
}

func TestPermanentHandlerErrorAnswers422(t *testing.T) {
	f := newFixture(t, nil)
	f.l.handler = HandlerFunc(func(context.Context, event.SmsOtpNotificationEvent) error {
		return Permanent(errors.New("gateway: invalid number"))
	})
	f.start(t)
	if res := f.hub.deliver(f.callback, testEvent("acme")); res.OK || res.Retry || res.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("%+v", res)
	}
	if Permanent(nil) != nil || IsPermanent(errors.New("x")) {
		t.Error("Permanent(nil) or IsPermanent of a plain error")
	}
}

func TestSignedSETWhileJWKSUnavailable(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Format = event.FormatSETJWT; c.JWKSURL = "http://127.0.0.1:1/jwks.json" })
	f.start(t)
	res := f.hub.deliver(f.callback, testEvent("acme"))
	if res.OK || !res.Retry || res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("%+v", res)
	}
}

func TestHandlerPanicAnswers500(t *testing.T) {
	f := newFixture(t, nil)
	f.l.handler = HandlerFunc(func(context.Context, event.SmsOtpNotificationEvent) error { panic("boom") })
	f.start(t)
	if res := f.hub.deliver(f.callback, testEvent("acme")); res.OK || res.StatusCode != http.StatusInternalServerError {
		t.Fatalf("%+v", res)
	}
}

func TestConcurrentDuplicateIsRetriedLater(t *testing.T) {
	f := newFixture(t, nil)
	entered, release := make(chan struct{}), make(chan struct{})
	f.l.handler = HandlerFunc(func(context.Context, event.SmsOtpNotificationEvent) error {
		close(entered)
		<-release
		return nil
	})
	f.start(t)
	ev := testEvent("acme")
	first := make(chan int)
	go func() { first <- f.hub.deliver(f.callback, ev).StatusCode }()
	<-entered
	res := f.hub.deliver(f.callback, ev)
	if res.OK || !res.Retry || res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("in-flight duplicate: %+v", res)
	}
	close(release)
	if code := <-first; code != http.StatusOK {
		t.Errorf("first delivery: %d", code)
	}
	if res := f.hub.deliver(f.callback, ev); !res.OK {
		t.Errorf("later duplicate: %+v", res)
	}
}

// TestDuplicatesAreKeyedByProducer: the same jti from two producers (iss)
// is two events, both handled; a repeat of either is a duplicate.
func TestDuplicatesAreKeyedByProducer(t *testing.T) {
	f := newFixture(t, nil)
	f.start(t)
	one, two := testEvent("acme"), testEvent("acme")
	one.ID, two.ID = "ext-0001", "ext-0001"
	one.Issuer, two.Issuer = "https://producer-one.example", "urn:producer:two"
	for _, ev := range []*event.SmsOtpNotificationEvent{one, two, one} {
		if res := f.hub.deliver(f.callback, ev); !res.OK {
			t.Fatalf("delivery of %s/%s: %+v", ev.Issuer, ev.ID, res)
		}
	}
	if calls, _ := f.rec.snapshot(); calls != 2 {
		t.Errorf("handler called %d times, want once per producer", calls)
	}
}

func TestDedupWindow(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	d := newDedup(time.Minute, 2, func() time.Time { return now })
	if d.begin("a") != seenNew {
		t.Fatal("a is new")
	}
	d.done("a")
	if d.begin("a") != seenDone {
		t.Fatal("a is done")
	}
	now = now.Add(61 * time.Second)
	if d.begin("a") != seenNew {
		t.Fatal("a should be forgotten after the window")
	}
	d.done("a")
	d.begin("b")
	d.done("b")
	d.begin("c")
	d.done("c") // capacity 2: a is dropped
	if d.begin("a") != seenNew || d.begin("c") != seenDone {
		t.Fatal("capacity not enforced oldest-first")
	}
	off := newDedup(-1, 10, time.Now)
	off.begin("x")
	off.done("x")
	if off.begin("x") != seenNew {
		t.Fatal("disabled dedup remembered")
	}
}

func TestVerificationOnlyForPendingRequests(t *testing.T) {
	f := newFixture(t, nil)
	get := func(q url.Values) (int, string) {
		u, _ := url.Parse(f.callback)
		all := u.Query()
		for k, v := range q {
			all[k] = v
		}
		u.RawQuery = all.Encode()
		resp, err := http.Get(u.String())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	topic := f.l.Topic()
	for name, tc := range map[string]struct {
		q    url.Values
		want int
	}{
		"subscribe, nothing pending":   {url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}, "hub.challenge": {"c"}, "hub.lease_seconds": {"60"}}, 404},
		"unsubscribe, nothing pending": {url.Values{"hub.mode": {"unsubscribe"}, "hub.topic": {topic}, "hub.challenge": {"c"}}, 404},
		"other topic":                  {url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic + "x"}, "hub.challenge": {"c"}, "hub.lease_seconds": {"60"}}, 404},
		"no mode":                      {url.Values{"hub.topic": {topic}}, 400},
		"bad mode":                     {url.Values{"hub.mode": {"publish"}, "hub.topic": {topic}}, 400},
		"no challenge":                 {url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}, "hub.lease_seconds": {"60"}}, 400},
		"huge challenge":               {url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}, "hub.challenge": {strings.Repeat("c", 2000)}, "hub.lease_seconds": {"60"}}, 400},
		"no lease":                     {url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}, "hub.challenge": {"c"}}, 400},
	} {
		if code, body := get(tc.q); code != tc.want || body == "c" {
			t.Errorf("%s: %d %q, want %d", name, code, body, tc.want)
		}
	}
	// Once subscribed, a third party cannot unsubscribe the Listener.
	f.start(t)
	if code, _ := get(url.Values{"hub.mode": {"unsubscribe"}, "hub.topic": {topic}, "hub.challenge": {"c"}}); code != 404 {
		t.Errorf("unsolicited unsubscribe verification: %d", code)
	}
	if !f.l.Status().Active {
		t.Error("the subscription is no longer active")
	}
}

func TestDenied(t *testing.T) {
	f := newFixture(t, nil)
	f.hub.mu.Lock()
	f.hub.deny = "too many subscriptions"
	f.hub.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := f.l.Start(ctx)
	if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "too many subscriptions") {
		t.Fatalf("Start: %v", err)
	}
	if st := f.l.Status(); st.Active || st.DeniedReason != "too many subscriptions" {
		t.Errorf("status %+v", st)
	}
	// Start may be tried again once the hub relents.
	f.hub.mu.Lock()
	f.hub.deny = ""
	f.hub.mu.Unlock()
	if err := f.l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	_ = f.l.Shutdown(ctx)
}

func TestLeaseRenewal(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.LeaseSeconds = 3600 })
	f.hub.mu.Lock()
	f.hub.grant = 1 // the hub grants 1 s: renewal is due at 0.8 s
	f.hub.mu.Unlock()
	f.start(t)
	waitFor(t, "two renewals", func() bool { return f.l.Status().Verifications >= 3 })
	if n := f.hub.requestCount("subscribe"); n < 3 {
		t.Errorf("the hub saw %d subscribe requests", n)
	}
	if st := f.l.Status(); st.LeaseSeconds != 1 {
		t.Errorf("status %+v", st)
	}
}

func TestRenewalRetriesAfterFailure(t *testing.T) {
	f := newFixture(t, nil)
	f.l.renewAfter = func(time.Duration) time.Duration { return 20 * time.Millisecond }
	f.l.retryBackoff = 10 * time.Millisecond
	f.start(t)
	f.hub.mu.Lock()
	f.hub.deny = "maintenance"
	f.hub.mu.Unlock()
	waitFor(t, "a denied renewal", func() bool { return f.l.Status().DeniedReason == "maintenance" })
	before := f.l.Status().Verifications
	f.hub.mu.Lock()
	f.hub.deny = ""
	f.hub.mu.Unlock()
	waitFor(t, "a renewal after the failure", func() bool {
		st := f.l.Status()
		return st.Active && st.Verifications > before
	})
}

func TestShutdownUnsubscribes(t *testing.T) {
	f := newFixture(t, nil)
	f.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.l.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hub to drop the subscription", func() bool { return f.hub.sub(f.callback) == nil })
	if f.l.Status().Active {
		t.Error("still active after unsubscribing")
	}
	if err := f.l.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	f := newFixture(t, func(c *Config) { c.ClientSecret = "wrong" })
	err := f.l.Start(ctx)
	var he *HubError
	if !errors.As(err, &he) || he.Op != "token" || he.StatusCode != 401 || he.Code != "invalid_client" {
		t.Errorf("bad credentials: %v", err)
	}

	f = newFixture(t, func(c *Config) { c.Org = "other" }) // a topic the hub does not know
	if err := f.l.Start(ctx); !errors.As(err, &he) || he.Op != "subscribe" || he.Code != "unknown_topic" {
		t.Errorf("unknown topic: %v", err)
	}

	// A callback that does not reach the Listener: the hub's verification
	// never arrives.
	f = newFixture(t, func(c *Config) {
		c.CallbackURL = "http://127.0.0.1:1/nowhere"
		c.VerifyTimeout = 200 * time.Millisecond
	})
	if err := f.l.Start(ctx); err == nil || !strings.Contains(err.Error(), "did not verify") {
		t.Errorf("unverified: %v", err)
	}

	f = newFixture(t, nil)
	f.start(t)
	if err := f.l.Start(ctx); err == nil {
		t.Error("a second Start succeeded")
	}
}

func TestConfig(t *testing.T) {
	base := Config{HubURL: "https://hub.example.com/hub", ClientID: "c", ClientSecret: "s", Org: "acme",
		CallbackURL: "https://me.example.com/cb"}
	l, err := New(base, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Topic() != "https://hub.example.com/topics/acme/NOTIFICATIONS" {
		t.Errorf("topic %s", l.Topic())
	}
	if len(l.Secret()) != 43 {
		t.Errorf("generated secret of %d chars", len(l.Secret()))
	}
	if l.cfg.TokenURL != "https://hub.example.com/oauth2/token" || l.cfg.JWKSURL != "https://hub.example.com/.well-known/jwks.json" {
		t.Errorf("derived URLs %s %s", l.cfg.TokenURL, l.cfg.JWKSURL)
	}
	l2, _ := New(base, &recorder{})
	if l2.Secret() == l.Secret() {
		t.Error("two generated secrets are equal")
	}
	for name, edit := range map[string]func(c *Config){
		"hub url":   func(c *Config) { c.HubURL = "hub" },
		"callback":  func(c *Config) { c.CallbackURL = "ftp://x/y" },
		"client":    func(c *Config) { c.ClientID = "" },
		"org":       func(c *Config) { c.Org = "Acme Corp" },
		"secret":    func(c *Config) { c.Secret = strings.Repeat("s", 200) },
		"lease":     func(c *Config) { c.LeaseSeconds = -1 },
		"format":    func(c *Config) { c.Format = "xml" },
		"alg":       func(c *Config) { c.SignatureAlg = "md5" },
		"token url": func(c *Config) { c.TokenURL = "/token" },
	} {
		c := base
		edit(&c)
		if _, err := New(c, &recorder{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(base, nil); err == nil {
		t.Error("nil handler accepted")
	}
}
