package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/dispatcher/isolation"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
)

// retryLoop leases due retry tasks, as many as it has free retry workers,
// and runs each through the pipeline. Retries have their own workers, so a
// backlog of them never delays a first attempt.
func (e *Engine) retryLoop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		leased, free := e.leaseDue(ctx)
		if leased > 0 && leased == free {
			timer.Reset(0) // more may be due
		} else {
			timer.Reset(e.cfg.RetryPollInterval)
		}
	}
}

func (e *Engine) leaseDue(ctx context.Context) (leased, free int) {
	free = cap(e.retrySlots) - len(e.retrySlots) // only this loop takes slots: a lower bound
	if free == 0 {
		return 0, 0
	}
	tasks, err := e.st.LeaseDueTasks(ctx, e.cfg.Owner, e.cfg.Now(), e.cfg.LeaseDuration, free)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("leasing due retry tasks", "err", err)
		}
		return 0, free
	}
	for _, task := range tasks {
		e.retrySlots <- struct{}{}
		e.inflight.Add(1)
		go func() {
			defer e.inflight.Done()
			defer func() { <-e.retrySlots }()
			e.retry(task)
		}()
	}
	return len(tasks), free
}

// retry runs a leased task: load (decode its event, rebuild its target),
// gate (its endpoint's circuit, concurrency cap and queue), then the
// pipeline.
func (e *Engine) retry(task store.DeliveryTask) {
	d := &job{task: &task, target: delivery.Target{Type: task.DestinationType, ID: task.DestinationID}}
	ev, err := decodeTaskEvent(task.Event)
	if err != nil {
		d.ev = &event.SmsOtpNotificationEvent{ID: task.EventID}
		e.record(d, Decision{Status: store.DeliveryFailed, Outcome: OutcomePermanent}, nil, delivery.Result{Reason: delivery.ReasonInvalid, Err: err})
		return
	}
	d.ev = ev
	d.enc = &encodedEvent{ev: ev}
	d.enc.once.Do(func() { d.enc.b = task.Event })

	target, err := e.lookup(task)
	switch {
	case errors.Is(err, store.ErrNotFound):
		e.record(d, Decision{Status: store.DeliveryFailed, Outcome: OutcomePermanent}, nil,
			delivery.Result{Err: fmt.Errorf("not attempted: destination removed (%v)", err)})
		return
	case err != nil:
		e.log.Warn("rebuilding a retry task's destination failed; deferred", "task", task.ID, "err", err)
		e.deferTask(d, e.cfg.Now().Add(e.cfg.RetryPolicy.Backoff(1, 0, nil)))
		return
	}
	d.target = target

	a, retryAt := e.eps.AdmitRetry(d.endpointKey(), d)
	if a == isolation.DenyOpen {
		// Counted as on a first attempt's refusal, handed over or deferred.
		e.m.failures.WithLabelValues(e.m.dest(target.Type), string(delivery.ReasonCircuitOpen)).Inc()
	}
	switch {
	case a == isolation.Run:
		e.work(d)
	case a == isolation.Queued:
		// It runs, still leased, when the endpoint frees a slot.
	case a == isolation.DenyOpen && target.Fallback != nil:
		fb := d.fallback()
		if e.record(d, Decision{Status: store.DeliveryFailed, Outcome: OutcomePermanent}, nil,
			delivery.Result{Reason: delivery.ReasonCircuitOpen, Err: errors.New("not attempted: circuit open; handed over to the fallback")}) {
			e.work(e.admit(nil, fb)...)
		}
	case a == isolation.DenyOpen:
		e.deferTask(d, retryAt.Add(e.jitter()))
	default:
		e.deferTask(d, e.cfg.Now().Add(e.busyDelay()))
	}
}

// deferTask postpones a leased task to at without counting an attempt, or
// ends it as expired when at is past its OTP's expiry.
func (e *Engine) deferTask(d *job, at time.Time) {
	if !at.Before(d.expiresAt()) {
		e.record(d, Decision{Status: store.DeliveryExpired, Outcome: OutcomePermanent}, nil,
			delivery.Result{Err: errors.New("not attempted: the OTP expires before the endpoint can be tried again")})
		return
	}
	err := e.durably("defer delivery", func(ctx context.Context) error {
		return e.st.DeferDelivery(ctx, d.task.ID, e.cfg.Owner, at)
	})
	if err != nil && !errors.Is(err, store.ErrPrecondition) {
		e.log.Warn("deferring a retry task failed; its lease will lapse", "task", d.task.ID, "err", err)
	}
}

// lookup rebuilds the target a task names with the resolver of its type.
func (e *Engine) lookup(task store.DeliveryTask) (delivery.Target, error) {
	ctx, cancel := context.WithTimeout(e.workCtx, e.cfg.AttemptTimeout)
	defer cancel()
	r, ok := e.byType[task.DestinationType]
	if !ok {
		return delivery.Target{}, fmt.Errorf("%w: no resolver knows destination type %q", store.ErrNotFound, task.DestinationType)
	}
	return r.Lookup(ctx, task.OrgID, task.DestinationType, task.DestinationID)
}
