// Package dispatcher is the delivery engine: the router that consumes the
// log and resolves each event's destinations (delivery.Resolver), first
// attempts at once, durable retries with backoff bounded by the OTP's
// expiry, dead letters. Per-endpoint isolation is dispatcher/isolation;
// the deliveries API is dispatcher/deliveries and the publish-side
// back-pressure gate dispatcher/backlog, so processes that serve the API
// build no engine. Integrations implement delivery.Sender.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/dispatcher/isolation"
	"github.com/otphub/otphub/store"
)

// Engine is the delivery engine: the router that consumes the log and makes
// first attempts, the retry loop that works through durable retry tasks,
// and the deliveries API. Both paths run the one pipeline of process.
type Engine struct {
	cfg       Config
	sub       bus.Subscriber
	pub       bus.Publisher
	st        store.Store
	resolvers []delivery.Resolver
	byType    map[string]delivery.Resolver // the resolver of each destination type
	log       *slog.Logger
	m         *metrics
	eps       *isolation.Gate[*job]
	hosts     *isolation.HostCap // per-host politeness cap across orgs (PerHostConcurrency)

	firstSlots chan struct{} // first attempts in flight (Config.Workers)
	retrySlots chan struct{} // retries in flight (Config.RetryWorkers)
	inflight   sync.WaitGroup
	rec        *recorder
	// completions groups the attempt completions of concurrent retries
	// into shared transactions.
	completions *groupCommit[store.AttemptCompletion]
	// inserts groups the new tasks of concurrent first attempts that did
	// not deliver (failed, or refused by their endpoint's gate).
	inserts *groupCommit[taskInsert]

	// Set by Run before any goroutine starts.
	stopping context.Context // done when Run's context is: take no new work
	workCtx  context.Context // attempts; cancelled when the drain times out
	writeCtx context.Context // durable writes; cancelled a little later

	runMu   sync.Mutex
	running bool
	lag     func() int64
	waits   *logWaits
}

// New builds an Engine. sub and pub are the log (pub receives undecodable
// records on bus.DeadLetterTopic), st the store of retry tasks, resolvers
// the sources of destinations (all are asked for each event; Lookup asks
// each in turn). reg receives the otphub_delivery* metrics.
func New(cfg Config, sub bus.Subscriber, pub bus.Publisher, st store.Store, resolvers []delivery.Resolver, logger *slog.Logger, reg prometheus.Registerer) (*Engine, error) {
	switch {
	case sub == nil:
		return nil, errors.New("dispatcher: nil subscriber")
	case pub == nil:
		return nil, errors.New("dispatcher: nil publisher")
	case st == nil:
		return nil, errors.New("dispatcher: nil store")
	case reg == nil:
		return nil, errors.New("dispatcher: nil prometheus registerer")
	}
	byType := map[string]delivery.Resolver{}
	var types []string
	for i, r := range resolvers {
		if r == nil {
			return nil, fmt.Errorf("dispatcher: resolver %d is nil", i)
		}
		for _, t := range r.Types() {
			if _, dup := byType[t]; dup {
				return nil, fmt.Errorf("dispatcher: destination type %q has two resolvers", t)
			}
			byType[t] = r
			types = append(types, t)
		}
	}
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg, types)
	if err != nil {
		return nil, fmt.Errorf("dispatcher: metrics: %w", err)
	}
	e := &Engine{
		cfg:        cfg,
		sub:        sub,
		pub:        pub,
		st:         st,
		resolvers:  resolvers,
		byType:     byType,
		log:        logger.With("component", "dispatcher"),
		m:          m,
		eps:        isolation.New[*job](cfg.PerEndpointConcurrency, cfg.EndpointQueue, cfg.Breaker, cfg.Now),
		hosts:      isolation.NewHostCap(cfg.PerHostConcurrency),
		firstSlots: make(chan struct{}, cfg.Workers),
		retrySlots: make(chan struct{}, cfg.RetryWorkers),
		waits:      newLogWaits(),
	}
	e.eps.OnChange = e.updateBreakerGauge
	// Run replaces these with its own (done at shutdown).
	e.stopping, e.workCtx, e.writeCtx = context.Background(), context.Background(), context.Background()
	return e, nil
}

// Run consumes bus.NotificationsTopic in Config.Group and works through due
// retry tasks until ctx is done. Then it stops taking work, lets in-flight
// attempts finish (cancelling them after Config.DrainTimeout), records
// their failures durably, and closes the consumer, which commits the
// acknowledged prefix; messages not yet done stay unacknowledged and are
// delivered again after a restart. Run returns nil when ctx ended it, an
// AnyLoaded reports whether any endpoint this engine delivers to has a
// queue worth a look (isolation.Gate.AnyLoaded); cheap, for the publish
// path.
func (e *Engine) AnyLoaded() bool { return e.eps.AnyLoaded() }

// QueueLoad is how full t's endpoint queue in org orgID is, as a share of
// the depth it may reach now (isolation.Gate.Load). The backlog gate of
// the same process sheds a share of the org's new events that rises with
// it (backlog.Local), before the queue overflows into retry tasks.
func (e *Engine) QueueLoad(orgID int64, t *delivery.Target) float64 {
	return e.eps.Load(t.EndpointKey(orgID))
}

// LogWait reports how long org orgID's records wait in the log before this
// engine's router takes them, as measured on its latest record if that was
// routed within the last second (ok false otherwise: none routed lately,
// or the log gives no append times). The backlog gate of the same process
// sheds a share of the org's new events while it is long (backlog.Local).
func (e *Engine) LogWait(orgID int64) (wait time.Duration, ok bool) {
	return e.waits.get(orgID, time.Now())
}

// error when the consumer ended first. Run may be called once.
func (e *Engine) Run(ctx context.Context) error {
	e.runMu.Lock()
	if e.running {
		e.runMu.Unlock()
		return errors.New("dispatcher: Run called twice")
	}
	e.running = true
	e.runMu.Unlock()

	consCtx, cancelCons := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCons()
	cons, err := e.sub.Subscribe(consCtx, bus.NotificationsTopic, e.cfg.Group)
	if err != nil {
		return fmt.Errorf("dispatcher: subscribe %s: %w", bus.NotificationsTopic, err)
	}
	if l, ok := cons.(interface{ Lag() int64 }); ok {
		e.lag = l.Lag
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	writeCtx, cancelWrite := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	defer cancelWrite()
	e.stopping, e.workCtx, e.writeCtx = runCtx, workCtx, writeCtx
	e.rec = newRecorder(e)
	e.newCompletions()
	go e.completions.run(writeCtx)
	go e.inserts.run(writeCtx)

	var loops sync.WaitGroup
	var runErr error
	loops.Add(3)
	go func() {
		defer loops.Done()
		if err := e.routeLoop(runCtx, cons); err != nil {
			runErr = err
			e.log.Error("log consumer ended; stopping", "err", err)
			stop()
		}
	}()
	go func() { defer loops.Done(); e.retryLoop(runCtx) }()
	go func() { defer loops.Done(); e.statsLoop(runCtx) }()
	recDone := make(chan struct{})
	go func() { defer close(recDone); e.rec.run() }()

	<-runCtx.Done()
	loops.Wait()
	e.drain(cancelWork, cancelWrite)
	// The queued records of delivered webhooks get the same grace as the
	// writes of drained attempts: a store that is down at shutdown must
	// not hold the process (durably retries until writeCtx ends).
	e.rec.close()
	select {
	case <-recDone:
	case <-time.After(e.writeGrace()):
		cancelWrite()
		<-recDone
	}
	if err := cons.Close(); err != nil && !errors.Is(err, bus.ErrClosed) {
		e.log.Warn("closing the log consumer", "err", err)
	}
	return runErr
}

// drain lets the attempts in flight finish once the loops have stopped:
// DrainTimeout for them, then they are cancelled and recording their
// failures gets DrainTimeout more (between 1 and 5 s) before the writes
// are cancelled too. Queued first attempts are dropped: their messages
// stay unacknowledged and are delivered again after a restart.
func (e *Engine) drain(cancelWork, cancelWrite context.CancelFunc) {
	e.log.Info("draining in-flight deliveries", "timeout", e.cfg.DrainTimeout)
	e.eps.DrainQueues()
	drained := make(chan struct{})
	go func() { e.inflight.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(e.cfg.DrainTimeout):
		e.log.Warn("drain timeout: cancelling in-flight attempts")
		cancelWork()
		select {
		case <-drained:
		case <-time.After(e.writeGrace()):
			cancelWrite()
			<-drained
		}
	}
}

// writeGrace is how long shutdown lets store writes finish once nothing
// new is started: DrainTimeout, between 1 and 5 s.
func (e *Engine) writeGrace() time.Duration {
	return min(max(e.cfg.DrainTimeout, time.Second), 5*time.Second)
}

// durably runs write until it succeeds, returns a store error that
// retrying cannot fix (ErrPrecondition, ErrNotFound, ErrConflict), or the
// write context ends (shutdown): the caller then leaves its message
// unacknowledged or its lease to lapse, so nothing is lost.
func (e *Engine) durably(what string, write func(ctx context.Context) error) error {
	delay := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(e.writeCtx, 10*time.Second)
		err := write(ctx)
		cancel()
		if err == nil || errors.Is(err, store.ErrPrecondition) || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrConflict) {
			return err
		}
		e.log.Warn("store write failed; retrying", "what", what, "err", err, "in", delay)
		select {
		case <-e.writeCtx.Done():
			return fmt.Errorf("%s: %w (gave up at shutdown)", what, err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

// statsLoop refreshes the queue gauges from the store, purges finished
// tasks past retention, and forgets long-idle open circuits.
func (e *Engine) statsLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.StatsInterval)
	defer t.Stop()
	lastPurge := time.Time{}
	for {
		e.refreshStats(ctx)
		if now := e.cfg.Now(); now.Sub(lastPurge) >= time.Minute {
			lastPurge = now
			if n, err := e.st.PurgeDeliveries(ctx, now.Add(-e.cfg.Retention)); err != nil {
				if ctx.Err() == nil {
					e.log.Warn("purging finished deliveries", "err", err)
				}
			} else if n > 0 {
				e.log.Info("purged finished deliveries", "count", n)
			}
			e.eps.Sweep(10 * e.cfg.Breaker.OpenDuration)
		}
		e.waits.sweep(time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (e *Engine) refreshStats(ctx context.Context) {
	if e.lag != nil {
		e.m.consumerLag.Set(float64(e.lag()))
	}
	e.updateBreakerGauge()
	stats, err := e.st.DeliveryStats(ctx)
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("reading delivery stats", "err", err)
		}
		return
	}
	e.m.queueDepth.Set(float64(stats.Pending))
	e.m.deadLetters.Set(float64(stats.Dead))
	if stats.OldestPendingAt.IsZero() {
		e.m.queueOldest.Set(0)
	} else {
		e.m.queueOldest.Set(max(0, e.cfg.Now().Sub(stats.OldestPendingAt).Seconds()))
	}
}

func (e *Engine) updateBreakerGauge() {
	for s, n := range e.eps.States() {
		e.m.breakers.WithLabelValues(s).Set(float64(n))
	}
}
