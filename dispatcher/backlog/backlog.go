// Package backlog is the publish-side back-pressure gate: it refuses an
// org's new events (503 with Retry-After) while every destination they
// would go to has more pending deliveries than the limit, and, where the
// engine runs in the same process, a share of them rising with how full
// its destinations' endpoint queues are and how long its records wait in
// the log. The API processes run it; it reads the store, and the engine
// only through Local.
package backlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
)

// DefaultLimit is the default Config.Limit (and
// --max-pending-per-destination). A working destination has almost no
// pending tasks: first attempts run from memory, and only transient
// failures and bursts past its EndpointQueue become tasks. An endpoint at
// the default concurrency cap (8) answering in 250 ms needs about 30 s, a
// tenth of the default 5-minute OTP lifetime, to deliver 1000; a backlog
// larger than that is one the destination is not keeping up with. A
// destination that is down reaches it when its org sends more than about
// 1000 OTPs per OTP lifetime (the tasks expire with their OTPs).
const DefaultLimit = 1000

// DefaultInterval is the default Config.Interval.
const DefaultInterval = 2 * time.Second

// DefaultMaxLogWait is the default Config.MaxLogWait (and
// --max-log-wait). A dispatcher that keeps up takes a record from the log
// within milliseconds of its append; a quarter of a second behind, where
// shedding starts, is a backlog building, and keeping the wait under half
// a second keeps what is accepted within issue 16's one-second bound
// (docs/performance.md).
const DefaultMaxLogWait = 500 * time.Millisecond

// Config configures the Gate.
type Config struct {
	// Limit: a destination with more pending tasks than this is backed up.
	// 0 disables the gate; negative is invalid.
	Limit int64
	// Interval is how often the counts are read from the store, and the
	// Retry-After of a refusal. Default DefaultInterval.
	Interval time.Duration
	// MaxLogWait: an org whose records wait in the log before the engine
	// of this process routes them (Local.LogWait) gets a share of its new
	// events refused: none up to half of MaxLogWait, rising in proportion
	// to all of them at MaxLogWait (shedShare). 0 disables; negative is
	// invalid. It acts apart from Limit (Limit 0 keeps it).
	MaxLogWait time.Duration
}

// TargetResolver is what the gate needs of a Resolver: the destinations an
// org's next event would go to. The gate asks with an event that carries
// only the org's ID and name, since destinations are per org (one topic
// per org), never per event content.
type TargetResolver interface {
	Resolve(ctx context.Context, ev *event.SmsOtpNotificationEvent) ([]delivery.Target, error)
}

// Local is the dispatcher engine running in this process, when it does
// (the embedded single binary, and each pod of the single-role chart): it
// knows at once how full each endpoint's queue is, long before an
// overflow shows in the store's counts, and how long an org's records
// wait in the log before it routes them, which no count shows at all.
type Local interface {
	// AnyLoaded reports cheaply whether QueueLoad may be more than 0 for
	// any destination.
	AnyLoaded() bool
	// QueueLoad is how full t's endpoint queue is, as a share of the
	// depth it may reach now: 0 idle, 1 full (then more for it would
	// become retry tasks).
	QueueLoad(orgID int64, t *delivery.Target) float64
	// LogWait is how long the org's latest records waited in the log
	// before the engine took them; ok false when it cannot tell (none
	// routed in the last second).
	LogWait(orgID int64) (wait time.Duration, ok bool)
}

// LocalRetryAfter is the Retry-After of a refusal for what the engine of
// this process sees (a loaded endpoint drains its queue within a
// fraction of a second; a log wait is measured afresh within one).
const LocalRetryAfter = time.Second

// destKey is one destination of an org, as its tasks and Targets name it.
type destKey struct{ typ, id string }

// Gate is the back-pressure gate of publishing. A destination is backed
// up when it has more pending delivery tasks than the limit (it is down,
// or far slower than its traffic). An org's new events are refused (503
// with Retry-After) only when every destination its next event would go
// to is backed up: then the event would only join backlogs whose OTPs are
// likely to expire undelivered, and the caller is better told at once so
// it can fall back. One working destination (a healthy SMS provider
// beside a dead webhook) keeps the org publishing; the dead destination's
// tasks keep expiring as they would without the gate. Counts are per
// destination, so one tenant's backlog never refuses another tenant.
//
// Counts come from the store (shared by every replica) and are refreshed
// every interval, so the gate lags the backlog by at most that much. The
// org's current destinations come from the dispatcher's resolvers (cached
// by them) and are read only for an org with a backed-up destination.
type Gate struct {
	st         store.Deliveries
	limit      int64
	interval   time.Duration
	maxLogWait time.Duration
	log        *slog.Logger
	refused    prometheus.Counter

	mu        sync.RWMutex
	resolvers []TargetResolver
	local     Local
	backedUp  map[int64]map[destKey]bool // per org, its backed-up destinations
}

// New returns the gate. It refuses nothing until UseResolvers has
// told it where events go.
func New(cfg Config, st store.Deliveries, logger *slog.Logger, reg prometheus.Registerer) (*Gate, error) {
	if cfg.Limit < 0 {
		return nil, fmt.Errorf("dispatcher: backlog limit %d must not be negative", cfg.Limit)
	}
	if cfg.MaxLogWait < 0 {
		return nil, fmt.Errorf("dispatcher: max log wait %v must not be negative", cfg.MaxLogWait)
	}
	if st == nil {
		return nil, errors.New("dispatcher: nil store")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := &Gate{st: st, limit: cfg.Limit, interval: cfg.Interval, maxLogWait: cfg.MaxLogWait, log: logger, backedUp: map[int64]map[destKey]bool{},
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otphub_publish_backpressure_total",
			Help: "Events and OTPs refused (503 delivery_backlog): every destination of their org was backed up (pending deliveries over the limit), or a share of the org's events rising with how full its destinations' endpoint queues were or how long its records waited in the log (--max-log-wait).",
		})}
	if reg != nil {
		if err := reg.Register(b.refused); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// UseResolvers sets the resolvers that tell an org's destinations: the
// dispatcher's own, so the gate sees what the router will deliver to. It
// is separate from New because the hub is both guarded by the gate
// and one of the resolvers; call it before serving.
func (b *Gate) UseResolvers(rs ...TargetResolver) {
	b.mu.Lock()
	b.resolvers = rs
	b.mu.Unlock()
}

// UseLocal adds the engine of this process as a source of back-pressure
// (see Local): a share of an org's events rising with how full its
// destinations' endpoint queues are, and with how long its records wait
// in the log, is refused. Call it before serving.
func (b *Gate) UseLocal(l Local) {
	b.mu.Lock()
	b.local = l
	b.mu.Unlock()
}

// Over reports whether the org's next event should be refused, counting
// the refusal, and how long the caller should wait (Retry-After): every
// destination it would go to is backed up in the store, or, as seen by
// the engine of this process, a share of its events rising with how long
// its records wait in the log and with how full the endpoint queues of
// its destinations are (shedShare): its events would arrive late whatever
// their destinations, or its destinations are taking all they can. An org
// without destinations, or whose destinations cannot be resolved now, is
// not refused for them: its event would join no backlog, or the gate
// cannot tell.
func (b *Gate) Over(ctx context.Context, orgID int64, orgName string) (bool, time.Duration) {
	if b == nil {
		return false, 0
	}
	b.mu.RLock()
	backed, rs, local := b.backedUp[orgID], b.resolvers, b.local
	b.mu.RUnlock()
	share := 0.0
	if local != nil && b.maxLogWait > 0 {
		if wait, ok := local.LogWait(orgID); ok {
			share = shedShare(wait.Seconds(), b.maxLogWait.Seconds())
		}
	}
	if local != nil && !local.AnyLoaded() {
		local = nil
	}
	if b.limit > 0 && (len(backed) > 0 || local != nil) { // else the common case: no targets to resolve
		load, stored, ok := b.load(ctx, rs, orgID, orgName, backed, local)
		if ok && stored {
			b.refused.Inc()
			return true, b.interval
		}
		if ok {
			share = max(share, shedShare(load, 1))
		}
	}
	if share > 0 && rand.Float64() < share {
		b.refused.Inc()
		return true, LocalRetryAfter
	}
	return false, 0
}

// load resolves the org's destinations and tells whether every one is
// backed up in the store (stored), or else how full the least loaded one's
// endpoint queue is (Local.QueueLoad; 0 without local). A destination
// counts by the least loaded of itself and the fallbacks it hands over to
// when its circuit is open, leaving out those backed up in the store. ok
// is false when the org has no destinations or they cannot be resolved.
func (b *Gate) load(ctx context.Context, rs []TargetResolver, orgID int64, orgName string, backed map[destKey]bool, local Local) (load float64, stored, ok bool) {
	probe := &event.SmsOtpNotificationEvent{OrganizationID: orgID, OrganizationName: orgName}
	var targets []delivery.Target
	for _, r := range rs {
		ts, err := r.Resolve(ctx, probe)
		if err != nil {
			if ctx.Err() == nil {
				b.log.Warn("resolving an org's destinations for the backlog gate failed; not refusing", "org", orgName, "err", err)
			}
			return 0, false, false
		}
		targets = append(targets, ts...)
	}
	if len(targets) == 0 {
		return 0, false, false
	}
	load, stored = math.Inf(1), true
	for i := range targets {
		for t := &targets[i]; t != nil; t = t.Fallback {
			if backed[destKey{t.Type, t.ID}] {
				continue
			}
			stored = false
			if local == nil {
				return 0, false, true
			}
			load = min(load, local.QueueLoad(orgID, t))
		}
	}
	if stored {
		return 0, true, true
	}
	return load, false, true
}

// shedShare is the share of an org's new events refused for a measure x
// (a log wait, a queue's load) against its bound: none up to half of
// bound, then rising in proportion to all of them at bound. Refusing all
// at once past a threshold would stop the org's records, and with them
// the measure, until its backlog drained, then let its whole rate through
// again; the bursts that followed overflowed the endpoint queues into
// retry tasks (docs/performance.md). Shedding in proportion keeps records
// flowing, so the measure is taken all along and settles below bound.
func shedShare(x, bound float64) float64 {
	return min(1, max(0, (x-bound/2)/(bound/2)))
}

// Run refreshes the counts until ctx ends.
func (b *Gate) Run(ctx context.Context) error {
	if b.limit <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(b.interval)
	defer t.Stop()
	for {
		b.refresh(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// refresh reads the backed-up destinations, logging the ones that became
// backed up or recovered since the last refresh (rare, and the log names
// the org and destination, which a metric label must not).
func (b *Gate) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pending, err := b.st.PendingByDestination(ctx, b.limit)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("reading the delivery backlog failed; keeping the last known state", "err", err)
		}
		return
	}
	backedUp := map[int64]map[destKey]bool{}
	for d, n := range pending {
		if backedUp[d.OrgID] == nil {
			backedUp[d.OrgID] = map[destKey]bool{}
		}
		k := destKey{d.Type, d.ID}
		backedUp[d.OrgID][k] = true
		if !b.backedUp[d.OrgID][k] { // b.backedUp is only written here
			b.log.Warn("a destination's deliveries are backed up", "orgId", d.OrgID, "destination", d.Type, "id", d.ID, "pending", n, "limit", b.limit)
		}
	}
	for org, ds := range b.backedUp {
		for k := range ds {
			if !backedUp[org][k] {
				b.log.Info("a destination's deliveries are no longer backed up", "orgId", org, "destination", k.typ, "id", k.id)
			}
		}
	}
	b.mu.Lock()
	b.backedUp = backedUp
	b.mu.Unlock()
}
