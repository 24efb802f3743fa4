package dispatcher

import (
	"context"
	"time"

	"github.com/otphub/otphub/store"
)

// recorder writes the records of successful webhook first attempts in
// batches, off the hot path. These records feed the deliveries API only:
// the message is acknowledged once the record is queued, and a crash that
// loses a queued record loses no delivery (the event was delivered). Every
// other outcome (retry tasks, failures, provider deliveries, which must not
// be sent twice) is written synchronously before its message is
// acknowledged.
type recorder struct {
	e  *Engine
	ch chan recItem
}

type recItem struct {
	task     store.DeliveryTask
	attempts []store.DeliveryAttempt
}

func newRecorder(e *Engine) *recorder {
	return &recorder{e: e, ch: make(chan recItem, 4*e.cfg.RecordBatch)}
}

// add queues a record; it waits when the queue is full (back-pressure on
// the workers rather than unbounded memory).
func (r *recorder) add(task store.DeliveryTask, attempts []store.DeliveryAttempt) {
	select {
	case r.ch <- recItem{task, attempts}:
	case <-r.e.writeCtx.Done():
	}
}

// close ends run after it has written what was queued.
func (r *recorder) close() { close(r.ch) }

func (r *recorder) run() {
	batch := make([]recItem, 0, r.e.cfg.RecordBatch)
	timer := time.NewTimer(r.e.cfg.RecordInterval)
	defer timer.Stop()
	for {
		select {
		case it, ok := <-r.ch:
			if !ok {
				r.flush(batch)
				return
			}
			batch = append(batch, it)
			if len(batch) >= r.e.cfg.RecordBatch {
				r.flush(batch)
				batch = batch[:0]
			}
		case <-timer.C:
			r.flush(batch)
			batch = batch[:0]
			timer.Reset(r.e.cfg.RecordInterval)
		}
	}
}

func (r *recorder) flush(batch []recItem) {
	if len(batch) == 0 {
		return
	}
	tasks := make([]store.DeliveryTask, 0, len(batch))
	var atts []store.DeliveryAttempt
	for _, it := range batch {
		tasks = append(tasks, it.task)
		atts = append(atts, it.attempts...)
	}
	err := r.e.durably("record delivered", func(ctx context.Context) error {
		_, err := r.e.st.InsertDeliveryTasks(ctx, tasks, atts)
		return err
	})
	if err != nil {
		r.e.log.Warn("records of delivered webhooks lost (the deliveries were made)", "count", len(tasks), "err", err)
	}
}
