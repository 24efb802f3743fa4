package dispatcher_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/bus/embedded"
	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/dispatcher"
	dt "github.com/otphub/otphub/dispatcher/dispatchertest"
	"github.com/otphub/otphub/dispatcher/isolation"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/sqlite"
)

var testKey = bytes.Repeat([]byte{7}, 32)

const org = "acme"

// clock is the engine's clock in tests: real time plus an offset the test
// may advance (to half-open a circuit without waiting for it).
type clock struct{ off atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) Advance(d time.Duration) { c.off.Add(int64(d)) }

// env is a real SQLite store and a real embedded log in a temp dir.
type env struct {
	t     testing.TB
	dir   string
	st    *sqlite.Store
	log   *embedded.Log
	res   *dt.Resolver
	orgID int64
	clock *clock
}

func newEnv(t *testing.T) *env { return newBenchEnv(t) }

func newReg() *prometheus.Registry { return prometheus.NewRegistry() }

func newBenchEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), res: dt.NewResolver(), clock: &clock{}}
	e.open()
	o, err := e.st.CreateOrg(context.Background(), org)
	if err != nil {
		t.Fatal(err)
	}
	e.orgID = o.ID
	return e
}

// open opens the store and log of e.dir (again, after a simulated crash).
func (e *env) open() {
	e.t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(e.dir, "db"), store.Options{EncryptionKey: testKey})
	if err != nil {
		e.t.Fatal(err)
	}
	lg, err := embedded.Open(filepath.Join(e.dir, "log"), embedded.Config{Partitions: 2})
	if err != nil {
		e.t.Fatal(err)
	}
	e.st, e.log = st, lg
	e.t.Cleanup(func() { lg.Close(); st.Close() })
}

func testConfig(c *clock) dispatcher.Config {
	return dispatcher.Config{
		Workers:                32,
		RetryWorkers:           8,
		PerEndpointConcurrency: 4,
		EndpointQueue:          16,
		AttemptTimeout:         5 * time.Second,
		DrainTimeout:           2 * time.Second,
		LeaseDuration:          10 * time.Second,
		RetryPolicy: dispatcher.RetryPolicy{
			Schedule:      []time.Duration{20 * time.Millisecond, 40 * time.Millisecond},
			Jitter:        -1,
			MaxAttempts:   5,
			MinRetryAfter: 10 * time.Millisecond,
			MaxRetryAfter: 300 * time.Millisecond,
		},
		Breaker:           isolation.BreakerConfig{FailureThreshold: -1},
		RetryPollInterval: 50 * time.Millisecond,
		StatsInterval:     20 * time.Millisecond,
		RecordInterval:    10 * time.Millisecond,
		Now:               c.Now,
	}
}

// running is an engine whose Run is going.
type running struct {
	*dispatcher.Engine
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func (e *env) start(cfg dispatcher.Config) *running {
	e.t.Helper()
	reg := prometheus.NewRegistry()
	eng, err := dispatcher.New(cfg, e.log, e.log, e.st, []delivery.Resolver{e.res}, nil, reg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Engine: eng, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- eng.Run(ctx) }()
	e.t.Cleanup(func() { r.stop(e.t) })
	return r
}

// stop cancels Run and waits for it to return.
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

func (e *env) publish(evs ...*event.SmsOtpNotificationEvent) {
	e.t.Helper()
	if err := dt.Publish(context.Background(), e.log, evs...); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) event(ttl time.Duration) *event.SmsOtpNotificationEvent {
	ev := dt.NewEvent(org, e.orgID, ttl)
	return ev
}

// waitTask polls the task of (jti, type, id) until its status is status.
func (e *env) waitTask(jti, destType, destID, status string) store.DeliveryTask {
	e.t.Helper()
	var task store.DeliveryTask
	dt.Eventually(e.t, 20*time.Second, func() bool {
		var err error
		task, err = e.st.FindDelivery(context.Background(), e.orgID, dt.Issuer, jti, destType, destID)
		return err == nil && task.Status == status
	}, "task of %s to %s/%s never became %s (last: %+v)", jti, destType, destID, status, &task)
	return task
}

func (e *env) attempts(task store.DeliveryTask) []store.DeliveryAttempt {
	e.t.Helper()
	_, atts, err := e.st.GetDelivery(context.Background(), e.orgID, task.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return atts
}

func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func TestFirstAttemptDelivered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := dt.NewReceiver(t, nil)
	e.res.Set(org, dt.Webhook("sub-1", rcv.URL))
	r := e.start(testConfig(e.clock))

	evs := []*event.SmsOtpNotificationEvent{e.event(time.Minute), e.event(time.Minute), e.event(time.Minute)}
	e.publish(evs...)
	for _, ev := range evs {
		task := e.waitTask(ev.ID, dt.TypeWebhook, "sub-1", store.DeliveryDelivered)
		if task.Attempts != 1 {
			t.Errorf("attempts = %d, want 1", task.Attempts)
		}
		atts := e.attempts(task)
		if len(atts) != 1 || atts[0].Outcome != dispatcher.OutcomeSuccess || atts[0].StatusCode != http.StatusNoContent {
			t.Errorf("attempt log = %+v", atts)
		}
		if got := rcv.Delivered(ev.ID); got != 1 {
			t.Errorf("%s delivered %d times", ev.ID, got)
		}
	}
	labels := map[string]string{"destination": "webhook", "outcome": "delivered"}
	if got := metric(t, r.reg, "otphub_deliveries_total", labels); got != 3 {
		t.Errorf("otphub_deliveries_total{delivered} = %v, want 3", got)
	}
	if got := metric(t, r.reg, "otphub_delivery_latency_seconds", map[string]string{"destination": "webhook"}); got != 3 {
		t.Errorf("latency samples = %v, want 3", got)
	}
}

func TestRetryWithBackoffThenDelivered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := dt.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ string, nth int) {
		if nth <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	e.res.Set(org, dt.Webhook("sub-1", rcv.URL))
	cfg := testConfig(e.clock)
	r := e.start(cfg)

	ev := e.event(time.Minute)
	e.publish(ev)
	task := e.waitTask(ev.ID, dt.TypeWebhook, "sub-1", store.DeliveryDelivered)
	atts := e.attempts(task)
	if task.Attempts != 3 || len(atts) != 3 {
		t.Fatalf("attempts = %d, log %+v; want 3", task.Attempts, atts)
	}
	wantOutcomes := []string{dispatcher.OutcomeRetry, dispatcher.OutcomeRetry, dispatcher.OutcomeSuccess}
	for i, a := range atts {
		if a.Number != i+1 || a.Outcome != wantOutcomes[i] {
			t.Errorf("attempt %d = %+v, want number %d outcome %s", i, a, i+1, wantOutcomes[i])
		}
	}
	// The backoff schedule is a lower bound on the gap between attempts.
	for i, want := range cfg.RetryPolicy.Schedule {
		gap := atts[i+1].StartedAt.Sub(atts[i].StartedAt)
		if gap < want {
			t.Errorf("gap before attempt %d = %v, want at least %v", i+2, gap, want)
		}
	}
	if rcv.Delivered(ev.ID) != 1 || rcv.Requests(ev.ID) != 3 {
		t.Errorf("receiver: %d delivered of %d requests", rcv.Delivered(ev.ID), rcv.Requests(ev.ID))
	}
	if got := metric(t, r.reg, "otphub_retries_scheduled_total", map[string]string{"destination": "webhook"}); got != 2 {
		t.Errorf("retries scheduled = %v, want 2", got)
	}
	if got := metric(t, r.reg, "otphub_delivery_failures_total", map[string]string{"destination": "webhook", "reason": "server_error"}); got != 2 {
		t.Errorf("server_error failures = %v, want 2", got)
	}
}

func TestGoneEndsSubscription(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := dt.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ string, _ int) {
		w.WriteHeader(http.StatusGone)
	})
	var gone atomic.Int32
	target := dt.Webhook("sub-1", rcv.URL)
	target.OnGone = func(context.Context) error { gone.Add(1); return nil }
	e.res.Set(org, target)
	e.start(testConfig(e.clock))

	ev := e.event(time.Minute)
	e.publish(ev)
	task := e.waitTask(ev.ID, dt.TypeWebhook, "sub-1", store.DeliveryFailed)
	if gone.Load() != 1 {
		t.Errorf("OnGone called %d times, want 1", gone.Load())
	}
	if task.Attempts != 1 || task.LastStatusCode != http.StatusGone {
		t.Errorf("task = %+v", task)
	}
}

func TestRetryAfterHonouredWithinBounds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := dt.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ string, nth int) {
		if nth == 1 {
			w.Header().Set("Retry-After", "3600") // an hour: bounded to MaxRetryAfter
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	e.res.Set(org, dt.Webhook("sub-1", rcv.URL))
	cfg := testConfig(e.clock)
	e.start(cfg)

	ev := e.event(time.Minute)
	e.publish(ev)
	task := e.waitTask(ev.ID, dt.TypeWebhook, "sub-1", store.DeliveryDelivered)
	atts := e.attempts(task)
	if len(atts) != 2 {
		t.Fatalf("attempt log %+v, want 2 attempts", atts)
	}
	// Not the 20ms schedule: the answer's Retry-After, bounded to 300ms.
	if gap := atts[1].StartedAt.Sub(atts[0].StartedAt); gap < cfg.RetryPolicy.MaxRetryAfter {
		t.Errorf("gap = %v, want at least MaxRetryAfter %v", gap, cfg.RetryPolicy.MaxRetryAfter)
	}
	if atts[0].StatusCode != http.StatusTooManyRequests {
		t.Errorf("first attempt %+v", atts[0])
	}
}

func TestRedirectIsAFailureNeverFollowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	elsewhere := dt.NewReceiver(t, nil)
	rcv := dt.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ string, _ int) {
		http.Redirect(w, r, elsewhere.URL, http.StatusTemporaryRedirect)
	})
	e.res.Set(org, dt.Webhook("sub-1", rcv.URL))
	r := e.start(testConfig(e.clock))

	ev := e.event(time.Minute)
	e.publish(ev)
	task := e.waitTask(ev.ID, dt.TypeWebhook, "sub-1", store.DeliveryFailed)
	if elsewhere.Total() != 0 {
		t.Errorf("the redirect was followed")
	}
	if task.LastStatusCode != http.StatusTemporaryRedirect {
		t.Errorf("task = %+v", task)
	}
	if got := metric(t, r.reg, "otphub_delivery_failures_total", map[string]string{"destination": "webhook", "reason": "redirect"}); got != 1 {
		t.Errorf("redirect failures = %v, want 1", got)
	}
}

func TestExpiryEndsRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := dt.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ string, _ int) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	e.res.Set(org, dt.Webhook("sub-1", rcv.URL))
	cfg := testConfig(e.clock)
	cfg.RetryPolicy.MaxAttempts = 1000
	r := e.start(cfg)

	ev := e.event(2 * time.Second)
	e.publish(ev)
	task := e.waitTask(ev.ID, dt.TypeWebhook, "sub-1", store.DeliveryExpired)
	if len(e.attempts(task)) == 0 {
		t.Error("no attempt before expiry")
	}
	// No attempt after the expiry (a retry due too late is logged as not attempted).
	for _, a := range e.attempts(task) {
		if a.StartedAt.After(ev.ExpiresAt) && !strings.HasPrefix(a.Error, "not attempted") {
			t.Errorf("attempt %d at %v, after the expiry %v; log %+v, task %+v", a.Number, a.StartedAt, ev.ExpiresAt, e.attempts(task), task.ExpiresAt)
		}
	}
	// Counted once the outcome is durable, so just after the store shows it.
	expired := func() float64 {
		return metric(t, r.reg, "otphub_deliveries_total", map[string]string{"destination": "webhook", "outcome": "expired"})
	}
	dt.Eventually(t, 5*time.Second, func() bool { return expired() >= 1 }, "the expiry was never counted")
	if got := expired(); got != 1 {
		t.Errorf("expired = %v", got)
	}
}

func TestExpiredBeforeFirstAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := dt.NewReceiver(t, nil)
	e.res.Set(org, dt.Webhook("sub-1", rcv.URL))
	e.start(testConfig(e.clock))
	ev := e.event(time.Minute)
	ev.IssuedAt = ev.IssuedAt.Add(-time.Hour)
	ev.ExpiresAt = ev.IssuedAt.Add(time.Minute)
	e.publish(ev)
	e.waitTask(ev.ID, dt.TypeWebhook, "sub-1", store.DeliveryExpired)
	if rcv.Total() != 0 {
		t.Error("an expired OTP was sent")
	}
}

func TestHangingEndpointDoesNotDelayOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	release := make(chan struct{})
	var hung atomic.Int32
	slow := dt.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ string, _ int) {
		hung.Add(1)
		defer hung.Add(-1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	fast := dt.NewReceiver(t, nil)
	e.res.Set(org, dt.Webhook("slow", slow.URL), dt.Webhook("fast", fast.URL))
	cfg := testConfig(e.clock)
	cfg.AttemptTimeout = time.Minute // hangs for the whole test unless released
	cfg.LeaseDuration = 2 * time.Minute
	cfg.DrainTimeout = 100 * time.Millisecond
	e.start(cfg)

	const n = 60 // far more than the slow endpoint's cap (4) + queue (16)
	var evs []*event.SmsOtpNotificationEvent
	for range n {
		evs = append(evs, e.event(time.Hour))
	}
	e.publish(evs...)
	dt.Eventually(t, 20*time.Second, func() bool {
		for _, ev := range evs {
			if fast.Delivered(ev.ID) == 0 {
				return false
			}
		}
		return true
	}, "the fast endpoint did not get every event while the slow one hung")
	// Progress, not wall time: everything reached the fast endpoint while
	// the slow one still held its attempts, never more than its cap.
	dt.Eventually(t, 10*time.Second, func() bool { return hung.Load() > 0 }, "the slow endpoint got nothing")
	if h := hung.Load(); h > int32(cfg.PerEndpointConcurrency) {
		t.Errorf("slow endpoint holds %d requests, want 1..%d", h, cfg.PerEndpointConcurrency)
	}
	select {
	case <-release:
	default:
	}
	close(release)
	// The slow endpoint gets them all in the end, from its queue and from retry tasks.
	dt.Eventually(t, 30*time.Second, func() bool {
		for _, ev := range evs {
			if slow.Delivered(ev.ID) == 0 {
				return false
			}
		}
		return true
	}, "the slow endpoint never got every event after it recovered")
}

func TestMaxAttemptsDeadThenReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var healthy atomic.Bool
	rcv := dt.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ string, _ int) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	e.res.Set(org, dt.Webhook("sub-1", rcv.URL))
	cfg := testConfig(e.clock)
	cfg.RetryPolicy.MaxAttempts = 3
	r := e.start(cfg)
	api := newAPI(t, e)

	ev := e.event(time.Hour)
	e.publish(ev)
	task := e.waitTask(ev.ID, dt.TypeWebhook, "sub-1", store.DeliveryDead)
	if task.Attempts != 3 {
		t.Errorf("attempts = %d, want 3", task.Attempts)
	}
	dt.Eventually(t, 10*time.Second, func() bool {
		return metric(t, r.reg, "otphub_dead_letters", nil) == 1
	}, "otphub_dead_letters never 1")

	healthy.Store(true)
	var out struct{ Requeued int }
	api.do(http.MethodPost, "/api/v1/orgs/acme/deliveries/replay", `{"status":"dead"}`, http.StatusOK, &out)
	if out.Requeued != 1 {
		t.Fatalf("requeued = %d, want 1", out.Requeued)
	}
	e.waitTask(ev.ID, dt.TypeWebhook, "sub-1", store.DeliveryDelivered)
	if rcv.Delivered(ev.ID) != 1 {
		t.Errorf("delivered %d times", rcv.Delivered(ev.ID))
	}
}

func TestCircuitBreakerOpensAndHalfOpens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var healthy atomic.Bool
	rcv := dt.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ string, _ int) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	e.res.Set(org, dt.Webhook("sub-1", rcv.URL))
	cfg := testConfig(e.clock)
	cfg.Breaker = isolation.BreakerConfig{FailureThreshold: 3, OpenDuration: time.Hour}
	cfg.RetryPolicy.Schedule = []time.Duration{time.Hour} // only the breaker's clock matters here
	cfg.RetryPolicy.MaxAttempts = 100
	r := e.start(cfg)

	var evs []*event.SmsOtpNotificationEvent
	for i := range 3 {
		ev := e.event(48 * time.Hour)
		evs = append(evs, ev)
		e.publish(ev)
		dt.Eventually(t, 10*time.Second, func() bool { return rcv.Total() == i+1 }, "attempt %d never arrived", i+1)
		e.waitTask(ev.ID, dt.TypeWebhook, "sub-1", store.DeliveryPending)
	}
	dt.Eventually(t, 10*time.Second, func() bool {
		return metric(t, r.reg, "otphub_circuit_breakers", map[string]string{"state": "open"}) == 1
	}, "circuit never reported open")

	// Open: new events become retry tasks without reaching the endpoint.
	for range 3 {
		ev := e.event(48 * time.Hour)
		evs = append(evs, ev)
		e.publish(ev)
		task := e.waitTask(ev.ID, dt.TypeWebhook, "sub-1", store.DeliveryPending)
		if task.Attempts != 0 {
			t.Errorf("attempts = %d for a delivery refused by an open circuit", task.Attempts)
		}
	}
	if rcv.Total() != 3 {
		t.Fatalf("endpoint received %d requests while its circuit was open, want 3", rcv.Total())
	}
	if got := metric(t, r.reg, "otphub_delivery_failures_total", map[string]string{"destination": "webhook", "reason": "circuit_open"}); got < 3 {
		t.Errorf("circuit_open failures = %v, want >= 3", got)
	}

	// An hour later the circuit half-opens; the probe succeeds and closes it.
	healthy.Store(true)
	e.clock.Advance(2 * time.Hour)
	for _, ev := range evs {
		e.waitTask(ev.ID, dt.TypeWebhook, "sub-1", store.DeliveryDelivered)
	}
	dt.Eventually(t, 10*time.Second, func() bool {
		return metric(t, r.reg, "otphub_circuit_breakers", map[string]string{"state": "open"}) == 0
	}, "circuit never closed")
}

func TestUndecodableRecordDeadLetteredAndConsumptionGoesOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := dt.NewReceiver(t, nil)
	e.res.Set(org, dt.Webhook("sub-1", rcv.URL))
	r := e.start(testConfig(e.clock))

	bad := bus.Message{Key: []byte(org), Value: []byte("not json"), Headers: map[string]string{"ce_specversion": "1.0"}}
	if err := e.log.Publish(context.Background(), bus.NotificationsTopic, bad); err != nil {
		t.Fatal(err)
	}
	ev := e.event(time.Minute)
	e.publish(ev)
	e.waitTask(ev.ID, dt.TypeWebhook, "sub-1", store.DeliveryDelivered)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dlq, err := e.log.Subscribe(ctx, bus.DeadLetterTopic, "test-dlq")
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	select {
	case m := <-dlq.Messages():
		if string(m.Value) != "not json" || m.Headers[bus.DeadLetterReasonHeader] == "" {
			t.Errorf("dead letter = %q %v", m.Value, m.Headers)
		}
		m.Ack()
	case <-ctx.Done():
		t.Fatal("no dead letter")
	}
	if n := metric(t, r.reg, "otphub_log_records_dead_lettered_total", nil); n != 1 {
		t.Errorf("otphub_log_records_dead_lettered_total = %v, want 1", n)
	}
}

func TestFallbackOnPermanentFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	primary := dt.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ string, _ int) {
		w.WriteHeader(http.StatusBadRequest)
	})
	fallback := dt.NewReceiver(t, nil)
	fb := dt.Webhook("fallback", fallback.URL)
	fb.Type = dt.TypeCustom
	fb.AtLeastOnce = false
	p := dt.Webhook("primary", primary.URL)
	p.Type = dt.TypeCustom
	p.AtLeastOnce = false
	p.Fallback = &fb
	e.res.Set(org, p)
	e.start(testConfig(e.clock))

	ev := e.event(time.Minute)
	e.publish(ev)
	e.waitTask(ev.ID, dt.TypeCustom, "primary", store.DeliveryFailed)
	e.waitTask(ev.ID, dt.TypeCustom, "fallback", store.DeliveryDelivered)
	if fallback.Delivered(ev.ID) != 1 {
		t.Errorf("fallback delivered %d times", fallback.Delivered(ev.ID))
	}
}

func TestFallbackWhenCircuitOpen(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	primary := dt.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ string, _ int) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	fallback := dt.NewReceiver(t, nil)
	fb := dt.Webhook("fallback", fallback.URL)
	fb.Type = dt.TypeVonage
	fb.AtLeastOnce = false
	p := dt.Webhook("primary", primary.URL)
	p.Type = dt.TypeTwilio
	p.AtLeastOnce = false
	p.Fallback = &fb
	e.res.Set(org, p)
	cfg := testConfig(e.clock)
	cfg.Breaker = isolation.BreakerConfig{FailureThreshold: 1, OpenDuration: time.Hour}
	r := e.start(cfg)
	circuitOpen := func() float64 {
		return metric(t, r.reg, "otphub_delivery_failures_total", map[string]string{"destination": "twilio", "reason": "circuit_open"})
	}

	// The first failure opens the circuit; its retry finds it open and
	// hands over to the fallback, counting a circuit_open failure as a
	// first attempt's handover does.
	first := e.event(time.Hour)
	e.publish(first)
	e.waitTask(first.ID, dt.TypeVonage, "fallback", store.DeliveryDelivered)
	task := e.waitTask(first.ID, dt.TypeTwilio, "primary", store.DeliveryFailed)
	if !strings.Contains(task.LastError, "fallback") {
		t.Errorf("primary task: %+v", task)
	}
	if got := circuitOpen(); got != 1 {
		t.Errorf("circuit_open failures after the retry's handover = %v, want 1", got)
	}
	// A new event goes straight to the fallback.
	second := e.event(time.Hour)
	e.publish(second)
	e.waitTask(second.ID, dt.TypeVonage, "fallback", store.DeliveryDelivered)
	e.waitTask(second.ID, dt.TypeTwilio, "primary", store.DeliveryFailed)
	if got := circuitOpen(); got != 2 {
		t.Errorf("circuit_open failures after the first attempt's handover = %v, want 2", got)
	}
	if primary.Total() != 1 {
		t.Errorf("primary received %d requests, want 1 (its circuit is open)", primary.Total())
	}
	if fallback.Delivered(first.ID) != 1 || fallback.Delivered(second.ID) != 1 {
		t.Errorf("fallback deliveries: %d, %d", fallback.Delivered(first.ID), fallback.Delivered(second.ID))
	}
}

// TestFallbackOfReplayedPrimaryGetsItsExpiry: a replay moves a dead
// primary's expiry bound to now + ReplayWindow, past the OTP's own; when the
// replayed primary then hands over (it fails permanently, or its circuit is
// open), the fallback is bounded by that same expiry and is delivered, not
// ended as expired on the OTP's original one.
func TestFallbackOfReplayedPrimaryGetsItsExpiry(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		breaker isolation.BreakerConfig
		answer  int // the primary's answer after the replay
	}{
		{"permanent failure", isolation.BreakerConfig{FailureThreshold: -1}, http.StatusBadRequest},
		// Two failures open the circuit for two days: the replayed retry
		// finds it open and hands over without an attempt.
		{"circuit open", isolation.BreakerConfig{FailureThreshold: 2, OpenDuration: 48 * time.Hour}, http.StatusServiceUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			var replayed atomic.Bool
			primary := dt.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ string, _ int) {
				if replayed.Load() {
					w.WriteHeader(tc.answer)
					return
				}
				w.WriteHeader(http.StatusServiceUnavailable)
			})
			fallback := dt.NewReceiver(t, nil)
			fb := dt.Webhook("fallback", fallback.URL)
			fb.Type = dt.TypeVonage
			fb.AtLeastOnce = false
			p := dt.Webhook("primary", primary.URL)
			p.Type = dt.TypeTwilio
			p.AtLeastOnce = false
			p.Fallback = &fb
			e.res.Set(org, p)
			cfg := testConfig(e.clock)
			cfg.Breaker = tc.breaker
			cfg.RetryPolicy.MaxAttempts = 2
			e.start(cfg)
			api := newAPI(t, e)

			// Retries exhausted (dead: no handover), then the OTP expires.
			ev := e.event(time.Hour)
			e.publish(ev)
			e.waitTask(ev.ID, dt.TypeTwilio, "primary", store.DeliveryDead)
			e.clock.Advance(2 * time.Hour)

			replayed.Store(true)
			var out struct{ Requeued int }
			api.do(http.MethodPost, "/api/v1/orgs/acme/deliveries/replay", `{"status":"dead"}`, http.StatusOK, &out)
			if out.Requeued != 1 {
				t.Fatalf("requeued = %d, want 1", out.Requeued)
			}
			prim := e.waitTask(ev.ID, dt.TypeTwilio, "primary", store.DeliveryFailed)
			if !prim.ExpiresAt.After(ev.ExpiresAt) {
				t.Fatalf("replayed primary's expiry %v is not past the OTP's %v", prim.ExpiresAt, ev.ExpiresAt)
			}
			dt.Eventually(t, 20*time.Second, func() bool {
				task, err := e.st.FindDelivery(context.Background(), e.orgID, dt.Issuer, ev.ID, dt.TypeVonage, "fallback")
				return err == nil && task.Status != store.DeliveryPending
			}, "the fallback never finished")
			got, err := e.st.FindDelivery(context.Background(), e.orgID, dt.Issuer, ev.ID, dt.TypeVonage, "fallback")
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != store.DeliveryDelivered || !got.ExpiresAt.Equal(prim.ExpiresAt) {
				t.Errorf("fallback task: status %s, expires %v (last error %q); want delivered, expiring with the replayed primary at %v",
					got.Status, got.ExpiresAt, got.LastError, prim.ExpiresAt)
			}
			if fallback.Delivered(ev.ID) != 1 {
				t.Errorf("fallback delivered %d times, want 1", fallback.Delivered(ev.ID))
			}
			if tc.breaker.FailureThreshold > 0 && primary.Total() != 2 {
				t.Errorf("primary received %d requests, want 2 (none after the replay: its circuit is open)", primary.Total())
			}
		})
	}
}

func TestProviderIdempotencyByJTI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := dt.NewReceiver(t, nil)
	target := dt.Webhook("primary", rcv.URL)
	target.Type = dt.TypeTwilio
	target.AtLeastOnce = false
	e.res.Set(org, target)

	// The delivery of this jti was recorded by an earlier run that crashed
	// before acknowledging its message.
	done := e.event(time.Minute)
	if _, err := e.st.InsertDeliveryTasks(context.Background(), []store.DeliveryTask{{
		OrgID: e.orgID, EventSource: done.Issuer, EventID: done.ID, DestinationType: dt.TypeTwilio, DestinationID: "primary",
		Event: []byte("{}"), Status: store.DeliveryDelivered, Attempts: 1, ExpiresAt: done.ExpiresAt,
	}}, nil); err != nil {
		t.Fatal(err)
	}
	e.start(testConfig(e.clock))
	fresh := e.event(time.Minute)
	e.publish(done, fresh)
	e.waitTask(fresh.ID, dt.TypeTwilio, "primary", store.DeliveryDelivered)
	if rcv.Requests(done.ID) != 0 {
		t.Errorf("an SMS already delivered was sent again")
	}
	if rcv.Delivered(fresh.ID) != 1 {
		t.Errorf("fresh delivered %d times", rcv.Delivered(fresh.ID))
	}
}

func TestDestinationRemovedEndsRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := dt.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ string, _ int) {
		w.WriteHeader(http.StatusInternalServerError)
	})
	e.res.Set(org, dt.Webhook("sub-1", rcv.URL))
	cfg := testConfig(e.clock)
	cfg.RetryPolicy.Schedule = []time.Duration{300 * time.Millisecond}
	e.start(cfg)
	ev := e.event(time.Hour)
	e.publish(ev)
	e.waitTask(ev.ID, dt.TypeWebhook, "sub-1", store.DeliveryPending)
	e.res.Remove(dt.TypeWebhook, "sub-1")
	task := e.waitTask(ev.ID, dt.TypeWebhook, "sub-1", store.DeliveryFailed)
	if task.LastError == "" {
		t.Error("no error recorded")
	}
}

func TestGracefulShutdownRecordsInFlightFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var mu sync.Mutex
	hang := true
	rcv := dt.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ string, _ int) {
		mu.Lock()
		h := hang
		mu.Unlock()
		if h {
			<-r.Context().Done()
		}
	})
	e.res.Set(org, dt.Webhook("sub-1", rcv.URL))
	cfg := testConfig(e.clock)
	cfg.DrainTimeout = 50 * time.Millisecond
	r := e.start(cfg)
	ev := e.event(time.Hour)
	e.publish(ev)
	dt.Eventually(t, 10*time.Second, func() bool { return rcv.Total() == 1 }, "no attempt started")
	r.stop(t) // drain times out; the attempt is cancelled and recorded as a retry
	task, err := e.st.FindDelivery(context.Background(), e.orgID, dt.Issuer, ev.ID, dt.TypeWebhook, "sub-1")
	if err != nil || task.Status != store.DeliveryPending {
		t.Fatalf("after shutdown: task %+v, err %v; want a pending retry task", task, err)
	}
	mu.Lock()
	hang = false
	mu.Unlock()
	e.start(cfg)
	e.waitTask(ev.ID, dt.TypeWebhook, "sub-1", store.DeliveryDelivered)
}

func TestMetricsExportedAtZero(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e := newEnv(t)
	if _, err := dispatcher.New(dispatcher.Config{}, e.log, e.log, e.st, []delivery.Resolver{dt.NewResolver()}, nil, reg); err != nil {
		t.Fatal(err)
	}
	for _, d := range dt.Types {
		for _, o := range []string{"delivered", "retry_scheduled", "expired", "dead", "failed"} {
			metric(t, reg, "otphub_deliveries_total", map[string]string{"destination": d, "outcome": o})
		}
		for _, o := range []string{"success", "retry", "permanent"} {
			metric(t, reg, "otphub_delivery_attempts_total", map[string]string{"destination": d, "outcome": o})
		}
		for _, rs := range delivery.Reasons {
			metric(t, reg, "otphub_delivery_failures_total", map[string]string{"destination": d, "reason": string(rs)})
		}
		metric(t, reg, "otphub_retries_scheduled_total", map[string]string{"destination": d})
		metric(t, reg, "otphub_delivery_latency_seconds", map[string]string{"destination": d})
		metric(t, reg, "otphub_delivery_attempt_duration_seconds", map[string]string{"destination": d})
	}
	for _, s := range []string{"closed", "open", "half_open"} {
		metric(t, reg, "otphub_circuit_breakers", map[string]string{"state": s})
	}
	for _, name := range []string{"otphub_delivery_queue_depth", "otphub_delivery_queue_oldest_age_seconds", "otphub_dead_letters", "otphub_log_consumer_lag_records"} {
		metric(t, reg, name, nil)
	}
	// A second engine on the same registry is refused, not a panic.
	if _, err := dispatcher.New(dispatcher.Config{}, e.log, e.log, e.st, nil, nil, reg); err == nil {
		t.Error("duplicate registration accepted")
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for name, cfg := range map[string]dispatcher.Config{
		"negative workers": {Workers: -1},
		"lease too short":  {AttemptTimeout: time.Minute, LeaseDuration: time.Second},
		"jitter":           {RetryPolicy: dispatcher.RetryPolicy{Jitter: 1.5}},
		"retry-after":      {RetryPolicy: dispatcher.RetryPolicy{MinRetryAfter: time.Hour, MaxRetryAfter: time.Second}},
		"schedule":         {RetryPolicy: dispatcher.RetryPolicy{Schedule: []time.Duration{-time.Second}}},
	} {
		if _, err := dispatcher.New(cfg, e.log, e.log, e.st, nil, nil, prometheus.NewRegistry()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := dispatcher.New(dispatcher.Config{}, nil, e.log, e.st, nil, nil, prometheus.NewRegistry()); err == nil {
		t.Error("nil subscriber accepted")
	}
	if _, err := dispatcher.New(dispatcher.Config{}, e.log, e.log, e.st, []delivery.Resolver{nil}, nil, prometheus.NewRegistry()); err == nil {
		t.Error("nil resolver accepted")
	}
}

// TestProviderIdempotencyByProducer: event IDs are free-form, so two
// producers may both send "ext-0001", and each one's SMS is sent (a repeat
// of one producer's is not: TestProviderIdempotencyByJTI).
func TestProviderIdempotencyByProducer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rcv := dt.NewReceiver(t, nil)
	target := dt.Webhook("primary", rcv.URL)
	target.Type = dt.TypeTwilio
	e.res.Set(org, target)
	e.start(testConfig(e.clock))
	one, two := e.event(time.Minute), e.event(time.Minute)
	one.ID, two.ID = "ext-0001", "ext-0001"
	one.Issuer, two.Issuer = "https://producer-one.example", "urn:producer:two"
	two.MessageBody = "Your code is 999999"
	e.publish(one, two)
	for _, ev := range []*event.SmsOtpNotificationEvent{one, two} {
		dt.Eventually(t, 20*time.Second, func() bool {
			task, err := e.st.FindDelivery(context.Background(), e.orgID, ev.Issuer, ev.ID, dt.TypeTwilio, "primary")
			return err == nil && task.Status == store.DeliveryDelivered
		}, "the SMS of %s was not delivered", ev.Issuer)
	}
	if n := rcv.Delivered("ext-0001"); n != 2 {
		t.Errorf("ext-0001 delivered %d times, want once per producer", n)
	}
}

func TestFinishedTasksPurgedAfterRetention(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	old, fresh := e.event(time.Hour), e.event(time.Hour)
	now := time.Now()
	var tasks []store.DeliveryTask
	for _, x := range []struct {
		ev      *event.SmsOtpNotificationEvent
		updated time.Time
	}{{old, now.Add(-8 * 24 * time.Hour)}, {fresh, now.Add(-time.Hour)}} {
		tasks = append(tasks, store.DeliveryTask{OrgID: e.orgID, EventSource: x.ev.Issuer, EventID: x.ev.ID, DestinationType: dt.TypeWebhook,
			DestinationID: "sub-1", Event: []byte("{}"), Status: store.DeliveryDelivered, Attempts: 1,
			CreatedAt: x.updated, UpdatedAt: x.updated})
	}
	if _, err := e.st.InsertDeliveryTasks(context.Background(), tasks, nil); err != nil {
		t.Fatal(err)
	}
	e.start(testConfig(e.clock))
	dt.Eventually(t, 10*time.Second, func() bool {
		_, err := e.st.FindDelivery(context.Background(), e.orgID, dt.Issuer, old.ID, dt.TypeWebhook, "sub-1")
		return errors.Is(err, store.ErrNotFound)
	}, "the task past retention was not purged")
	if _, err := e.st.FindDelivery(context.Background(), e.orgID, dt.Issuer, fresh.ID, dt.TypeWebhook, "sub-1"); err != nil {
		t.Errorf("a task within retention was purged: %v", err)
	}
}
