// Package dispatchertest holds what delivery engine tests share: a real
// HTTP receiver that counts deliveries, a minimal HTTP Sender speaking to
// it, a static Resolver, and helpers to make and publish events.
package dispatchertest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/store"
)

// Answer writes the receiver's answer to the nth request (1-based) for the
// event jti.
type Answer func(w http.ResponseWriter, r *http.Request, jti string, nth int)

// Receiver is a real HTTP endpoint (httptest.Server on 127.0.0.1) that
// decodes each POSTed event and counts the ones it answered with a 2xx.
type Receiver struct {
	*httptest.Server

	mu        sync.Mutex
	answer    Answer
	requests  map[string]int
	delivered map[string]int
	order     []string // jtis in the order they were answered 2xx
	total     int
}

// NewReceiver starts a Receiver answering with answer (nil: 204 to all);
// it is closed when the test ends.
func NewReceiver(t testing.TB, answer Answer) *Receiver {
	r := &Receiver{answer: answer, requests: map[string]int{}, delivered: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

// SetAnswer replaces the receiver's answer.
func (r *Receiver) SetAnswer(a Answer) {
	r.mu.Lock()
	r.answer = a
	r.mu.Unlock()
}

func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, event.MaxEventBytes+1))
	if err != nil {
		http.Error(w, "read error", http.StatusBadRequest)
		return
	}
	ev, err := event.UnmarshalAsgardeo(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if got := req.Header.Get("webhook-id"); got != ev.ID {
		http.Error(w, "webhook-id is not the jti", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.requests[ev.ID]++
	r.total++
	nth, answer := r.requests[ev.ID], r.answer
	r.mu.Unlock()

	sw := &httpx.StatusRecorder{ResponseWriter: w}
	if answer == nil {
		sw.WriteHeader(http.StatusNoContent)
	} else {
		answer(sw, req, ev.ID, nth)
	}
	if code := sw.Code(); code >= 200 && code < 300 {
		r.mu.Lock()
		r.delivered[ev.ID]++
		r.order = append(r.order, ev.ID)
		r.mu.Unlock()
	}
}

// Delivered returns how many times jti was answered with a 2xx.
func (r *Receiver) Delivered(jti string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.delivered[jti]
}

// Requests returns how many requests jti received (any answer).
func (r *Receiver) Requests(jti string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests[jti]
}

// Total returns how many events were received (any answer).
func (r *Receiver) Total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// Order returns the jtis answered 2xx, in order.
func (r *Receiver) Order() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.order...)
}

// Duplicates returns how many 2xx answers went to a jti already delivered.
func (r *Receiver) Duplicates() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.delivered {
		n += c - 1
	}
	return n
}

// Sender is a minimal webhook Sender for engine tests: it POSTs the
// Asgardeo body with webhook-id = jti, follows no redirect, and classifies
// the answer with delivery.ClassifyHTTP.
type Sender struct {
	URL    string
	Client *http.Client
}

// NewSender returns a Sender posting to url.
func NewSender(url string) *Sender {
	return &Sender{URL: url, Client: &http.Client{
		CheckRedirect: delivery.NoRedirect,
		Transport:     &http.Transport{MaxIdleConnsPerHost: 64},
	}}
}

// Send implements delivery.Sender.
func (s *Sender) Send(ctx context.Context, ev *event.SmsOtpNotificationEvent) delivery.Result {
	body, err := event.MarshalAsgardeo(ev)
	if err != nil {
		return delivery.Result{Reason: delivery.ReasonInvalid, Err: err}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return delivery.Result{Reason: delivery.ReasonInvalid, Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", ev.ID)
	resp, err := s.Client.Do(req)
	if err != nil {
		return delivery.ClassifyTransport(ctx, "webhook", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return delivery.ClassifyHTTP(resp.StatusCode, resp.Header, time.Now())
}

// Webhook returns a webhook Target named id whose sender posts to url;
// its endpoint (for the breaker and concurrency cap) is url.
func Webhook(id, url string) delivery.Target {
	return delivery.Target{Type: TypeWebhook, ID: id, Endpoint: url, Sender: NewSender(url), AtLeastOnce: true}
}

// The destination types of engine tests; a Resolver resolves them all.
const (
	TypeWebhook = "webhook"
	TypeTwilio  = "twilio"
	TypeVonage  = "vonage"
	TypeCustom  = "custom"
	TypeConsole = "console"
)

// Types lists the destination types of engine tests.
var Types = []string{TypeWebhook, TypeTwilio, TypeVonage, TypeCustom, TypeConsole}

// Resolver is a static Resolver: targets per org name, looked up by type
// and ID.
type Resolver struct {
	mu      sync.Mutex
	byOrg   map[string][]delivery.Target
	removed map[string]bool
}

// NewResolver returns an empty Resolver.
func NewResolver() *Resolver {
	return &Resolver{byOrg: map[string][]delivery.Target{}, removed: map[string]bool{}}
}

// Set replaces org's targets.
func (r *Resolver) Set(org string, targets ...delivery.Target) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byOrg[org] = targets
	for _, t := range targets {
		delete(r.removed, t.Type+"/"+t.ID)
	}
}

// Remove deletes the target of (destType, id) from every org: Lookup then
// answers store.ErrNotFound.
func (r *Resolver) Remove(destType, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for org, ts := range r.byOrg {
		var keep []delivery.Target
		for _, t := range ts {
			if t.Type != destType || t.ID != id {
				keep = append(keep, t)
			}
		}
		r.byOrg[org] = keep
	}
	r.removed[destType+"/"+id] = true
}

// Resolve implements delivery.Resolver.
func (r *Resolver) Resolve(_ context.Context, ev *event.SmsOtpNotificationEvent) ([]delivery.Target, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery.Target(nil), r.byOrg[ev.OrganizationName]...), nil
}

// Lookup implements delivery.Resolver.
func (r *Resolver) Lookup(_ context.Context, _ int64, destType, destID string) (delivery.Target, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.removed[destType+"/"+destID] {
		for _, ts := range r.byOrg {
			for _, t := range ts {
				if t.Type == destType && t.ID == destID {
					return t, nil
				}
				if t.Fallback != nil && t.Fallback.Type == destType && t.Fallback.ID == destID {
					return *t.Fallback, nil
				}
			}
		}
	}
	return delivery.Target{}, fmt.Errorf("%s %s: %w", destType, destID, store.ErrNotFound)
}

// Types implements delivery.Resolver.
func (r *Resolver) Types() []string { return Types }

// Issuer is the iss of NewEvent's events (with the jti, the idempotency key).
const Issuer = "https://otphub.test"

// NewEvent returns a valid event of org (orgID) issued now, expiring in ttl.
func NewEvent(org string, orgID int64, ttl time.Duration) *event.SmsOtpNotificationEvent {
	now := time.Now().UTC().Truncate(time.Millisecond)
	return &event.SmsOtpNotificationEvent{
		Issuer:           Issuer,
		ID:               uuid.NewString(),
		IssuedAt:         now,
		Audience:         event.TopicURL(Issuer, org),
		OrganizationID:   orgID,
		OrganizationName: org,
		SendTo:           "+94771234567",
		MessageBody:      "Your one-time password is 075052.",
		ExpiresAt:        now.Add(ttl),
	}
}

// Publish encodes evs in CloudEvents binary mode and publishes them to
// bus.NotificationsTopic.
func Publish(ctx context.Context, pub bus.Publisher, evs ...*event.SmsOtpNotificationEvent) error {
	msgs := make([]bus.Message, 0, len(evs))
	for _, ev := range evs {
		key, headers, value, err := event.EncodeBinary(ev)
		if err != nil {
			return err
		}
		msgs = append(msgs, bus.Message{Key: key, Headers: headers, Value: value})
	}
	return pub.Publish(ctx, bus.NotificationsTopic, msgs...)
}

// Eventually polls cond every few milliseconds until it holds or timeout
// passes, then fails the test with msg.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: "+msg, args...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
