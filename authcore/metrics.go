package authcore

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	challengesStarted prometheus.Counter
	resends           *prometheus.CounterVec
	verifications     *prometheus.CounterVec
	sendLimited       *prometheus.CounterVec
	eventsPublished   prometheus.Counter
	publishFailures   prometheus.Counter
	overloaded        *prometheus.CounterVec
}

var (
	resendOutcomes      = []string{"sent", "limit_exceeded", "too_soon", "rate_limited", "backlogged", "failed"}
	verificationResults = []string{"verified", "invalid_code", "expired", "too_many_attempts", "backup_code"}
	limitScopes         = []string{"number", "ip", "org"}
	admittedOperations  = []string{"start", "resend", "verify"}
)

// EventsPublishedHelp is the help text of otphub_events_published_total;
// every component registering it must use exactly this text so they share
// one metric family.
const EventsPublishedHelp = "SMS OTP events appended to the notifications log, by source."

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		challengesStarted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otphub_otp_challenges_started_total",
			Help: "SMS OTP challenges started (their OTP event durable in the log).",
		}),
		resends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otphub_otp_resends_total",
			Help: "SMS OTP resend requests, by outcome.",
		}, []string{"outcome"}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otphub_otp_verifications_total",
			Help: "SMS OTP verifications, by result.",
		}, []string{"result"}),
		sendLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otphub_otp_send_limited_total",
			Help: "SMS OTP sends refused by an abuse limit, by the limit's scope.",
		}, []string{"scope"}),
		overloaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otphub_otp_overloaded_total",
			Help: "SMS OTP requests refused because no admission slot freed in time (503 overloaded), by operation.",
		}, []string{"operation"}),
		publishFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "otphub_otp_publish_failures_total",
			Help: "SMS OTP events the log did not accept (the request answered 503).",
		}),
	}
	published := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "otphub_events_published_total",
		Help: EventsPublishedHelp,
	}, []string{"source"})
	for _, o := range resendOutcomes {
		m.resends.WithLabelValues(o)
	}
	for _, r := range verificationResults {
		m.verifications.WithLabelValues(r)
	}
	for _, sc := range limitScopes {
		m.sendLimited.WithLabelValues(sc)
	}
	for _, op := range admittedOperations {
		m.overloaded.WithLabelValues(op)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.challengesStarted, m.resends, m.verifications, m.sendLimited, m.publishFailures, m.overloaded} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
		// The hub registers the same family for source="http": share it.
		if err := reg.Register(published); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return nil, err
			}
			published = existing
		}
	}
	m.eventsPublished = published.WithLabelValues("authcore")
	return m, nil
}
