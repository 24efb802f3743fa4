package orgs

import (
	"sync"
	"time"
)

// maxCappedOrgs bounds a MinuteCap's memory; past it, every window starts over.
const maxCappedOrgs = 10000

// MinuteCap counts an action per org in fixed one-minute windows: the
// one per-org cap of the test actions (a test SMS, a test event), which
// cost a provider message or a receiver's attention each. Safe for
// concurrent use.
type MinuteCap struct {
	max int
	now func() time.Time

	mu      sync.Mutex
	windows map[int64]minuteWindow
}

// minuteWindow counts an org's actions in the minute starting at start.
type minuteWindow struct {
	start time.Time
	n     int
}

// NewMinuteCap allows max actions per org and minute on the clock now
// (time.Now when nil).
func NewMinuteCap(max int, now func() time.Time) *MinuteCap {
	if now == nil {
		now = time.Now
	}
	return &MinuteCap{max: max, now: now, windows: map[int64]minuteWindow{}}
}

// Max is the number of actions allowed per org and minute.
func (c *MinuteCap) Max() int { return c.max }

// Allow counts an action of org and reports whether it is within the cap,
// and if not, how long until the window ends.
func (c *MinuteCap) Allow(orgID int64) (bool, time.Duration) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.windows) > maxCappedOrgs {
		clear(c.windows)
	}
	w := c.windows[orgID]
	if now.Sub(w.start) >= time.Minute || now.Before(w.start) {
		w = minuteWindow{start: now}
	}
	if w.n >= c.max {
		return false, w.start.Add(time.Minute).Sub(now)
	}
	w.n++
	c.windows[orgID] = w
	return true, 0
}
