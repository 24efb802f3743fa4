package dispatcher

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/dispatcher/isolation"
	"github.com/otphub/otphub/store"
)

// Delivery outcomes, the outcome label of otphub_deliveries_total.
const (
	deliveredOutcome      = "delivered"
	retryScheduledOutcome = "retry_scheduled"
	expiredOutcome        = "expired"
	deadOutcome           = "dead"
	failedOutcome         = "failed"
)

var deliveryOutcomes = []string{deliveredOutcome, retryScheduledOutcome, expiredOutcome, deadOutcome, failedOutcome}

// deliveryOutcome maps a task status to its otphub_deliveries_total outcome.
func deliveryOutcome(status string) string {
	switch status {
	case store.DeliveryPending:
		return retryScheduledOutcome
	case store.DeliveryDelivered:
		return deliveredOutcome
	case store.DeliveryExpired:
		return expiredOutcome
	case store.DeliveryDead:
		return deadOutcome
	default:
		return failedOutcome
	}
}

type metrics struct {
	destinations     map[string]bool          // the values of the destination label
	deliveries       *prometheus.CounterVec   // destination, outcome
	attempts         *prometheus.CounterVec   // destination, outcome
	failures         *prometheus.CounterVec   // destination, reason
	latency          *prometheus.HistogramVec // destination
	attemptDuration  *prometheus.HistogramVec // destination
	queueDepth       prometheus.Gauge
	queueOldest      prometheus.Gauge
	retriesScheduled *prometheus.CounterVec // destination
	deadLetters      prometheus.Gauge
	undecodable      prometheus.Counter
	breakers         *prometheus.GaugeVec // state
	consumerLag      prometheus.Gauge
	logWait          prometheus.Histogram
}

// newMetrics registers the metrics with reg, each destination type's
// series exported at zero.
func newMetrics(reg prometheus.Registerer, types []string) (*metrics, error) {
	m := &metrics{
		destinations: map[string]bool{},
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otphub_deliveries_total",
			Help: "Deliveries that reached an outcome (a scheduled retry counts each time), by destination type.",
		}, []string{"destination", "outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otphub_delivery_attempts_total",
			Help: "Delivery attempts made, by destination type and outcome (success, retry, permanent).",
		}, []string{"destination", "outcome"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otphub_delivery_failures_total",
			Help: "Failed delivery attempts (and attempts refused by an open circuit), by destination type and reason.",
		}, []string{"destination", "reason"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "otphub_delivery_latency_seconds",
			Help:    "Time from an event's issue (iat) to the destination's 2xx.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"destination"}),
		attemptDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "otphub_delivery_attempt_duration_seconds",
			Help:    "Duration of one delivery attempt.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"destination"}),
		queueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otphub_delivery_queue_depth",
			Help: "Delivery tasks pending a retry (all processes sharing the store).",
		}),
		queueOldest: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otphub_delivery_queue_oldest_age_seconds",
			Help: "Age of the oldest pending delivery task, 0 when none.",
		}),
		retriesScheduled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otphub_retries_scheduled_total",
			Help: "Retries scheduled after a failed or refused attempt, by destination type.",
		}, []string{"destination"}),
		deadLetters: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otphub_dead_letters",
			Help: "Delivery tasks on the dead-letter list (retries exhausted), awaiting replay or purge.",
		}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otphub_log_records_dead_lettered_total",
			Help: "Log records the router could not decode, copied to the dead-letter topic and acknowledged (never delivered).",
		}),
		breakers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "otphub_circuit_breakers",
			Help: "Endpoints in use by this process, by circuit breaker state.",
		}, []string{"state"}),
		consumerLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "otphub_log_consumer_lag_records",
			Help: "Records in the log not yet received by this process's consumer (when the log adapter reports it).",
		}),
		logWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "otphub_log_wait_seconds",
			Help:    "Time from a record's append to the log to this process's router taking it: how far behind the dispatcher reads.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
	}
	for _, c := range []prometheus.Collector{m.deliveries, m.attempts, m.failures, m.latency, m.attemptDuration,
		m.queueDepth, m.queueOldest, m.retriesScheduled, m.deadLetters, m.undecodable, m.breakers, m.consumerLag, m.logWait} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, d := range types {
		m.destinations[d] = true
		for _, o := range deliveryOutcomes {
			m.deliveries.WithLabelValues(d, o)
		}
		for _, o := range []string{OutcomeSuccess, OutcomeRetry, OutcomePermanent} {
			m.attempts.WithLabelValues(d, o)
		}
		for _, r := range delivery.Reasons {
			m.failures.WithLabelValues(d, string(r))
		}
		m.latency.WithLabelValues(d)
		m.attemptDuration.WithLabelValues(d)
		m.retriesScheduled.WithLabelValues(d)
	}
	for _, s := range isolation.States {
		m.breakers.WithLabelValues(s)
	}
	return m, nil
}

// dest bounds the destination label to the resolvers' types.
func (m *metrics) dest(t string) string {
	if m.destinations[t] {
		return t
	}
	return "other"
}
