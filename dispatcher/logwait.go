package dispatcher

import (
	"sync"
	"time"
)

// logWaitFresh is how long one org's log wait, as last measured, stands
// for it: long enough to bridge the gaps between its records under load,
// short enough that an org which stopped publishing while it was behind
// (refused for it) is let through again within about a second of its
// last record; its next record then measures afresh.
const logWaitFresh = time.Second

// logWaits keeps, per org, how long its record routed last had waited in
// the log (from its append to the router taking it). The router writes
// it; the publish-side gate of the same process reads it
// (Engine.LogWait) and sheds a share of the org's new events that rises
// with the wait, so the backlog in the log, which no endpoint queue
// shows, stops growing. Per org, because an org's records wait behind
// those of its partition: one org's flood shows first in its own records.
type logWaits struct {
	mu sync.Mutex
	m  map[int64]logWait
}

type logWait struct {
	wait time.Duration
	at   time.Time
}

func newLogWaits() *logWaits { return &logWaits{m: map[int64]logWait{}} }

// observe records that org's record routed at now had waited wait.
func (w *logWaits) observe(org int64, wait time.Duration, now time.Time) {
	w.mu.Lock()
	w.m[org] = logWait{wait: wait, at: now}
	w.mu.Unlock()
}

// get is org's log wait, if measured within logWaitFresh of now.
func (w *logWaits) get(org int64, now time.Time) (time.Duration, bool) {
	w.mu.Lock()
	lw, ok := w.m[org]
	w.mu.Unlock()
	if !ok || now.Sub(lw.at) > logWaitFresh {
		return 0, false
	}
	return lw.wait, true
}

// sweep forgets the waits that are no longer fresh, so the map holds only
// the orgs publishing now.
func (w *logWaits) sweep(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for org, lw := range w.m {
		if now.Sub(lw.at) > logWaitFresh {
			delete(w.m, org)
		}
	}
}
