// Package sendertest is the conformance suite every delivery.Sender passes
// (each sender's own test runs it, and docs/adding-a-provider.md shows a
// new one doing so): its classification of every HTTP status against the
// sender's table, Retry-After, timeouts, the egress guard's refusal,
// redirects never followed, secrets never in a Result's error (the
// attempt log and the logs are made of it), and an idempotency key that
// is the same on every attempt of an event and differs between events.
package sendertest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/egress"
	"github.com/otphub/otphub/event"
)

// Harness adapts one sender to the suite.
type Harness struct {
	// New returns a sender that sends to the server at base (scheme://host:port
	// of a local test server; the sender may add its own path) with client.
	New func(t *testing.T, base string, client *http.Client) delivery.Sender
	// Answer writes the destination's answer with status: for a 2xx its
	// success answer, otherwise its own error answer. Nil: the status and
	// an empty body.
	Answer func(w http.ResponseWriter, r *http.Request, status int)
	// Expect is the sender's classification of an answer with status (as
	// Answer writes it): its table, e.g. delivery.HTTP.Rule. A rule
	// without a Reason is success.
	Expect func(status int) delivery.Rule
	// IdempotencyKey returns the idempotency key of a request (a header or
	// a field of body). Nil only with NoIdempotencyKey.
	IdempotencyKey func(r *http.Request, body []byte) string
	// NoIdempotencyKey says why the destination takes no idempotency key
	// (its API has none); required when IdempotencyKey is nil.
	NoIdempotencyKey string
	// Secrets are the sender's configured secrets (credentials, signing
	// keys, capability tokens in URLs): never in a Result's Err.
	Secrets []string
}

// Event returns a valid event with a fresh jti.
func Event(jti string) *event.SmsOtpNotificationEvent {
	now := time.Now()
	return &event.SmsOtpNotificationEvent{ID: jti, Issuer: "https://otphub.example", IssuedAt: now,
		Audience: "https://otphub.example/topics/acme/NOTIFICATIONS", OrganizationID: 1, OrganizationName: "acme",
		SendTo: "+94771234567", MessageBody: "Your code is 123456", ExpiresAt: now.Add(5 * time.Minute)}
}

// request is one request the test server received.
type request struct {
	r    *http.Request
	body []byte
}

// server is the destination: it answers every request with the current
// status and keeps what it received.
type server struct {
	*httptest.Server
	h      Harness
	mu     sync.Mutex
	status int
	header http.Header
	hang   chan struct{} // non-nil: requests wait on it
	got    []request
}

func newServer(t *testing.T, h Harness) *server {
	s := &server{h: h, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	s.got = append(s.got, request{r, body})
	status, hang := s.status, s.hang
	for k, v := range s.header {
		w.Header()[k] = v
	}
	s.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
		return
	}
	if s.h.Answer != nil {
		s.h.Answer(w, r, status)
		return
	}
	w.WriteHeader(status)
}

func (s *server) answer(status int, header http.Header) {
	s.mu.Lock()
	s.status, s.header = status, header
	s.mu.Unlock()
}

func (s *server) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.got...)
}

// noRedirects is the client of every check but the egress one: redirects
// are never followed, as the egress client does.
func noRedirects() *http.Client {
	return &http.Client{CheckRedirect: delivery.NoRedirect, Timeout: 10 * time.Second}
}

// Run runs the suite over the sender h builds.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil || h.Expect == nil {
		t.Fatal("sendertest: Harness.New and Harness.Expect are required")
	}
	if h.IdempotencyKey == nil && h.NoIdempotencyKey == "" {
		t.Fatal("sendertest: give Harness.IdempotencyKey, or say in NoIdempotencyKey why the destination takes none")
	}
	t.Run("Classification", func(t *testing.T) { classification(t, h) })
	t.Run("RetryAfter", func(t *testing.T) { retryAfter(t, h) })
	t.Run("NoRedirects", func(t *testing.T) { noRedirect(t, h) })
	t.Run("Timeout", func(t *testing.T) { timeout(t, h) })
	t.Run("ConnectionRefused", func(t *testing.T) { refusedConnection(t, h) })
	t.Run("EgressRefused", func(t *testing.T) { egressRefused(t, h) })
	t.Run("IdempotencyKey", func(t *testing.T) { idempotency(t, h) })
}

// check fails t when r holds a secret.
func (h Harness) check(t *testing.T, what string, r delivery.Result) {
	t.Helper()
	if r.Err == nil {
		return
	}
	msg := r.Err.Error()
	for _, s := range h.Secrets {
		if s != "" && strings.Contains(msg, s) {
			t.Errorf("%s: the error %q holds a secret", what, msg)
		}
	}
}

// classification sends once per status from 200 to 599 and compares the
// Result with the sender's table. (A 1xx is informational, never a final
// answer: an HTTP server cannot end a request with one.)
func classification(t *testing.T, h Harness) {
	srv := newServer(t, h)
	snd := h.New(t, srv.URL, noRedirects())
	for status := 200; status < 600; status++ {
		srv.answer(status, nil)
		r := snd.Send(context.Background(), Event("classify-"+http.StatusText(status)))
		h.check(t, http.StatusText(status), r)
		want := h.Expect(status)
		if r.OK != (want.Reason == delivery.ReasonNone) || (!r.OK && (r.Retry != want.Retry || r.Reason != want.Reason)) {
			t.Errorf("status %d: got ok=%v retry=%v reason=%q, want retry=%v reason=%q", status, r.OK, r.Retry, r.Reason, want.Retry, want.Reason)
		}
		if r.StatusCode != status {
			t.Errorf("status %d: Result.StatusCode %d", status, r.StatusCode)
		}
		if !r.OK && r.Err == nil {
			t.Errorf("status %d: a failure without Err (the attempt log says nothing)", status)
		}
	}
}

// retryAfter: a retryable answer's Retry-After (seconds or an HTTP date)
// is honoured.
func retryAfter(t *testing.T, h Harness) {
	srv := newServer(t, h)
	snd := h.New(t, srv.URL, noRedirects())
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		if !h.Expect(status).Retry {
			continue
		}
		for _, v := range []string{"7", time.Now().Add(7 * time.Second).UTC().Format(http.TimeFormat)} {
			srv.answer(status, http.Header{"Retry-After": {v}})
			r := snd.Send(context.Background(), Event("retry-after"))
			if !r.Retry || r.RetryAfter < 5*time.Second || r.RetryAfter > 7*time.Second {
				t.Errorf("%d with Retry-After %q: retry=%v after %v, want about 7s", status, v, r.Retry, r.RetryAfter)
			}
		}
	}
}

// noRedirect: a 3xx pointing elsewhere is an answer, never followed.
func noRedirect(t *testing.T, h Harness) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the redirect was followed to %s", r.URL)
	}))
	t.Cleanup(other.Close)
	srv := newServer(t, Harness{Answer: func(w http.ResponseWriter, r *http.Request, status int) {
		w.Header().Set("Location", other.URL+"/elsewhere")
		w.WriteHeader(status)
	}})
	snd := h.New(t, srv.URL, noRedirects())
	for _, status := range []int{301, 302, 303, 307, 308} {
		srv.answer(status, nil)
		r := snd.Send(context.Background(), Event("redirect"))
		h.check(t, "redirect", r)
		if r.OK || r.Retry || r.Reason != delivery.ReasonRedirect {
			t.Errorf("%d: got ok=%v retry=%v reason=%q, want a permanent redirect", status, r.OK, r.Retry, r.Reason)
		}
	}
}

// timeout: a destination that does not answer before the attempt's
// deadline is a retryable timeout.
func timeout(t *testing.T, h Harness) {
	srv := newServer(t, h)
	hang := make(chan struct{})
	defer close(hang)
	srv.mu.Lock()
	srv.hang = hang
	srv.mu.Unlock()
	snd := h.New(t, srv.URL, noRedirects())
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := snd.Send(ctx, Event("timeout"))
	h.check(t, "timeout", r)
	if r.OK || !r.Retry || r.Reason != delivery.ReasonTimeout {
		t.Errorf("got ok=%v retry=%v reason=%q, want a retryable timeout", r.OK, r.Retry, r.Reason)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Send took %v: it does not honour its context's deadline", d)
	}
}

// refusedConnection: nothing listening is a retryable connection failure.
func refusedConnection(t *testing.T, h Harness) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := srv.URL
	srv.Close()
	r := h.New(t, base, noRedirects()).Send(context.Background(), Event("refused"))
	h.check(t, "connection refused", r)
	if r.OK || !r.Retry || r.Reason != delivery.ReasonConnection {
		t.Errorf("got ok=%v retry=%v reason=%q, want a retryable connection failure", r.OK, r.Retry, r.Reason)
	}
}

// egressRefused: through the egress client, a loopback destination is
// refused at dial time: permanent, and the server sees nothing.
func egressRefused(t *testing.T, h Harness) {
	srv := newServer(t, h)
	eg, err := egress.New(egress.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := h.New(t, srv.URL, eg.HTTP()).Send(context.Background(), Event("egress"))
	h.check(t, "egress refusal", r)
	if r.OK || r.Retry || r.Reason != delivery.ReasonEgressRefused {
		t.Errorf("got ok=%v retry=%v reason=%q, want a permanent egress refusal", r.OK, r.Retry, r.Reason)
	}
	if n := len(srv.requests()); n != 0 {
		t.Errorf("the refused destination received %d requests", n)
	}
}

// idempotency: every attempt of an event carries the same key, another
// event another one.
func idempotency(t *testing.T, h Harness) {
	if h.IdempotencyKey == nil {
		t.Skip("no idempotency key: " + h.NoIdempotencyKey)
	}
	srv := newServer(t, h)
	snd := h.New(t, srv.URL, noRedirects())
	// A failed attempt, its retry, and another event.
	srv.answer(http.StatusServiceUnavailable, nil)
	snd.Send(context.Background(), Event("3b241101-e2bb-4255-8caf-4136c566a962"))
	srv.answer(http.StatusOK, nil)
	snd.Send(context.Background(), Event("3b241101-e2bb-4255-8caf-4136c566a962"))
	snd.Send(context.Background(), Event("8f14e45f-ceea-467f-a5e4-5c0a2b4f9b1d"))
	got := srv.requests()
	if len(got) != 3 {
		t.Fatalf("%d requests, want 3", len(got))
	}
	var keys []string
	for _, rq := range got {
		k := h.IdempotencyKey(rq.r, rq.body)
		if k == "" {
			t.Fatalf("a request without an idempotency key: %s %s", rq.r.Method, rq.r.URL)
		}
		keys = append(keys, k)
	}
	if keys[0] != keys[1] {
		t.Errorf("the key changed between attempts of one event: %q, then %q", keys[0], keys[1])
	}
	if keys[0] == keys[2] {
		t.Errorf("two events share the key %q", keys[0])
	}
}

// Header returns an IdempotencyKey that reads the header name.
func Header(name string) func(*http.Request, []byte) string {
	return func(r *http.Request, _ []byte) string { return r.Header.Get(name) }
}

// FormField returns an IdempotencyKey that reads a field of a form body.
func FormField(name string) func(*http.Request, []byte) string {
	return func(r *http.Request, body []byte) string {
		req, _ := http.NewRequest(r.Method, "/", bytes.NewReader(body))
		req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
		if err := req.ParseForm(); err != nil {
			return ""
		}
		return req.PostForm.Get(name)
	}
}

// RunLocal runs the checks that apply to a sender that makes no network
// request (the console): an event is delivered, an event without a
// recipient or a body is a permanent ReasonInvalid, and a context already
// done is a retryable timeout, not a delivery.
func RunLocal(t *testing.T, newSender func(t *testing.T) delivery.Sender) {
	t.Helper()
	s := newSender(t)
	if r := s.Send(context.Background(), Event("local")); !r.OK {
		t.Errorf("a valid event: %+v", r)
	}
	bad := Event("local-invalid")
	bad.SendTo = ""
	if r := s.Send(context.Background(), bad); r.OK || r.Retry || r.Reason != delivery.ReasonInvalid {
		t.Errorf("an event without a recipient: ok=%v retry=%v reason=%q, want a permanent invalid", r.OK, r.Retry, r.Reason)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r := s.Send(ctx, Event("local-done")); r.OK || !r.Retry || r.Reason != delivery.ReasonTimeout {
		t.Errorf("a context already done: ok=%v retry=%v reason=%q, want a retryable timeout", r.OK, r.Retry, r.Reason)
	}
}
