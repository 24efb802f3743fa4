package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/otphub/otphub/delivery"
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

// retry runs a leased task through the pipeline: load, then its
// endpoint's gate, as a retry.
func (e *Engine) retry(task store.DeliveryTask) {
	d := e.loadTask(task)
	if d == nil {
		return
	}
	a, retryAt := e.eps.AdmitRetry(d.endpointKey(), d)
	e.begin(d, a, retryAt)
}

// loadTask is the load step of a retry: the task's event and its target
// rebuilt by the resolver of its type. A task that cannot be loaded is
// recorded (failed, or deferred when its resolver failed) and nil returned.
func (e *Engine) loadTask(task store.DeliveryTask) *job {
	d := &job{task: &task, target: delivery.Target{Type: task.DestinationType, ID: task.DestinationID}}
	ev, err := delivery.DecodeTaskEvent(task.Event)
	if err != nil {
		d.ev = &event.SmsOtpNotificationEvent{ID: task.EventID}
		e.record(d, Decision{Status: store.DeliveryFailed, Outcome: OutcomePermanent}, nil, delivery.Result{Reason: delivery.ReasonInvalid, Err: err})
		return nil
	}
	d.ev = ev
	d.enc = &encodedEvent{ev: ev}
	d.enc.once.Do(func() { d.enc.b = task.Event })

	target, err := e.lookup(task)
	switch {
	case errors.Is(err, store.ErrNotFound):
		e.record(d, Decision{Status: store.DeliveryFailed, Outcome: OutcomePermanent}, nil,
			delivery.Result{Err: fmt.Errorf("not attempted: destination removed (%v)", err)})
		return nil
	case err != nil:
		e.log.Warn("rebuilding a retry task's destination failed; deferred", "task", task.ID, "err", err)
		r := delivery.Result{Err: errors.New("not attempted: its destination could not be rebuilt")}
		e.record(d, e.deferral(d, e.cfg.Now().Add(e.cfg.RetryPolicy.Backoff(1, 0, nil)), &r), nil, r)
		return nil
	}
	d.target = target
	return d
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
