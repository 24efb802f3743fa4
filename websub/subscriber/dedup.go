package subscriber

import (
	"sync"
	"time"
)

type seen int

const (
	seenNew seen = iota
	seenInFlight
	seenDone
)

// dedup remembers the jtis handled within a window (at most capacity of
// them, the oldest forgotten first) and the ones being handled now. Only a
// handled event is remembered: a failed one must reach the handler again
// when the hub retries it.
type dedup struct {
	window   time.Duration // negative: disabled
	capacity int
	now      func() time.Time

	mu       sync.Mutex
	handled  map[string]struct{}
	order    []dedupEntry // handled entries, oldest first
	inFlight map[string]struct{}
}

type dedupEntry struct {
	id string
	at time.Time
}

func newDedup(window time.Duration, capacity int, now func() time.Time) *dedup {
	return &dedup{window: window, capacity: capacity, now: now,
		handled: map[string]struct{}{}, inFlight: map[string]struct{}{}}
}

// begin reports whether id was handled within the window or is being
// handled; if neither, it marks id in flight.
func (d *dedup) begin(id string) seen {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.prune()
	if _, ok := d.handled[id]; ok {
		return seenDone
	}
	if _, ok := d.inFlight[id]; ok {
		return seenInFlight
	}
	d.inFlight[id] = struct{}{}
	return seenNew
}

// done records id as handled.
func (d *dedup) done(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.inFlight, id)
	if d.window < 0 {
		return
	}
	d.handled[id] = struct{}{}
	d.order = append(d.order, dedupEntry{id: id, at: d.now()})
	d.prune()
}

// fail forgets that id is in flight.
func (d *dedup) fail(id string) {
	d.mu.Lock()
	delete(d.inFlight, id)
	d.mu.Unlock()
}

// prune drops entries older than the window and beyond the capacity.
func (d *dedup) prune() {
	cutoff := d.now().Add(-d.window)
	n := 0
	for n < len(d.order) && (len(d.order)-n > d.capacity || d.order[n].at.Before(cutoff)) {
		delete(d.handled, d.order[n].id)
		n++
	}
	if n > 0 {
		d.order = append(d.order[:0:0], d.order[n:]...)
	}
}
