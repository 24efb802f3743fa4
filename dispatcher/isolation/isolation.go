// Package isolation keeps one remote endpoint's trouble from reaching the
// others: per endpoint, a circuit breaker, a cap on attempts in flight and
// a bounded queue of attempts waiting for a slot. The engine keys
// endpoints by tenant and endpoint, so one org's failing endpoint never
// opens another org's circuit on the same host; HostCap is the optional
// politeness cap per host across tenants. It knows nothing of what
// is delivered: the engine gives it opaque items and the outcome of each
// attempt.
package isolation

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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

// Defaults of BreakerConfig.
const (
	DefaultFailureThreshold = 5
	DefaultOpenDuration     = 30 * time.Second
)

// WithDefaults returns b with zero fields set to their defaults.
func (b BreakerConfig) WithDefaults() BreakerConfig {
	if b.FailureThreshold == 0 {
		b.FailureThreshold = DefaultFailureThreshold
	}
	if b.OpenDuration == 0 {
		b.OpenDuration = DefaultOpenDuration
	}
	return b
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

// States lists the circuit states, so metrics can export each at zero.
var States = []string{StateClosed, StateOpen, StateHalfOpen}

// Admission is the gate's answer for one attempt to an endpoint.
type Admission int

// The admissions.
const (
	Run      Admission = iota // a slot is held: send now, then Release
	Queued                    // queued behind the endpoint's running attempts; handed back by a Release
	DenyOpen                  // the circuit is open (or half-open with its probe out)
	DenyBusy                  // at the concurrency cap with a full queue
)

// Outcome is what an attempt that held a slot came to, as the breaker
// counts it.
type Outcome int

// The outcomes.
const (
	NoAttempt        Outcome = iota // the slot was given back unused
	Success                         // the endpoint accepted
	TransientFailure                // worth retrying: counts towards opening the circuit
	PermanentFailure                // a refusal: the endpoint is up, nothing is counted
)

// endpoint is the isolation state of one remote endpoint: its circuit, its
// attempts in flight and its bounded queue of items waiting.
type endpoint[T comparable] struct {
	running   int
	queue     []T
	failures  int
	state     string
	openUntil time.Time
	probing   bool // a half-open probe is in flight
	probe     T    // the item that is the probe, while probing

	// Pace: how often attempts end (an EWMA of the gaps between
	// Releases), which tells whether a full queue is about to have room.
	lastRelease time.Time
	gap         time.Duration
	paced       bool // gap is measured
	// room, when not nil, is closed when an item leaves the queue: first
	// attempts waiting for room (AdmitWait) wait on it.
	room chan struct{}
}

// Gate keeps the state of every endpoint with attempts in flight or a
// circuit not closed; idle closed endpoints are forgotten. T is the
// engine's item (compared by ==: use a pointer).
type Gate[T comparable] struct {
	mu       sync.Mutex
	m        map[string]*endpoint[T]
	cap      int
	queueCap int
	// fastCap is the deepest a fast, healthy endpoint's queue gets
	// (depth): FastQueueFactor times queueCap.
	fastCap int
	// loadedAt is the queue length from which an endpoint counts in
	// loaded (a quarter of queueCap, at least 1).
	loadedAt int
	breaker  BreakerConfig
	now      func() time.Time
	// OnChange, if set, is called (without the lock) after a circuit
	// changes state.
	OnChange func()
	// loaded counts endpoints with loadedAt or more queued (AnyLoaded).
	loaded atomic.Int64
}

// FastQueueFactor: a fast, healthy endpoint's queue holds up to this many
// times the gate's queue depth, as many attempts as it ends in
// MaxQueueDrain (depth). Such an endpoint drains the deeper queue within
// a second (a millisecond endpoint at the default cap of 8, in 0.1 s), so
// a burst waits in memory for it instead of becoming retry tasks, the path
// about 15 times slower (docs/performance.md). A slow, stalled or failing
// one keeps the base depth: what it cannot take becomes retry tasks at
// once.
const FastQueueFactor = 3

// New returns a gate allowing concurrency attempts in flight and queue
// waiting per endpoint (FastQueueFactor times queue for a fast one).
func New[T comparable](concurrency, queue int, b BreakerConfig, now func() time.Time) *Gate[T] {
	return &Gate[T]{m: make(map[string]*endpoint[T]), cap: concurrency, queueCap: queue, fastCap: FastQueueFactor * queue,
		loadedAt: max(1, queue/4), breaker: b, now: now}
}

func (g *Gate[T]) get(key string) *endpoint[T] {
	ep := g.m[key]
	if ep == nil {
		ep = &endpoint[T]{state: StateClosed}
		g.m[key] = ep
	}
	return ep
}

// pass checks the circuit of ep for it; if it lets it through, the caller
// must later Release. It reports when the circuit will next let an
// attempt through when it refuses.
func (g *Gate[T]) pass(ep *endpoint[T], it T) (ok bool, changed bool, retryAt time.Time) {
	if g.breaker.FailureThreshold < 0 {
		return true, false, time.Time{}
	}
	switch ep.state {
	case StateOpen:
		now := g.now()
		if now.Before(ep.openUntil) {
			return false, false, ep.openUntil
		}
		ep.state = StateHalfOpen
		ep.probing = false
		fallthrough
	case StateHalfOpen:
		if ep.probing {
			// The probe decides soon; look again then.
			return false, false, g.now().Add(min(g.breaker.OpenDuration, time.Second))
		}
		ep.probing, ep.probe = true, it
		return true, true, time.Time{}
	}
	return true, false, time.Time{}
}

// Admit decides what happens to a first attempt it to key: run now (slot
// taken), wait in the endpoint's queue, or be refused (circuit open or
// queue full) so the caller records a retry task. retryAt is when an open
// circuit will let an attempt through.
func (g *Gate[T]) Admit(key string, it T) (a Admission, retryAt time.Time) {
	g.mu.Lock()
	ep := g.get(key)
	if ep.running >= g.cap {
		if ep.state != StateClosed {
			g.mu.Unlock()
			return DenyOpen, ep.openUntil
		}
		if len(ep.queue) >= g.capacity(ep) {
			g.mu.Unlock()
			return DenyBusy, time.Time{}
		}
		ep.queue = append(ep.queue, it)
		if len(ep.queue) == g.loadedAt {
			g.loaded.Add(1)
		}
		g.mu.Unlock()
		return Queued, time.Time{}
	}
	ok, changed, at := g.pass(ep, it)
	if !ok {
		g.mu.Unlock()
		g.notify(changed)
		return DenyOpen, at
	}
	ep.running++
	g.mu.Unlock()
	g.notify(changed)
	return Run, time.Time{}
}

// AdmitRetry is Admit for a leased retry task. A retry may wait in the
// endpoint's queue like a first attempt (a busy but healthy endpoint then
// drains its retries at its own pace, instead of each one going back to
// the store and being leased again a second later), but only in the first
// half of the queue: the other half is kept for first attempts, which must
// never wait behind retries.
func (g *Gate[T]) AdmitRetry(key string, it T) (a Admission, retryAt time.Time) {
	g.mu.Lock()
	ep := g.get(key)
	if ep.running >= g.cap && ep.state == StateClosed && len(ep.queue) >= g.queueCap/2 {
		g.mu.Unlock()
		return DenyBusy, time.Time{}
	}
	g.mu.Unlock()
	return g.Admit(key, it)
}

// MaxWait bounds one wait for room in a busy endpoint's queue
// (AdmitWait). An endpoint none of whose attempts ended for this long is
// not waited for at all (it stalled).
const MaxWait = 20 * time.Millisecond

// StallAfter: an endpoint none of whose attempts ended for this long has
// stalled, and its queue is back to the base depth. It is longer than
// MaxWait, since a busy machine or a garbage collection pauses every
// endpoint for tens of milliseconds: a fast endpoint's deeper queue
// filled during such a pause must not overflow into retry tasks the
// moment it resumes.
const StallAfter = 250 * time.Millisecond

// MaxQueueDrain is how long a healthy endpoint's queue should take to
// drain at its pace: its depth, against which Load is measured, is as
// many attempts as end in MaxQueueDrain, between the base depth and
// FastQueueFactor times it.
const MaxQueueDrain = 500 * time.Millisecond

// DeepGap: a healthy endpoint whose attempts end at most this far apart
// on average may hold FastQueueFactor times the base depth (it drains
// 768 in under 4 s), whatever its depth for Load: a pace that drops for a
// moment then raises its load, and with it the share of its org's
// publishes refused, instead of refusing what is already accepted into
// retry tasks. A slower one holds the base depth.
const DeepGap = 5 * time.Millisecond

// healthy reports whether ep's circuit is closed with no failure counted
// and an attempt ended within StallAfter, at a measured pace.
func healthy[T comparable](ep *endpoint[T]) bool {
	return ep.state == StateClosed && ep.failures == 0 && ep.paced && time.Since(ep.lastRelease) <= StallAfter
}

// depth is how many attempts ep's queue should hold: as many as end in
// MaxQueueDrain at its pace (the EWMA of the gaps between its attempts'
// ends), between the base depth and fastCap, while it is healthy; else
// the base depth. It scales with the pace rather than switching at a
// threshold, so the load it measures rises smoothly as the pace drops.
func (g *Gate[T]) depth(ep *endpoint[T]) int {
	if !healthy(ep) {
		return g.queueCap
	}
	return max(g.queueCap, min(g.fastCap, int(MaxQueueDrain/max(ep.gap, time.Nanosecond))))
}

// capacity is how many attempts may wait in ep's queue: fastCap while it
// is healthy with attempts ending at most DeepGap apart, else the base
// depth.
func (g *Gate[T]) capacity(ep *endpoint[T]) int {
	if healthy(ep) && ep.gap <= DeepGap {
		return g.fastCap
	}
	return g.queueCap
}

// AdmitWait is Admit for a first attempt that may wait, while the endpoint
// is at its cap with a full deep queue (capacity) but healthy and one of
// its attempts ended within MaxWait, for room in its queue, up to
// MaxWait. Work that is merely waiting for a fast endpoint then stays in
// the log instead of becoming a retry task, while a slow, stalled or
// failing endpoint never holds up the caller (docs/performance.md). It
// returns DenyBusy at once when ctx ends.
func (g *Gate[T]) AdmitWait(ctx context.Context, key string, it T) (a Admission, retryAt time.Time) {
	var timeout <-chan time.Time
	for {
		g.mu.Lock()
		ep := g.get(key)
		if c := g.capacity(ep); ep.running < g.cap || len(ep.queue) < c || c == g.queueCap || time.Since(ep.lastRelease) > MaxWait {
			g.mu.Unlock()
			return g.Admit(key, it)
		}
		if ep.room == nil {
			ep.room = make(chan struct{})
		}
		room := ep.room
		g.mu.Unlock()
		if timeout == nil {
			t := time.NewTimer(MaxWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-room:
		case <-timeout:
			return g.Admit(key, it)
		case <-ctx.Done():
			return DenyBusy, time.Time{}
		}
	}
}

// pace updates ep's EWMA of the gaps between attempts' ends.
func (g *Gate[T]) pace(ep *endpoint[T]) {
	now := time.Now()
	if !ep.lastRelease.IsZero() {
		d := now.Sub(ep.lastRelease)
		if !ep.paced {
			ep.gap, ep.paced = d, true
		} else {
			ep.gap = (ep.gap*7 + d) / 8
		}
	}
	ep.lastRelease = now
}

// AnyLoaded reports whether any endpoint has a quarter of the base queue
// depth or more waiting: the cheap test before Load.
func (g *Gate[T]) AnyLoaded() bool { return g.loaded.Load() > 0 }

// Load is how full key's queue is, as a share of the depth it may reach
// now (depth): 0 for an idle endpoint or one with slots free, 1 for a
// full queue. It may exceed 1 when an endpoint that was fast slowed down
// with more queued than its base depth. The publish-side gate of the same
// process sheds a share of an org's new events that rises with it
// (backlog.Local), so a queue is kept from filling rather than refused
// only once it has.
func (g *Gate[T]) Load(key string) float64 {
	if !g.AnyLoaded() {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	ep := g.m[key]
	if ep == nil {
		return 0
	}
	return float64(len(ep.queue)) / float64(g.depth(ep))
}

// IsProbe reports whether it is key's half-open probe in flight.
func (g *Gate[T]) IsProbe(key string, it T) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	ep := g.m[key]
	return ep != nil && ep.probing && ep.probe == it
}

// Release returns it's slot of key after an attempt that came to o and
// hands back the next queued item, whose slot it keeps (ok), if the
// circuit still lets it through. Queued items found behind an open
// circuit are returned in refused, with when it will let one through.
func (g *Gate[T]) Release(key string, it T, o Outcome) (next T, ok bool, refused []T, retryAt time.Time) {
	g.mu.Lock()
	ep := g.get(key)
	var zero T
	isProbe := ep.probing && ep.probe == it
	changed := false
	if o != NoAttempt && g.breaker.FailureThreshold >= 0 {
		failed := o == TransientFailure
		switch {
		case isProbe && failed:
			ep.state, ep.openUntil, ep.probing = StateOpen, g.now().Add(g.breaker.OpenDuration), false
			changed = true
		case isProbe:
			ep.state, ep.failures, ep.probing = StateClosed, 0, false
			changed = true
		case failed:
			ep.failures++
			if ep.state == StateClosed && ep.failures >= g.breaker.FailureThreshold {
				ep.state, ep.openUntil = StateOpen, g.now().Add(g.breaker.OpenDuration)
				changed = true
			}
		case o == Success:
			ep.failures = 0
		}
	} else if isProbe {
		ep.probing = false // no attempt was made; let another probe go
	}
	if isProbe {
		ep.probe = zero
	}
	ep.running--
	g.pace(ep)
	for len(ep.queue) > 0 {
		if len(ep.queue) == g.loadedAt {
			g.loaded.Add(-1)
		}
		if ep.room != nil {
			close(ep.room)
			ep.room = nil
		}
		n := ep.queue[0]
		ep.queue[0] = zero
		ep.queue = ep.queue[1:]
		pass, probe, at := g.pass(ep, n)
		if !pass {
			refused = append(refused, n)
			retryAt = at
			continue
		}
		changed = changed || probe
		ep.running++
		next, ok = n, true
		break
	}
	if len(ep.queue) == 0 {
		ep.queue = nil
	}
	if ep.running == 0 && len(ep.queue) == 0 && ep.state == StateClosed && ep.failures == 0 {
		delete(g.m, key)
	}
	g.mu.Unlock()
	g.notify(changed)
	return next, ok, refused, retryAt
}

func (g *Gate[T]) notify(changed bool) {
	if changed && g.OnChange != nil {
		g.OnChange()
	}
}

// DrainQueues removes and returns every queued item (at shutdown).
func (g *Gate[T]) DrainQueues() []T {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []T
	for _, ep := range g.m {
		out = append(out, ep.queue...)
		if len(ep.queue) >= g.loadedAt {
			g.loaded.Add(-1)
		}
		ep.queue = nil
	}
	return out
}

// Sweep forgets idle endpoints whose circuit has been open, unprobed, for
// longer than idle: nothing was sent their way since.
func (g *Gate[T]) Sweep(idle time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	for key, ep := range g.m {
		if ep.running == 0 && len(ep.queue) == 0 && ep.state != StateClosed && now.Sub(ep.openUntil) > idle {
			delete(g.m, key)
		}
	}
}

// States counts endpoints by circuit state (idle closed endpoints are not
// tracked, so "closed" counts the closed endpoints currently in use).
func (g *Gate[T]) States() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[string]int{StateClosed: 0, StateOpen: 0, StateHalfOpen: 0}
	now := g.now()
	for _, ep := range g.m {
		st := ep.state
		if st == StateOpen && !now.Before(ep.openUntil) {
			st = StateHalfOpen
		}
		out[st]++
	}
	return out
}

// HostCap is the optional politeness cap: at most a fixed number of
// attempts in flight to one host across every tenant and endpoint on it
// (the Gate's caps are per tenant and endpoint, so many orgs' endpoints on
// one shared host could otherwise reach it all at once). An attempt waits
// for a slot, within its own deadline. A nil or zero-capacity HostCap lets
// everything through.
type HostCap struct {
	mu    sync.Mutex
	cap   int
	hosts map[string]*hostSlots
}

type hostSlots struct {
	sem   chan struct{}
	users int // attempts holding or waiting for a slot
}

// NewHostCap returns the cap of n attempts per host; n <= 0 is no cap.
func NewHostCap(n int) *HostCap {
	return &HostCap{cap: n, hosts: make(map[string]*hostSlots)}
}

// Acquire waits for a slot of host until ctx ends (then it returns ctx's
// error). The caller calls release once the attempt is over.
func (h *HostCap) Acquire(ctx context.Context, host string) (release func(), err error) {
	if h == nil || h.cap <= 0 {
		return func() {}, nil
	}
	h.mu.Lock()
	s := h.hosts[host]
	if s == nil {
		s = &hostSlots{sem: make(chan struct{}, h.cap)}
		h.hosts[host] = s
	}
	s.users++
	h.mu.Unlock()
	select {
	case s.sem <- struct{}{}:
		return func() {
			<-s.sem
			h.leave(host, s)
		}, nil
	case <-ctx.Done():
		h.leave(host, s)
		return nil, ctx.Err()
	}
}

func (h *HostCap) leave(host string, s *hostSlots) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.users--; s.users == 0 {
		delete(h.hosts, host)
	}
}
