package dispatcher

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/store"
)

// RetryPolicy decides what follows a failed attempt: another attempt after
// a backoff (with jitter, honouring the destination's Retry-After within
// bounds), or the end of the delivery: expired (the next attempt would come
// after the OTP's expiry), dead (MaxAttempts reached) or failed (a
// permanent error).
type RetryPolicy struct {
	// Schedule is the backoff before attempt n+1 after attempt n fails
	// (Schedule[n-1]); its last entry repeats. Default 1s, 2s, 5s, 10s,
	// 30s, 60s.
	Schedule []time.Duration
	// MaxDelay caps any delay, Retry-After included. Default 5m.
	MaxDelay time.Duration
	// Jitter spreads each backoff uniformly by ±Jitter of itself, so a burst
	// of failures does not come back as a burst. Default 0.2; a negative
	// value disables jitter.
	Jitter float64
	// MaxAttempts is how many attempts a delivery gets before it is dead
	// (on the dead-letter list). Default 10. A task requeued by the replay
	// API starts a new round of MaxAttempts attempts.
	MaxAttempts int
	// MinRetryAfter and MaxRetryAfter bound a destination's Retry-After: a
	// shorter request waits MinRetryAfter, a longer one MaxRetryAfter.
	// Defaults 1s and 5m.
	MinRetryAfter time.Duration
	MaxRetryAfter time.Duration
}

// DefaultSchedule is the default backoff schedule.
var DefaultSchedule = []time.Duration{time.Second, 2 * time.Second, 5 * time.Second,
	10 * time.Second, 30 * time.Second, 60 * time.Second}

func (p *RetryPolicy) applyDefaults() {
	if len(p.Schedule) == 0 {
		p.Schedule = DefaultSchedule
	}
	setDefault(&p.MaxDelay, 5*time.Minute)
	if p.Jitter == 0 {
		p.Jitter = 0.2
	}
	setDefault(&p.MaxAttempts, DefaultMaxAttempts)
	setDefault(&p.MinRetryAfter, time.Second)
	setDefault(&p.MaxRetryAfter, 5*time.Minute)
}

// Validate reports a contradictory policy.
func (p RetryPolicy) Validate() error {
	for i, d := range p.Schedule {
		if d <= 0 {
			return fmt.Errorf("dispatcher: RetryPolicy.Schedule[%d] must be positive", i)
		}
	}
	switch {
	case p.MaxDelay < 0, p.MaxAttempts < 0, p.MinRetryAfter < 0, p.MaxRetryAfter < 0:
		return errors.New("dispatcher: RetryPolicy durations and MaxAttempts must not be negative")
	case p.Jitter >= 1:
		return errors.New("dispatcher: RetryPolicy.Jitter must be below 1")
	case p.MaxRetryAfter > 0 && p.MinRetryAfter > p.MaxRetryAfter:
		return errors.New("dispatcher: RetryPolicy.MinRetryAfter exceeds MaxRetryAfter")
	}
	return nil
}

// Backoff returns the delay after the attempts-th attempt of a round
// failed, jittered by rnd (a uniform value in [0,1); nil uses math/rand)
// and capped at MaxDelay. A retryAfter above zero replaces the schedule,
// bounded by MinRetryAfter and MaxRetryAfter.
func (p RetryPolicy) Backoff(attempts int, retryAfter time.Duration, rnd func() float64) time.Duration {
	var d time.Duration
	if retryAfter > 0 {
		d = min(max(retryAfter, p.MinRetryAfter), p.MaxRetryAfter)
	} else {
		i := min(max(attempts-1, 0), len(p.Schedule)-1)
		d = p.Schedule[i]
		if p.Jitter > 0 {
			if rnd == nil {
				rnd = rand.Float64
			}
			d = time.Duration(float64(d) * (1 + p.Jitter*(2*rnd()-1)))
		}
	}
	if p.MaxDelay > 0 && d > p.MaxDelay {
		d = p.MaxDelay
	}
	return d
}

// Attempt outcomes, as recorded in the attempt log and used as the outcome
// label of otphub_delivery_attempts_total.
const (
	OutcomeSuccess   = "success"
	OutcomeRetry     = "retry"
	OutcomePermanent = "permanent"
)

// Decision is what a RetryPolicy makes of an attempt's Result.
type Decision struct {
	// Status is the task's next status (store.Delivery*).
	Status string
	// NextAttemptAt is when to try again; set only when Status is pending.
	NextAttemptAt time.Time
	// Outcome classifies the attempt itself (Outcome*).
	Outcome string
}

// Decide classifies res, the result of a task's attempts-th attempt
// (counting every attempt the task ever had) made at now, for an OTP that
// expires at expiresAt.
//
// Attempts are never reset: a task requeued by the replay API keeps its
// attempt log, and MaxAttempts counts the attempts of the current round
// (the task is dead when attempts reaches a multiple of MaxAttempts).
func (p RetryPolicy) Decide(res delivery.Result, attempts int, now, expiresAt time.Time, rnd func() float64) Decision {
	switch {
	case res.OK:
		return Decision{Status: store.DeliveryDelivered, Outcome: OutcomeSuccess}
	case !res.Retry || res.Reason == delivery.ReasonGone:
		return Decision{Status: store.DeliveryFailed, Outcome: OutcomePermanent}
	}
	round := attempts
	if p.MaxAttempts > 0 {
		round = (attempts-1)%p.MaxAttempts + 1
		if round >= p.MaxAttempts {
			return Decision{Status: store.DeliveryDead, Outcome: OutcomeRetry}
		}
	}
	next := now.Add(p.Backoff(round, res.RetryAfter, rnd))
	if !expiresAt.IsZero() && next.After(expiresAt) {
		return Decision{Status: store.DeliveryExpired, Outcome: OutcomeRetry}
	}
	return Decision{Status: store.DeliveryPending, NextAttemptAt: next, Outcome: OutcomeRetry}
}
