package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/dispatcher/isolation"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/internal/ids"
	"github.com/otphub/otphub/store"
)

// This file is the one delivery pipeline. A first attempt (a job of a log
// message, made by the router) and a retry (a job of a leased task, made by
// the retry loop) go through the same steps, each in one place:
//
//	load      the event and its target: route (first attempts) or loadTask
//	          (retries); and, for a destination that must not receive a
//	          duplicate, whether its delivery is already on record (load)
//	gate      the endpoint's circuit, cap and queue (begin, refuse,
//	          deferral), then the OTP's expiry (expiryGate)
//	render    the Sender's: the body in the destination's format
//	sign      the Sender's: signatures, credentials
//	send      one attempt, bounded by AttemptTimeout (send)
//	classify  the RetryPolicy's decision, the end of a gone destination, the
//	          hand-over to a fallback (classify)
//	record    the outcome, durably (record): a first attempt inserts its
//	          task, a retry completes or defers its leased one
//
// Only load and record know which of the two a job is.

// begin acts on the gate's answer a for d: run it now (its slot is held),
// leave it queued (a Release hands it back), or refuse it.
func (e *Engine) begin(d *job, a isolation.Admission, retryAt time.Time) {
	switch a {
	case isolation.Run:
		e.work(d)
	case isolation.Queued:
	default:
		if fb := e.refuse(d, a, retryAt); fb != nil {
			e.work(e.admit(nil, fb)...)
		}
	}
}

// work runs deliveries that hold a slot of their endpoint, then the ones
// that queued behind them and any fallbacks they hand over to.
func (e *Engine) work(run ...*job) {
	for len(run) > 0 {
		d := run[len(run)-1]
		run = run[:len(run)-1]
		res, fb := e.process(d)
		next, ok, refused, retryAt := e.eps.Release(d.endpointKey(), d, outcomeOf(res))
		for ok && e.stopping.Err() != nil {
			// Shutting down: leave queued ones unacknowledged rather than start them.
			var more []*job
			next, ok, more, _ = e.eps.Release(next.endpointKey(), next, isolation.NoAttempt)
			refused = append(refused, more...)
		}
		if ok {
			run = append(run, next)
		}
		for _, r := range refused {
			if f := e.refuse(r, isolation.DenyOpen, retryAt); f != nil {
				run = e.admit(run, f)
			}
		}
		if fb != nil {
			run = e.admit(run, fb)
		}
	}
}

// admit passes d (a fallback, handed over) through its endpoint's gate: it
// joins run when it may go now, waits in the endpoint's queue, or is
// refused.
func (e *Engine) admit(run []*job, d *job) []*job {
	a, retryAt := e.eps.Admit(d.endpointKey(), d)
	switch a {
	case isolation.Run:
		return append(run, d)
	case isolation.Queued:
		return run
	}
	if f := e.refuse(d, a, retryAt); f != nil {
		return e.admit(run, f)
	}
	return run
}

// outcomeOf is what an attempt's result (nil: none was made) counts as
// for its endpoint's circuit.
func outcomeOf(res *delivery.Result) isolation.Outcome {
	switch {
	case res == nil:
		return isolation.NoAttempt
	case res.OK:
		return isolation.Success
	case res.Retry:
		return isolation.TransientFailure
	}
	return isolation.PermanentFailure
}

// refuse handles a delivery its endpoint's gate refused: circuit open
// (hand over to the fallback if there is one, else defer until the
// circuit half-opens) or endpoint busy (defer by a short delay). It
// returns the fallback delivery, if any.
func (e *Engine) refuse(d *job, a isolation.Admission, retryAt time.Time) *job {
	now := e.cfg.Now()
	if a != isolation.DenyOpen {
		r := delivery.Result{Err: errors.New("not attempted: endpoint at its concurrency cap")}
		return e.conclude(d, e.deferral(d, now.Add(e.busyDelay()), &r), nil, r, nil)
	}
	e.m.failures.WithLabelValues(e.m.dest(d.target.Type), string(delivery.ReasonCircuitOpen)).Inc()
	if d.target.Fallback != nil {
		fb := d.fallback()
		r := delivery.Result{Reason: delivery.ReasonCircuitOpen, Err: errors.New("not attempted: circuit open; handed over to the fallback")}
		return e.conclude(d, Decision{Status: store.DeliveryFailed, Outcome: OutcomePermanent}, nil, r, fb)
	}
	if retryAt.Before(now) {
		retryAt = now
	}
	r := delivery.Result{Reason: delivery.ReasonCircuitOpen, Err: errors.New("not attempted: circuit open")}
	return e.conclude(d, e.deferral(d, retryAt.Add(e.jitter()), &r), nil, r, nil)
}

// deferral is the decision for a delivery not attempted now: pending until
// at, or expired when at is not before its OTP's expiry (r, why it was not
// attempted, then says so too).
func (e *Engine) deferral(d *job, at time.Time, r *delivery.Result) Decision {
	if !at.Before(d.expiresAt()) {
		r.Err = fmt.Errorf("%w; the OTP expires before the endpoint can be tried again", r.Err)
		return Decision{Status: store.DeliveryExpired, Outcome: OutcomePermanent}
	}
	return Decision{Status: store.DeliveryPending, NextAttemptAt: at}
}

// process runs one delivery that holds its endpoint's slot through the
// steps after the endpoint's gate. res is the attempt's result, nil when
// no attempt was made; fb is the fallback delivery to hand over to, if any.
func (e *Engine) process(d *job) (res *delivery.Result, fb *job) {
	if !e.load(d) {
		return nil, nil
	}
	if r, ok := e.expiryGate(d); !ok {
		e.conclude(d, Decision{Status: store.DeliveryExpired, Outcome: OutcomePermanent}, nil, r, nil)
		return nil, nil
	}
	r, att := e.send(d)
	dec, fb := e.classify(d, r)
	att.Outcome = dec.Outcome
	e.m.attempts.WithLabelValues(e.m.dest(d.target.Type), att.Outcome).Inc()
	return &r, e.conclude(d, dec, &att, r, fb)
}

// load reports whether d is still to be sent: a provider message costs
// money and reaches a person, so a first attempt whose delivery is already
// on record (its message redelivered after a crash) is finished instead.
// A lookup failure leaves d's message unacknowledged.
func (e *Engine) load(d *job) bool {
	if d.task != nil || d.target.AtLeastOnce {
		return true
	}
	recorded, err := e.alreadyRecorded(d)
	switch {
	case err != nil:
		e.log.Warn("idempotency check failed; message left unacknowledged", "jti", d.ev.ID, "destination", d.target.Type, "err", err)
		return false
	case recorded:
		d.finish()
		return false
	}
	return true
}

// expiryGate lets no attempt through after the OTP's expiry.
func (e *Engine) expiryGate(d *job) (delivery.Result, bool) {
	if e.cfg.Now().After(d.expiresAt()) {
		return delivery.Result{Err: errors.New("not attempted: the OTP expired")}, false
	}
	return delivery.Result{}, true
}

// send makes the attempt (the Sender renders, signs and sends), bounded by
// AttemptTimeout, and builds its log entry.
func (e *Engine) send(d *job) (delivery.Result, store.DeliveryAttempt) {
	ctx, cancel := context.WithTimeout(e.workCtx, e.cfg.AttemptTimeout)
	defer cancel()
	start := e.cfg.Now()
	t0 := time.Now()
	var r delivery.Result
	if release, err := e.hosts.Acquire(ctx, d.hostKey()); err != nil {
		r = delivery.Result{Retry: true, Reason: delivery.ReasonTimeout, Err: errors.New("not sent: the host's concurrency cap stayed full for the attempt timeout")}
	} else {
		r = safeSend(ctx, d.target.Sender, d.ev)
		release()
	}
	dur := time.Since(t0)
	if !r.OK && r.Reason == delivery.ReasonNone {
		if r.Retry {
			r.Reason = delivery.ReasonServerError
		} else {
			r.Reason = delivery.ReasonClientError
		}
	}
	dest := e.m.dest(d.target.Type)
	e.m.attemptDuration.WithLabelValues(dest).Observe(dur.Seconds())
	att := store.DeliveryAttempt{Number: d.attempts() + 1, StartedAt: start, Duration: dur, StatusCode: r.StatusCode}
	if r.OK {
		e.m.latency.WithLabelValues(dest).Observe(max(0, e.cfg.Now().Sub(d.ev.IssuedAt).Seconds()))
	} else {
		att.Error = describe(r)
		e.m.failures.WithLabelValues(dest, string(r.Reason)).Inc()
	}
	return r, att
}

// safeSend calls s, turning a panic into a permanent failure of this one
// delivery rather than of the process.
func safeSend(ctx context.Context, s delivery.Sender, ev *event.SmsOtpNotificationEvent) (r delivery.Result) {
	if s == nil {
		return delivery.Result{Reason: delivery.ReasonInvalid, Err: errors.New("destination has no sender")}
	}
	defer func() {
		if p := recover(); p != nil {
			r = delivery.Result{Reason: delivery.ReasonInvalid, Err: fmt.Errorf("sender panicked: %v", p)}
		}
	}()
	return s.Send(ctx, ev)
}

func describe(r delivery.Result) string {
	msg := string(r.Reason)
	if r.StatusCode != 0 {
		msg = fmt.Sprintf("%s: HTTP %d", msg, r.StatusCode)
	}
	if r.Err != nil {
		msg += ": " + r.Err.Error()
	}
	return msg
}

// classify decides what follows the attempt's result r: the RetryPolicy's
// decision; a destination that answered it is gone for good is ended
// (OnGone); any other permanent failure but the org's SMS policy refusing
// the event hands over to the fallback.
func (e *Engine) classify(d *job, r delivery.Result) (Decision, *job) {
	dec := e.cfg.RetryPolicy.Decide(r, d.attempts()+1, e.cfg.Now(), d.expiresAt(), nil)
	switch {
	case r.Reason == delivery.ReasonGone:
		if d.target.OnGone != nil {
			ctx, cancel := context.WithTimeout(e.writeCtx, 10*time.Second)
			if err := d.target.OnGone(ctx); err != nil {
				e.log.Warn("ending a gone destination", "destination", d.target.Type, "id", d.target.ID, "err", err)
			}
			cancel()
		}
	case dec.Status == store.DeliveryFailed && r.Reason != delivery.ReasonPolicyRefused:
		return dec, d.fallback()
	}
	return dec, nil
}

// conclude records d's outcome and hands over to fb (a fallback delivery
// counted in d's log message): once the outcome is durable, d is finished
// and fb returned; otherwise fb's hold is given back and d's message stays
// unacknowledged.
func (e *Engine) conclude(d *job, dec Decision, att *store.DeliveryAttempt, r delivery.Result, fb *job) *job {
	if e.record(d, dec, att, r) {
		d.finish()
		if dec.Status == store.DeliveryDelivered && d.target.OnDelivered != nil {
			ctx, cancel := context.WithTimeout(e.writeCtx, 10*time.Second)
			d.target.OnDelivered(ctx, d.ev, r, d.expiresAt())
			cancel()
		}
		return fb
	}
	if fb != nil {
		d.finish() // the fallback's hold; the primary's keeps the message unacknowledged
	}
	return nil
}

// alreadyRecorded reports whether a task of d's (org, event, destination)
// exists: its delivery was made or is in the retry loop's hands. The org is
// part of the key: jtis come from publishers, and a provider destination's
// ID is its slot name, the same in every org.
func (e *Engine) alreadyRecorded(d *job) (bool, error) {
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
// successful first attempt of an at-least-once destination counts as soon
// as it is queued for writing: its record is not needed for correctness).
// A first attempt inserts its task; a retry completes its leased task, or
// defers it when it was not attempted and stays pending (not counted: its
// outcome has not changed).
func (e *Engine) record(d *job, dec Decision, att *store.DeliveryAttempt, r delivery.Result) bool {
	lastErr := ""
	if !r.OK {
		lastErr = describe(r)
		if r.Reason == delivery.ReasonNone && r.Err != nil {
			lastErr = r.Err.Error()
		}
	}
	var err error
	switch {
	case d.task == nil:
		err = e.insertTask(d, dec, att, r, lastErr)
	case att == nil && dec.Status == store.DeliveryPending:
		e.deferTask(d, dec.NextAttemptAt)
		return true
	default:
		err = e.completeTask(d, dec, att, r, lastErr)
	}
	if err != nil {
		if errors.Is(err, store.ErrPrecondition) {
			e.log.Warn("retry task lease lost; its new holder carries on", "task", d.task.ID)
		} else {
			e.log.Error("recording a delivery failed; it will be retried from the log or its lease", "jti", d.ev.ID, "destination", d.target.Type, "err", err)
		}
		return false
	}
	dest := e.m.dest(d.target.Type)
	e.m.deliveries.WithLabelValues(dest, deliveryOutcome(dec.Status)).Inc()
	if dec.Status == store.DeliveryPending {
		e.m.retriesScheduled.WithLabelValues(dest).Inc()
	}
	if dec.Status != store.DeliveryDelivered && dec.Status != store.DeliveryPending {
		e.log.Info("delivery ended", "jti", d.ev.ID, "destination", d.target.Type, "id", d.target.ID, "status", dec.Status, "error", lastErr)
	}
	return true
}

// insertTask records a first attempt's outcome as a new task.
func (e *Engine) insertTask(d *job, dec Decision, att *store.DeliveryAttempt, r delivery.Result, lastErr string) error {
	enc, err := d.enc.bytes()
	if err != nil {
		return err
	}
	now := e.cfg.Now()
	task := store.DeliveryTask{
		ID:              ids.Ordered(), // inserted in key order
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
	if dec.Status == store.DeliveryDelivered && d.target.AtLeastOnce {
		e.rec.add(task, atts)
		return nil
	}
	return e.durably("insert delivery task", func(ctx context.Context) error {
		return e.inserts.do(ctx, taskInsert{task, atts})
	})
}

// completeTask records the outcome of a leased task's attempt (or of its
// end without one: the attempt log says why it was not attempted).
func (e *Engine) completeTask(d *job, dec Decision, att *store.DeliveryAttempt, r delivery.Result, lastErr string) error {
	a := store.DeliveryAttempt{TaskID: d.task.ID, Number: d.task.Attempts + 1, StartedAt: e.cfg.Now(), Outcome: dec.Outcome, Error: lastErr}
	if att != nil {
		a = *att
		a.TaskID = d.task.ID
	}
	u := store.TaskUpdate{Status: dec.Status, NextAttemptAt: dec.NextAttemptAt, LastError: lastErr, LastStatusCode: r.StatusCode}
	return e.durably("complete attempt", func(ctx context.Context) error {
		return e.completions.do(ctx, store.AttemptCompletion{TaskID: d.task.ID, Attempt: a, Update: u})
	})
}

// deferTask postpones a leased task to at without counting an attempt.
func (e *Engine) deferTask(d *job, at time.Time) {
	err := e.durably("defer delivery", func(ctx context.Context) error {
		return e.st.DeferDelivery(ctx, d.task.ID, e.cfg.Owner, at)
	})
	if err != nil && !errors.Is(err, store.ErrPrecondition) {
		e.log.Warn("deferring a retry task failed; its lease will lapse", "task", d.task.ID, "err", err)
	}
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
