package dispatcher

import (
	"errors"
	"sync"
	"time"
)

// BreakerConfig configures the per-endpoint circuit breaker. After
// FailureThreshold consecutive retryable failures (timeouts, refused
// connections, 429, 5xx…) an endpoint's circuit opens: nothing is sent to it
// for OpenDuration, its deliveries become durable retry tasks at once. Then
// it half-opens: one probe attempt goes through; success closes it, failure
// opens it again. Permanent errors (a 4xx) do not count: the endpoint is up.
type BreakerConfig struct {
	// FailureThreshold is the consecutive failures that open a circuit.
	// Default 5; a negative value disables the breaker.
	FailureThreshold int
	// OpenDuration is how long an open circuit stays open. Default 30s.
	OpenDuration time.Duration
}

func (b *BreakerConfig) applyDefaults() {
	setDefault(&b.FailureThreshold, 5)
	setDefault(&b.OpenDuration, 30*time.Second)
}

// Validate reports a contradictory configuration.
func (b BreakerConfig) Validate() error {
	if b.OpenDuration < 0 {
		return errors.New("dispatcher: Breaker.OpenDuration must not be negative")
	}
	return nil
}

// Circuit states, the state label of otphub_circuit_breakers.
const (
	StateClosed   = "closed"
	StateOpen     = "open"
	StateHalfOpen = "half_open"
)

// admission is the gate's answer for one attempt to an endpoint.
type admission int

const (
	admitRun    admission = iota // a slot is held: send now
	admitQueued                  // queued behind the endpoint's running attempts
	denyOpen                     // the circuit is open (or half-open with its probe out)
	denyBusy                     // at the concurrency cap with a full queue
)

// endpoint is the isolation state of one remote endpoint: its circuit, its
// attempts in flight and its bounded queue of first attempts waiting.
type endpoint struct {
	running   int
	queue     []*delivery
	failures  int
	state     string
	openUntil time.Time
	probing   bool // a half-open probe is in flight
}

// endpoints keeps the state of every endpoint with attempts in flight or a
// circuit not closed; idle closed endpoints are forgotten.
type endpoints struct {
	mu       sync.Mutex
	m        map[string]*endpoint
	cap      int
	queueCap int
	breaker  BreakerConfig
	now      func() time.Time
	onChange func() // called (without the lock) after a circuit changes state
}

func newEndpoints(cap, queueCap int, b BreakerConfig, now func() time.Time) *endpoints {
	return &endpoints{m: make(map[string]*endpoint), cap: cap, queueCap: queueCap, breaker: b, now: now}
}

func (es *endpoints) get(key string) *endpoint {
	ep := es.m[key]
	if ep == nil {
		ep = &endpoint{state: StateClosed}
		es.m[key] = ep
	}
	return ep
}

// gate checks the circuit of key; if it lets an attempt through, the
// caller must later call release. It reports when the circuit will next let
// an attempt through when it says denyOpen.
func (es *endpoints) gate(ep *endpoint) (ok bool, probe bool, retryAt time.Time) {
	if es.breaker.FailureThreshold < 0 {
		return true, false, time.Time{}
	}
	switch ep.state {
	case StateOpen:
		now := es.now()
		if now.Before(ep.openUntil) {
			return false, false, ep.openUntil
		}
		ep.state = StateHalfOpen
		ep.probing = false
		fallthrough
	case StateHalfOpen:
		if ep.probing {
			// The probe decides soon; look again then.
			return false, false, es.now().Add(min(es.breaker.OpenDuration, time.Second))
		}
		ep.probing = true
		return true, true, time.Time{}
	}
	return true, false, time.Time{}
}

// admit decides what happens to a first attempt d to key: run now (slot
// taken), wait in the endpoint's queue, or be refused (circuit open or
// queue full) so the caller records a retry task. retryAt is when an open
// circuit will let an attempt through.
func (es *endpoints) admit(key string, d *delivery) (a admission, retryAt time.Time) {
	es.mu.Lock()
	ep := es.get(key)
	if ep.running >= es.cap {
		if ep.state != StateClosed {
			es.mu.Unlock()
			return denyOpen, ep.openUntil
		}
		if len(ep.queue) >= es.queueCap {
			es.mu.Unlock()
			return denyBusy, time.Time{}
		}
		ep.queue = append(ep.queue, d)
		es.mu.Unlock()
		return admitQueued, time.Time{}
	}
	ok, probe, at := es.gate(ep)
	changed := probe
	if !ok {
		es.mu.Unlock()
		es.notify(changed)
		return denyOpen, at
	}
	ep.running++
	d.probe = probe
	es.mu.Unlock()
	es.notify(changed)
	return admitRun, time.Time{}
}

// admitRetry is admit for a leased retry task. A retry may wait in the
// endpoint's queue like a first attempt (a busy but healthy endpoint then
// drains its retries at its own pace, instead of each one going back to
// the store and being leased again a second later), but only in the first
// half of the queue: the other half is kept for first attempts, which must
// never wait behind retries.
func (es *endpoints) admitRetry(key string, d *delivery) (a admission, retryAt time.Time) {
	es.mu.Lock()
	ep := es.get(key)
	if ep.running >= es.cap && ep.state == StateClosed && len(ep.queue) >= es.queueCap/2 {
		es.mu.Unlock()
		return denyBusy, time.Time{}
	}
	es.mu.Unlock()
	return es.admit(key, d)
}

// release returns d's slot of key after an attempt with result res (nil
// when no attempt was made) and hands back the next queued first attempt,
// whose slot it keeps, if the circuit still lets it through. Queued
// attempts found behind an open circuit are returned in refused.
func (es *endpoints) release(key string, d *delivery, res *Result) (next *delivery, refused []*delivery, retryAt time.Time) {
	es.mu.Lock()
	ep := es.get(key)
	changed := false
	if res != nil && es.breaker.FailureThreshold >= 0 {
		failed := !res.OK && res.Retry
		switch {
		case d.probe && failed:
			ep.state, ep.openUntil, ep.probing = StateOpen, es.now().Add(es.breaker.OpenDuration), false
			changed = true
		case d.probe:
			ep.state, ep.failures, ep.probing = StateClosed, 0, false
			changed = true
		case failed:
			ep.failures++
			if ep.state == StateClosed && ep.failures >= es.breaker.FailureThreshold {
				ep.state, ep.openUntil = StateOpen, es.now().Add(es.breaker.OpenDuration)
				changed = true
			}
		case res.OK:
			ep.failures = 0
		}
	} else if d.probe {
		ep.probing = false // no attempt was made; let another probe go
	}
	d.probe = false
	ep.running--
	for len(ep.queue) > 0 {
		n := ep.queue[0]
		ep.queue[0] = nil
		ep.queue = ep.queue[1:]
		ok, probe, at := es.gate(ep)
		if !ok {
			refused = append(refused, n)
			retryAt = at
			continue
		}
		changed = changed || probe
		ep.running++
		n.probe = probe
		next = n
		break
	}
	if len(ep.queue) == 0 {
		ep.queue = nil
	}
	if ep.running == 0 && len(ep.queue) == 0 && ep.state == StateClosed && ep.failures == 0 {
		delete(es.m, key)
	}
	es.mu.Unlock()
	es.notify(changed)
	return next, refused, retryAt
}

func (es *endpoints) notify(changed bool) {
	if changed && es.onChange != nil {
		es.onChange()
	}
}

// drainQueues removes and returns every queued first attempt (at shutdown).
func (es *endpoints) drainQueues() []*delivery {
	es.mu.Lock()
	defer es.mu.Unlock()
	var out []*delivery
	for _, ep := range es.m {
		out = append(out, ep.queue...)
		ep.queue = nil
	}
	return out
}

// sweep forgets idle endpoints whose circuit has been open, unprobed, for
// longer than idle: nothing was sent their way since.
func (es *endpoints) sweep(idle time.Duration) {
	es.mu.Lock()
	defer es.mu.Unlock()
	now := es.now()
	for key, ep := range es.m {
		if ep.running == 0 && len(ep.queue) == 0 && ep.state != StateClosed && now.Sub(ep.openUntil) > idle {
			delete(es.m, key)
		}
	}
}

// states counts endpoints by circuit state (idle closed endpoints are not
// tracked, so "closed" counts the closed endpoints currently in use).
func (es *endpoints) states() map[string]int {
	es.mu.Lock()
	defer es.mu.Unlock()
	out := map[string]int{StateClosed: 0, StateOpen: 0, StateHalfOpen: 0}
	now := es.now()
	for _, ep := range es.m {
		st := ep.state
		if st == StateOpen && !now.Before(ep.openUntil) {
			st = StateHalfOpen
		}
		out[st]++
	}
	return out
}
