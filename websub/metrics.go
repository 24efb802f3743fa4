package websub

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/store"
)

// Outcomes of otphub_websub_intent_verifications_total.
const (
	outcomeVerified = "verified" // 2xx echoing the challenge: the action applied
	outcomeRejected = "rejected" // the callback answered, but not 2xx with the challenge
	outcomeFailed   = "failed"   // no answer: connection error, timeout, egress refusal
	outcomeDenied   = "denied"   // the hub refused the subscription and sent hub.mode=denied
)

// eventsPublishedHelp must equal authcore.EventsPublishedHelp, word for
// word: the registry shares one family between the auth core and the hub
// only when their descriptors are identical.
const eventsPublishedHelp = "SMS OTP events appended to the notifications log, by source."

type metrics struct {
	published     *prometheus.CounterVec
	verifications *prometheus.CounterVec
	subscriptions *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otphub_events_published_total",
			Help: eventsPublishedHelp,
		}, []string{"source"}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otphub_websub_intent_verifications_total",
			Help: "WebSub intent verifications by outcome (verified, rejected, failed, denied).",
		}, []string{"outcome"}),
		subscriptions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "otphub_websub_subscriptions",
			Help: "WebSub subscriptions by state (pending: verification in flight on this replica).",
		}, []string{"state"}),
	}
	if reg != nil {
		// The auth core counts otphub_events_published_total too: share
		// the collector if it registered first.
		if err := reg.Register(m.published); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("websub: register metrics: %w", err)
			}
			cv, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return nil, fmt.Errorf("websub: register metrics: %w", err)
			}
			m.published = cv
		}
		for _, c := range []prometheus.Collector{m.verifications, m.subscriptions} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("websub: register metrics: %w", err)
			}
		}
	}
	m.published.WithLabelValues("http")
	m.published.WithLabelValues("test")
	for _, o := range []string{outcomeVerified, outcomeRejected, outcomeFailed, outcomeDenied} {
		m.verifications.WithLabelValues(o)
	}
	for _, s := range []string{store.SubPending, store.SubActive, store.SubDisabled} {
		m.subscriptions.WithLabelValues(s)
	}
	return m, nil
}
