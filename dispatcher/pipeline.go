package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
)

// This file is the one delivery pipeline, shared by first attempts (from the
// log) and retries (from the task table):
//
//	load → gate → send (the Sender renders and signs) → classify → record
//
// A first attempt has no task yet: record inserts one (the durable retry
// task, or the record of its outcome). A retry holds a leased task: record
// completes its attempt.

// delivery is one event on its way to one target.
type delivery struct {
	ev     *event.SmsOtpNotificationEvent
	enc    *encodedEvent
	target Target
	task   *store.DeliveryTask // the leased task of a retry; nil for a first attempt
	msg    *tracker            // the log message of a first attempt; nil for a retry
	probe  bool                // this attempt is its circuit's half-open probe
	// expires is the expiry bound a fallback inherits from its primary (a
	// replayed primary's is later than the OTP's); zero: the event's own.
	expires time.Time
}

func (d *delivery) endpointKey() string {
	if d.target.Endpoint != "" {
		return d.target.Endpoint
	}
	return d.target.Type + ":" + d.target.ID
}

// finish marks a first attempt done (delivered or durably recorded).
func (d *delivery) finish() {
	if d.msg != nil {
		d.msg.done()
	}
}

// fallback returns the delivery of ev to the target's fallback, counted in
// the same log message (before the primary finishes, so the message cannot
// be acknowledged in between). It is bounded by the primary's expiry: a
// retry or replay of the primary moved it to now + ReplayWindow, and its
// fallback must not end expired on the OTP's original one.
func (d *delivery) fallback() *delivery {
	if d.target.Fallback == nil {
		return nil
	}
	if d.msg != nil {
		d.msg.add()
	}
	return &delivery{ev: d.ev, enc: d.enc, target: *d.target.Fallback, msg: d.msg, expires: d.expiresAt()}
}

// tracker acknowledges a log message once every delivery of it is done.
type tracker struct {
	msg     *bus.Message
	pending atomic.Int64
}

func newTracker(m *bus.Message) *tracker {
	t := &tracker{msg: m}
	t.pending.Store(1) // the router's own hold, released once every target is dispatched
	return t
}

func (t *tracker) add() { t.pending.Add(1) }

func (t *tracker) done() {
	if t.pending.Add(-1) == 0 {
		t.msg.Ack()
	}
}

// encodedEvent is the task encoding of an event, computed at most once and
// shared by the event's targets.
type encodedEvent struct {
	once sync.Once
	ev   *event.SmsOtpNotificationEvent
	b    []byte
	err  error
}

func (x *encodedEvent) bytes() ([]byte, error) {
	x.once.Do(func() { x.b, x.err = encodeTaskEvent(x.ev) })
	return x.b, x.err
}

// work runs deliveries that hold a slot of their endpoint, then the first
// attempts that queued behind them and any fallbacks they hand over to.
func (e *Engine) work(run ...*delivery) {
	for len(run) > 0 {
		d := run[len(run)-1]
		run = run[:len(run)-1]
		res, fb := e.process(d)
		next, refused, retryAt := e.eps.release(d.endpointKey(), d, res)
		for next != nil && e.stopping.Err() != nil {
			// Shutting down: leave queued ones unacknowledged rather than start them.
			var more []*delivery
			next, more, _ = e.eps.release(next.endpointKey(), next, nil)
			refused = append(refused, more...)
		}
		if next != nil {
			run = append(run, next)
		}
		for _, r := range refused {
			if f := e.refuse(r, denyOpen, retryAt); f != nil {
				run = e.admit(run, f)
			}
		}
		if fb != nil {
			run = e.admit(run, fb)
		}
	}
}

// admit passes a first attempt d through its endpoint's gate: it joins run
// when it may go now, waits in the endpoint's queue, or is refused.
func (e *Engine) admit(run []*delivery, d *delivery) []*delivery {
	a, retryAt := e.eps.admit(d.endpointKey(), d)
	switch a {
	case admitRun:
		return append(run, d)
	case admitQueued:
		return run
	}
	if f := e.refuse(d, a, retryAt); f != nil {
		return e.admit(run, f)
	}
	return run
}

// process runs one delivery through the pipeline. res is the attempt's
// result, nil when no attempt was made; fb is the fallback delivery to
// hand over to, if any.
func (e *Engine) process(d *delivery) (res *Result, fb *delivery) {
	// load: a provider message costs money, so a first attempt whose
	// delivery is already on record (redelivered after a crash) is skipped.
	if d.task == nil && d.target.Type != TypeWebhook {
		recorded, err := e.alreadyRecorded(d)
		if err != nil {
			e.log.Warn("idempotency check failed; message left unacknowledged", "jti", d.ev.ID, "destination", d.target.Type, "err", err)
			return nil, nil
		}
		if recorded {
			d.finish()
			return nil, nil
		}
	}

	// gate: no attempt after the OTP's expiry.
	now := e.cfg.Now()
	if expires := d.expiresAt(); now.After(expires) {
		dec := Decision{Status: store.DeliveryExpired, Outcome: OutcomePermanent}
		if e.record(d, dec, nil, Result{Err: errors.New("not attempted: the OTP expired")}) {
			d.finish()
		}
		return nil, nil
	}

	// send (the Sender renders and signs).
	r, att := e.send(d)

	// classify.
	dec := e.cfg.RetryPolicy.Decide(r, d.attempts()+1, e.cfg.Now(), d.expiresAt(), nil)
	if r.Reason == ReasonGone && d.target.OnGone != nil {
		ctx, cancel := context.WithTimeout(e.writeCtx, 10*time.Second)
		if err := d.target.OnGone(ctx); err != nil {
			e.log.Warn("ending a gone destination", "destination", d.target.Type, "id", d.target.ID, "err", err)
		}
		cancel()
	}
	if dec.Status == store.DeliveryFailed && r.Reason != ReasonGone {
		fb = d.fallback()
	}

	// record.
	if e.record(d, dec, &att, r) {
		d.finish()
	} else if fb != nil {
		fb = nil
		d.finish() // undo the fallback's hold; the primary's keeps the message unacknowledged
	}
	return &r, fb
}

// send makes the attempt, bounded by AttemptTimeout, and builds its log entry.
func (e *Engine) send(d *delivery) (Result, store.DeliveryAttempt) {
	ctx, cancel := context.WithTimeout(e.workCtx, e.cfg.AttemptTimeout)
	defer cancel()
	start := e.cfg.Now()
	t0 := time.Now()
	r := safeSend(ctx, d.target.Sender, d.ev)
	dur := time.Since(t0)
	if !r.OK && r.Reason == ReasonNone {
		if r.Retry {
			r.Reason = ReasonServerError
		} else {
			r.Reason = ReasonClientError
		}
	}
	dest := destLabel(d.target.Type)
	e.m.attemptDuration.WithLabelValues(dest).Observe(dur.Seconds())
	att := store.DeliveryAttempt{Number: d.attempts() + 1, StartedAt: start, Duration: dur, StatusCode: r.StatusCode}
	switch {
	case r.OK:
		att.Outcome = OutcomeSuccess
		e.m.latency.WithLabelValues(dest).Observe(max(0, e.cfg.Now().Sub(d.ev.IssuedAt).Seconds()))
	case r.Retry && r.Reason != ReasonGone:
		att.Outcome = OutcomeRetry
	default:
		att.Outcome = OutcomePermanent
	}
	if !r.OK {
		att.Error = describe(r)
		e.m.failures.WithLabelValues(dest, string(r.Reason)).Inc()
	}
	e.m.attempts.WithLabelValues(dest, att.Outcome).Inc()
	return r, att
}

// safeSend calls s, turning a panic into a permanent failure of this one
// delivery rather than of the process.
func safeSend(ctx context.Context, s Sender, ev *event.SmsOtpNotificationEvent) (r Result) {
	if s == nil {
		return Result{Reason: ReasonInvalid, Err: errors.New("destination has no sender")}
	}
	defer func() {
		if p := recover(); p != nil {
			r = Result{Reason: ReasonInvalid, Err: fmt.Errorf("sender panicked: %v", p)}
		}
	}()
	return s.Send(ctx, ev)
}

func describe(r Result) string {
	msg := string(r.Reason)
	if r.StatusCode != 0 {
		msg = fmt.Sprintf("%s: HTTP %d", msg, r.StatusCode)
	}
	if r.Err != nil {
		msg += ": " + r.Err.Error()
	}
	return msg
}

func (d *delivery) attempts() int {
	if d.task != nil {
		return d.task.Attempts
	}
	return 0
}

func (d *delivery) expiresAt() time.Time {
	if d.task != nil && !d.task.ExpiresAt.IsZero() {
		return d.task.ExpiresAt
	}
	if !d.expires.IsZero() {
		return d.expires
	}
	return d.ev.Expiry()
}

// alreadyRecorded reports whether a task of d's (org, event, destination)
// exists: its delivery was made or is in the retry loop's hands. The org is
// part of the key: jtis come from publishers, and a provider destination's
// ID is its slot name, the same in every org.
func (e *Engine) alreadyRecorded(d *delivery) (bool, error) {
	var found bool
	err := e.durably("find delivery", func(ctx context.Context) error {
		_, err := e.st.FindDelivery(ctx, d.ev.OrganizationID, d.ev.Issuer, d.ev.ID, d.target.Type, d.target.ID)
		found = err == nil
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return found, err
}

// record writes the outcome dec of d's attempt att (nil when none was
// made) and counts it. It reports whether the outcome is durable (a
// successful webhook first attempt counts as soon as it is queued for
// writing: its record is not needed for correctness).
func (e *Engine) record(d *delivery, dec Decision, att *store.DeliveryAttempt, r Result) bool {
	now := e.cfg.Now()
	lastErr := ""
	if !r.OK {
		lastErr = describe(r)
		if r.Reason == ReasonNone && r.Err != nil {
			lastErr = r.Err.Error()
		}
	}
	var err error
	if d.task != nil {
		a := store.DeliveryAttempt{TaskID: d.task.ID, Number: d.task.Attempts + 1, StartedAt: now, Outcome: dec.Outcome, Error: lastErr}
		if att != nil {
			a = *att
			a.TaskID = d.task.ID
		}
		u := store.TaskUpdate{Status: dec.Status, NextAttemptAt: dec.NextAttemptAt, LastError: lastErr, LastStatusCode: r.StatusCode}
		err = e.durably("complete attempt", func(ctx context.Context) error {
			return e.completions.do(ctx, store.AttemptCompletion{TaskID: d.task.ID, Attempt: a, Update: u})
		})
	} else {
		var enc []byte
		enc, err = d.enc.bytes()
		if err == nil {
			task := store.DeliveryTask{
				ID:              newTaskID(),
				OrgID:           d.ev.OrganizationID,
				EventSource:     d.ev.Issuer,
				EventID:         d.ev.ID,
				DestinationType: d.target.Type,
				DestinationID:   d.target.ID,
				Event:           enc,
				Status:          dec.Status,
				NextAttemptAt:   dec.NextAttemptAt,
				ExpiresAt:       d.expiresAt(),
				LastError:       lastErr,
				LastStatusCode:  r.StatusCode,
				CreatedAt:       now,
				UpdatedAt:       now,
			}
			var atts []store.DeliveryAttempt
			if att != nil {
				a := *att
				a.TaskID = task.ID
				atts = append(atts, a)
				task.Attempts = 1
			}
			if dec.Status == store.DeliveryDelivered && d.target.Type == TypeWebhook {
				e.rec.add(task, atts)
			} else {
				err = e.durably("insert delivery task", func(ctx context.Context) error {
					_, err := e.st.InsertDeliveryTasks(ctx, []store.DeliveryTask{task}, atts)
					return err
				})
			}
		}
	}
	if err != nil {
		if errors.Is(err, store.ErrPrecondition) {
			e.log.Warn("retry task lease lost; its new holder carries on", "task", d.task.ID)
		} else {
			e.log.Error("recording a delivery failed; it will be retried from the log or its lease", "jti", d.ev.ID, "destination", d.target.Type, "err", err)
		}
		return false
	}
	dest := destLabel(d.target.Type)
	e.m.deliveries.WithLabelValues(dest, deliveryOutcome(dec.Status)).Inc()
	if dec.Status == store.DeliveryPending {
		e.m.retriesScheduled.WithLabelValues(dest).Inc()
	}
	if dec.Status != store.DeliveryDelivered && dec.Status != store.DeliveryPending {
		e.log.Info("delivery ended", "jti", d.ev.ID, "destination", d.target.Type, "id", d.target.ID, "status", dec.Status, "error", lastErr)
	}
	return true
}

// refuse handles a first attempt its endpoint's gate refused: circuit open
// (hand over to the fallback if there is one, else a retry task due when
// the circuit half-opens) or endpoint busy (a retry task due after the
// first backoff step). It returns the fallback delivery, if any.
func (e *Engine) refuse(d *delivery, a admission, retryAt time.Time) *delivery {
	now := e.cfg.Now()
	var r Result
	var dec Decision
	var fb *delivery
	switch {
	case a == denyOpen && d.target.Fallback != nil:
		fb = d.fallback()
		r = Result{Reason: ReasonCircuitOpen, Err: errors.New("not attempted: circuit open; handed over to the fallback")}
		dec = Decision{Status: store.DeliveryFailed, Outcome: OutcomePermanent}
	case a == denyOpen:
		r = Result{Reason: ReasonCircuitOpen, Err: errors.New("not attempted: circuit open")}
		if retryAt.Before(now) {
			retryAt = now
		}
		dec = Decision{Status: store.DeliveryPending, NextAttemptAt: retryAt.Add(e.jitter())}
	default:
		r = Result{Err: errors.New("not attempted: endpoint at its concurrency cap")}
		dec = Decision{Status: store.DeliveryPending, NextAttemptAt: now.Add(e.busyDelay())}
	}
	if r.Reason == ReasonCircuitOpen {
		e.m.failures.WithLabelValues(destLabel(d.target.Type), string(ReasonCircuitOpen)).Inc()
	}
	if dec.Status == store.DeliveryPending && !dec.NextAttemptAt.Before(d.expiresAt()) {
		dec = Decision{Status: store.DeliveryExpired, Outcome: OutcomePermanent}
	}
	if e.record(d, dec, nil, r) {
		d.finish()
		return fb
	}
	if fb != nil {
		d.finish() // undo the fallback's hold; the primary's keeps the message unacknowledged
	}
	return nil
}

// busyDelay is how long a delivery refused by a busy endpoint waits: a
// slot frees as soon as an attempt ends, so not the whole first backoff.
func (e *Engine) busyDelay() time.Duration {
	return min(e.cfg.RetryPolicy.Backoff(1, 0, nil), time.Second) + e.jitter()
}

// jitter spreads deferred tasks over a quarter of a second, so a circuit
// that half-opens is not met by all of them at once.
func (e *Engine) jitter() time.Duration {
	return time.Duration(rand.Int64N(int64(250 * time.Millisecond)))
}

// newTaskID returns a time-ordered UUID (version 7): tasks are inserted in
// ID order, so the store's primary-key index grows at its right edge instead
// of dirtying pages all over it.
func newTaskID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}
