package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/dispatcher/isolation"
	"github.com/otphub/otphub/event"
)

// errConsumerClosed reports that the log consumer ended before Run's
// context did.
var errConsumerClosed = errors.New("dispatcher: the log consumer closed")

// routeLoop receives the log's messages and routes each until ctx is done.
func (e *Engine) routeLoop(ctx context.Context, cons bus.Consumer) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-cons.Messages():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errConsumerClosed
			}
			e.route(ctx, m)
		}
	}
}

// route decodes m, resolves its targets and dispatches a first attempt to
// each. m is acknowledged once every delivery is done or durably recorded;
// an undecodable record is copied to the dead-letter topic and
// acknowledged, so consumption goes on.
func (e *Engine) route(ctx context.Context, m *bus.Message) {
	// Records from other producers may leave out ce_time: issued on receipt.
	ev, err := event.DecodeBinaryAt(m.Key, m.Headers, m.Value, e.cfg.Now())
	if err != nil {
		e.log.Warn("undecodable record: dead-lettered", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", err)
		reason := err.Error()
		if err := e.durably("dead-letter", func(ctx context.Context) error {
			return bus.DeadLetter(ctx, e.pub, m, reason)
		}); err != nil {
			return // shutting down: left unacknowledged
		}
		e.m.undecodable.Inc()
		m.Ack()
		return
	}
	if !m.Time.IsZero() {
		// Wall-clock time against the log's append time (in Kafka the
		// producer's clock): both are real time, not the injectable Now.
		now := time.Now()
		wait := max(0, now.Sub(m.Time))
		e.waits.observe(ev.OrganizationID, wait, now)
		e.m.logWait.Observe(wait.Seconds())
	}
	targets, err := e.resolve(ctx, ev)
	if err != nil {
		return // shutting down: left unacknowledged
	}
	targets = restrict(targets, ev.Destination)
	t := newTracker(m)
	enc := &encodedEvent{ev: ev}
	for _, target := range targets {
		t.add()
		if !e.dispatchFirst(ctx, &job{ev: ev, enc: enc, target: target, msg: t}) {
			return // shutting down: left unacknowledged
		}
	}
	t.done()
}

// restrict keeps, of an event restricted to one destination (dest set,
// event.Destination), only that target, without its fallback: a test
// event to one webhook reaches no other subscription and no SMS provider.
// An unrestricted event (dest empty) keeps them all.
func restrict(targets []delivery.Target, dest string) []delivery.Target {
	if dest == "" {
		return targets
	}
	for _, t := range targets {
		if event.Destination(t.Type, t.ID) == dest {
			t.Fallback = nil
			return []delivery.Target{t}
		}
	}
	return nil
}

// resolve asks every resolver for ev's targets. A resolver error (the
// store unreachable) is retried with backoff until ctx is done: the message
// cannot be skipped, and later ones would fail alike.
func (e *Engine) resolve(ctx context.Context, ev *event.SmsOtpNotificationEvent) ([]delivery.Target, error) {
	delay := 100 * time.Millisecond
	for {
		var all []delivery.Target
		var err error
		for _, r := range e.resolvers {
			ts, rerr := r.Resolve(ctx, ev)
			if rerr != nil {
				err = fmt.Errorf("resolve destinations: %w", rerr)
				break
			}
			all = append(all, ts...)
		}
		if err == nil {
			return all, nil
		}
		e.log.Warn("resolving destinations failed; retrying", "jti", ev.ID, "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// dispatchFirst starts d's first attempt: it waits for one of the Workers
// slots (global back-pressure), then passes d through its endpoint's gate:
// d runs, queues in the endpoint's bounded queue, or is refused and becomes
// a durable retry task at once. Only for a fast, healthy endpoint whose
// queue is full does the gate wait, briefly, for room (AdmitWait): the
// event then waits in the log, which is already a durable ordered queue,
// rather than as a store write. It reports false when ctx ended first.
func (e *Engine) dispatchFirst(ctx context.Context, d *job) bool {
	select {
	case e.firstSlots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	a, retryAt := e.eps.AdmitWait(ctx, d.endpointKey(), d)
	if ctx.Err() != nil && a == isolation.DenyBusy {
		<-e.firstSlots
		return false
	}
	if a == isolation.Queued {
		<-e.firstSlots
		return true
	}
	e.inflight.Add(1)
	go func() {
		defer e.inflight.Done()
		defer func() { <-e.firstSlots }()
		e.begin(d, a, retryAt)
	}()
	return true
}
