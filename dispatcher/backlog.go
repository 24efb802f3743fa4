package dispatcher

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/store"
)

// Backlog is the per-org back-pressure gate of publishing: while an org has
// more pending delivery tasks than the limit (its endpoints cannot keep up,
// or are down), new events of that org are refused with 503 and
// Retry-After instead of acknowledged into a backlog whose OTPs would
// expire undelivered. Only that org is refused: the count is per org, so
// one tenant's slow endpoint never blocks another tenant's OTPs. Counts
// come from the store (shared by every replica) and are refreshed every
// interval, so the gate lags the backlog by at most that much.
type Backlog struct {
	st       store.Deliveries
	limit    int64
	interval time.Duration
	log      *slog.Logger
	refused  prometheus.Counter

	mu   sync.RWMutex
	over map[int64]bool
}

// NewBacklog returns a gate refusing orgs with more than limit pending
// tasks (limit <= 0 disables it), refreshed every interval (default 2s).
func NewBacklog(st store.Deliveries, limit int64, interval time.Duration, logger *slog.Logger, reg prometheus.Registerer) (*Backlog, error) {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := &Backlog{st: st, limit: limit, interval: interval, log: logger, over: map[int64]bool{},
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otphub_publish_backpressure_total",
			Help: "Events refused (503) because their org's pending delivery backlog was over its limit.",
		})}
	if reg != nil {
		if err := reg.Register(b.refused); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Over reports whether orgID's backlog is over the limit, counting the
// refusal it implies, and how long the caller should wait (Retry-After).
func (b *Backlog) Over(orgID int64) (bool, time.Duration) {
	if b == nil || b.limit <= 0 {
		return false, 0
	}
	b.mu.RLock()
	over := b.over[orgID]
	b.mu.RUnlock()
	if over {
		b.refused.Inc()
	}
	return over, b.interval
}

// Run refreshes the counts until ctx ends.
func (b *Backlog) Run(ctx context.Context) error {
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

func (b *Backlog) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stats, err := b.st.DeliveryStats(ctx)
	if err != nil {
		if ctx.Err() == nil {
			b.log.Warn("reading the delivery backlog failed; keeping the last known state", "err", err)
		}
		return
	}
	over := map[int64]bool{}
	for org, n := range stats.PendingByOrg {
		if n > b.limit {
			over[org] = true
		}
	}
	b.mu.Lock()
	b.over = over
	b.mu.Unlock()
}
