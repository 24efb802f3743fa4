package store

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Resealer finishes an encryption-key rotation: while previous keys are
// configured it runs Keys.Reseal at start-up and then every interval, so
// that values written meanwhile by a process still sealing under an old key
// are moved too, and reports what is left. Once a pass that started after
// the last process with the old key stopped reports 0, the previous keys
// can be removed.
type Resealer struct {
	st       Keys
	enabled  bool
	interval time.Duration
	log      *slog.Logger

	remaining prometheus.Gauge
	lastPass  prometheus.Gauge
	resealed  prometheus.Counter
}

// NewResealer returns a Resealer for st; enabled says whether previous
// keys are configured (without them it only exports its metrics, at zero).
// interval defaults to 10 minutes.
func NewResealer(st Keys, enabled bool, interval time.Duration, logger *slog.Logger, reg prometheus.Registerer) (*Resealer, error) {
	if interval <= 0 {
		interval = 10 * time.Minute
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Resealer{st: st, enabled: enabled, interval: interval, log: logger,
		remaining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otphub_sealed_values_previous_key",
			Help: "Secrets at rest not yet under the current encryption key after the last reseal pass (0: previous keys can be removed).",
		}),
		lastPass: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otphub_sealed_values_last_pass_start_timestamp_seconds",
			Help: "When the last completed reseal pass started (Unix time); its count is otphub_sealed_values_previous_key. 0 before the first.",
		}),
		resealed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otphub_sealed_values_resealed_total",
			Help: "Secrets at rest re-encrypted under the current encryption key after a key rotation.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.remaining, r.lastPass, r.resealed} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// Run reseals until ctx ends.
func (r *Resealer) Run(ctx context.Context) error {
	if !r.enabled {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		r.pass(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (r *Resealer) pass(ctx context.Context) {
	start := time.Now()
	res, err := r.st.Reseal(ctx)
	r.resealed.Add(float64(res.Resealed))
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("re-encrypting secrets under the current encryption key failed; retrying at the next pass",
				"resealed", res.Resealed, "err", err, "next_pass_in", r.interval.String())
		}
		return
	}
	r.remaining.Set(float64(res.Remaining))
	r.lastPass.Set(float64(start.UnixNano()) / 1e9)
	switch {
	case res.Unreadable > 0:
		r.log.Error("secrets at rest that no configured encryption key opens: they stay unreadable until the key that sealed them is given in --previous-encryption-keys",
			"unreadable", res.Unreadable, "remaining", res.Remaining, "resealed", res.Resealed)
	case res.Remaining > 0:
		r.log.Warn("secrets at rest still under a previous encryption key (written meanwhile by a process configured with it); retrying at the next pass",
			"remaining", res.Remaining, "resealed", res.Resealed, "next_pass_in", r.interval.String())
	default:
		r.log.Info("every secret at rest is under the current encryption key; --previous-encryption-keys can be removed once every replica reports the same",
			"resealed", res.Resealed, "duration_ms", time.Since(start).Milliseconds())
	}
}
