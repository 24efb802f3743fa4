package dispatcher_test

import (
	"errors"
	"testing"
	"time"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/dispatcher"
	"github.com/otphub/otphub/store"
)

func TestBackoffScheduleAndJitter(t *testing.T) {
	p := testPolicy()
	mid := func() float64 { return 0.5 }
	low := func() float64 { return 0 }
	high := func() float64 { return 0.999999 }
	for attempts, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 5 * time.Second,
		4: 10 * time.Second, 5: 30 * time.Second, 6: time.Minute, 7: time.Minute, 50: time.Minute} {
		if got := p.Backoff(attempts, 0, mid); got != want {
			t.Errorf("attempt %d: %v, want %v", attempts, got, want)
		}
		lo, hi := p.Backoff(attempts, 0, low), p.Backoff(attempts, 0, high)
		if lo != time.Duration(float64(want)*0.8) || hi < time.Duration(float64(want)*1.19) || hi > time.Duration(float64(want)*1.2) {
			t.Errorf("attempt %d: jitter range [%v, %v] for %v", attempts, lo, hi, want)
		}
	}
	// Real randomness stays within ±20%.
	for range 1000 {
		d := p.Backoff(3, 0, nil)
		if d < 4*time.Second || d > 6*time.Second {
			t.Fatalf("jittered 5s backoff = %v", d)
		}
	}
	// Retry-After replaces the schedule within its bounds; MaxDelay caps all.
	if got := p.Backoff(1, 30*time.Second, mid); got != 30*time.Second {
		t.Errorf("Retry-After 30s: %v", got)
	}
	if got := p.Backoff(1, time.Millisecond, mid); got != time.Second {
		t.Errorf("Retry-After 1ms: %v, want MinRetryAfter", got)
	}
	if got := p.Backoff(1, time.Hour, mid); got != 2*time.Minute {
		t.Errorf("Retry-After 1h: %v, want MaxRetryAfter", got)
	}
	p.MaxDelay = 3 * time.Second
	if got := p.Backoff(6, 0, mid); got != 3*time.Second {
		t.Errorf("capped: %v", got)
	}
}

func TestDecideTable(t *testing.T) {
	p := testPolicy()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	mid := func() float64 { return 0.5 }
	far := now.Add(time.Hour)
	retryable := delivery.Result{Retry: true, Reason: delivery.ReasonServerError, StatusCode: 500}
	for _, tc := range []struct {
		name     string
		res      delivery.Result
		attempts int
		expires  time.Time
		status   string
		outcome  string
		next     time.Duration
	}{
		{"success", delivery.Result{OK: true, StatusCode: 204}, 1, far, store.DeliveryDelivered, dispatcher.OutcomeSuccess, 0},
		{"success after retries", delivery.Result{OK: true}, 9, far, store.DeliveryDelivered, dispatcher.OutcomeSuccess, 0},
		{"first failure", retryable, 1, far, store.DeliveryPending, dispatcher.OutcomeRetry, time.Second},
		{"third failure", retryable, 3, far, store.DeliveryPending, dispatcher.OutcomeRetry, 5 * time.Second},
		{"ninth failure", retryable, 9, far, store.DeliveryPending, dispatcher.OutcomeRetry, time.Minute},
		{"tenth failure: dead", retryable, 10, far, store.DeliveryDead, dispatcher.OutcomeRetry, 0},
		{"replayed round, first failure", retryable, 11, far, store.DeliveryPending, dispatcher.OutcomeRetry, time.Second},
		{"replayed round, last failure", retryable, 20, far, store.DeliveryDead, dispatcher.OutcomeRetry, 0},
		{"next attempt after expiry", retryable, 5, now.Add(10 * time.Second), store.DeliveryExpired, dispatcher.OutcomeRetry, 0},
		{"next attempt exactly at expiry", retryable, 1, now.Add(time.Second), store.DeliveryPending, dispatcher.OutcomeRetry, time.Second},
		{"unknown expiry", retryable, 1, time.Time{}, store.DeliveryPending, dispatcher.OutcomeRetry, time.Second},
		{"permanent", delivery.Result{Reason: delivery.ReasonClientError, StatusCode: 400}, 1, far, store.DeliveryFailed, dispatcher.OutcomePermanent, 0},
		{"gone even if marked retryable", delivery.Result{Retry: true, Reason: delivery.ReasonGone, StatusCode: 410}, 1, far, store.DeliveryFailed, dispatcher.OutcomePermanent, 0},
		{"rate limited with Retry-After", delivery.Result{Retry: true, Reason: delivery.ReasonRateLimited, RetryAfter: 45 * time.Second}, 1, far, store.DeliveryPending, dispatcher.OutcomeRetry, 45 * time.Second},
		{"Retry-After past expiry", delivery.Result{Retry: true, Reason: delivery.ReasonRateLimited, RetryAfter: time.Hour}, 1, now.Add(time.Minute), store.DeliveryExpired, dispatcher.OutcomeRetry, 0},
		{"timeout", delivery.Result{Retry: true, Reason: delivery.ReasonTimeout, Err: errors.New("deadline")}, 2, far, store.DeliveryPending, dispatcher.OutcomeRetry, 2 * time.Second},
	} {
		d := p.Decide(tc.res, tc.attempts, now, tc.expires, mid)
		if d.Status != tc.status || d.Outcome != tc.outcome {
			t.Errorf("%s: %s/%s, want %s/%s", tc.name, d.Status, d.Outcome, tc.status, tc.outcome)
		}
		var wantNext time.Time
		if tc.status == store.DeliveryPending {
			wantNext = now.Add(tc.next)
		}
		if !d.NextAttemptAt.Equal(wantNext) {
			t.Errorf("%s: next %v, want %v", tc.name, d.NextAttemptAt, wantNext)
		}
	}
}

func BenchmarkRetryPolicy(b *testing.B) {
	p := testPolicy()
	now := time.Now()
	res := delivery.Result{Retry: true, Reason: delivery.ReasonServerError}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = p.Decide(res, i%12+1, now, now.Add(5*time.Minute), nil)
	}
}

func testPolicy() dispatcher.RetryPolicy {
	return dispatcher.RetryPolicy{
		Schedule:      []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, 60 * time.Second},
		MaxDelay:      5 * time.Minute,
		Jitter:        0.2,
		MaxAttempts:   10,
		MinRetryAfter: time.Second,
		MaxRetryAfter: 2 * time.Minute,
	}
}
