package dispatcher

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/otphub/otphub/dispatcher/isolation"
)

// Config configures the delivery engine. Zero fields take the documented
// defaults (applied by New); Validate refuses contradictory values.
type Config struct {
	// Group is the log consumer group. Default "otphub-dispatcher".
	Group string
	// Owner identifies this process in retry-task leases. Default
	// hostname-pid-random, unique per process start.
	Owner string

	// Workers bounds the first attempts in flight at once, across all
	// endpoints. Default 256.
	Workers int
	// RetryWorkers bounds the retry attempts in flight at once. Retries have
	// their own pool, so they never delay first attempts. Default 32.
	RetryWorkers int
	// PerEndpointConcurrency bounds the attempts in flight to one endpoint
	// (Target.Endpoint). Default 8.
	PerEndpointConcurrency int
	// EndpointQueue bounds the first attempts waiting for a slot of one
	// endpoint. When it is full, a new first attempt to that endpoint becomes
	// a durable retry task at once instead of waiting. Queued attempts hold
	// their log messages unacknowledged, so keep PerEndpointConcurrency +
	// EndpointQueue well below the log consumer's in-flight limit (1024 by
	// default): a hanging endpoint must not use up the window others need.
	// Default 256.
	EndpointQueue int

	// AttemptTimeout bounds one attempt (connect, send, read). Default 10s.
	AttemptTimeout time.Duration
	// DrainTimeout bounds how long Run waits, after its context is done,
	// for in-flight attempts to finish before cancelling them; recording
	// the cancelled attempts then gets DrainTimeout more, between 1s and 5s.
	// Default 15s.
	DrainTimeout time.Duration

	// RetryPolicy decides when failed deliveries are tried again.
	RetryPolicy RetryPolicy
	// Breaker configures the per-endpoint circuit breaker.
	Breaker isolation.BreakerConfig

	// RetryPollInterval is how often the retry loop looks for due tasks
	// when the previous look found none. Default 250ms.
	RetryPollInterval time.Duration
	// LeaseDuration is how long a leased retry task stays with this process
	// before another may take it over. It must exceed AttemptTimeout.
	// Default max(30s, 2×AttemptTimeout+5s).
	LeaseDuration time.Duration
	// Retention is how long finished tasks (delivered, failed, expired,
	// dead) are kept for the deliveries API before they are purged.
	// Default 7 days.
	Retention time.Duration
	// StatsInterval is how often queue gauges are refreshed from the store
	// and finished tasks are purged. Default 5s.
	StatsInterval time.Duration
	// RecordBatch bounds how many successful webhook deliveries are written
	// to the store in one transaction. Default 256.
	RecordBatch int
	// RecordInterval is how long a successful webhook delivery may wait to
	// be written. Default 200ms.
	RecordInterval time.Duration

	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Defaults of Config the server's settings take too (package config's
// --delivery-timeout, --endpoint-concurrency, --delivery-max-attempts).
const (
	DefaultGroup                  = "otphub-dispatcher"
	DefaultAttemptTimeout         = 10 * time.Second
	DefaultPerEndpointConcurrency = 8
	DefaultMaxAttempts            = 10
)

func (c *Config) applyDefaults() {
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.Owner == "" {
		c.Owner = defaultOwner()
	}
	setDefault(&c.Workers, 256)
	setDefault(&c.RetryWorkers, 32)
	setDefault(&c.PerEndpointConcurrency, DefaultPerEndpointConcurrency)
	setDefault(&c.EndpointQueue, 256)
	setDefault(&c.AttemptTimeout, DefaultAttemptTimeout)
	setDefault(&c.DrainTimeout, 15*time.Second)
	setDefault(&c.RetryPollInterval, 250*time.Millisecond)
	// A leased retry must outlive its attempt, whatever the timeout.
	setDefault(&c.LeaseDuration, max(30*time.Second, 2*c.AttemptTimeout+5*time.Second))
	setDefault(&c.Retention, 7*24*time.Hour)
	setDefault(&c.StatsInterval, 5*time.Second)
	setDefault(&c.RecordBatch, 256)
	setDefault(&c.RecordInterval, 200*time.Millisecond)
	if c.Now == nil {
		c.Now = time.Now
	}
	c.RetryPolicy.applyDefaults()
	c.Breaker = c.Breaker.WithDefaults()
}

func setDefault[T int | time.Duration](p *T, v T) {
	if *p == 0 {
		*p = v
	}
}

// Validate reports the first contradictory or negative setting. New calls
// it after applying defaults.
func (c Config) Validate() error {
	var errs []error
	positive := func(name string, v int64) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("dispatcher: %s must not be negative", name))
		}
	}
	positive("Workers", int64(c.Workers))
	positive("RetryWorkers", int64(c.RetryWorkers))
	positive("PerEndpointConcurrency", int64(c.PerEndpointConcurrency))
	positive("EndpointQueue", int64(c.EndpointQueue))
	positive("AttemptTimeout", int64(c.AttemptTimeout))
	positive("DrainTimeout", int64(c.DrainTimeout))
	positive("RetryPollInterval", int64(c.RetryPollInterval))
	positive("LeaseDuration", int64(c.LeaseDuration))
	positive("Retention", int64(c.Retention))
	positive("StatsInterval", int64(c.StatsInterval))
	positive("RecordBatch", int64(c.RecordBatch))
	positive("RecordInterval", int64(c.RecordInterval))
	if c.LeaseDuration > 0 && c.AttemptTimeout > 0 && c.LeaseDuration <= c.AttemptTimeout {
		errs = append(errs, fmt.Errorf("dispatcher: LeaseDuration (%s) must exceed AttemptTimeout (%s)", c.LeaseDuration, c.AttemptTimeout))
	}
	if err := c.RetryPolicy.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Breaker.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func defaultOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "otphub"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}
