package receipts

import (
	"strconv"

	"github.com/nyaruka/phonenumbers"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/store"
)

type metrics struct {
	callbacks *prometheus.CounterVec   // provider, result
	outcomes  *prometheus.CounterVec   // provider, country, outcome
	latency   *prometheus.HistogramVec // provider, country
	failovers *prometheus.CounterVec   // provider, reason, outcome
	accepted  *prometheus.CounterVec   // provider, country
	verified  *prometheus.CounterVec   // provider, country
}

var (
	providers = []string{TypeTwilio, TypeVonage, TypeCustom}
	outcomes  = []string{store.HandsetDelivered, store.HandsetUndelivered, store.HandsetFailed, ReasonNoReceipt}
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "otphub_sms_receipt_callbacks_total",
			Help: "Delivery receipt callbacks received, by provider and result (applied, duplicate, forged, expired, malformed, unknown_message, not_configured, error)."},
			[]string{"provider", "result"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "otphub_sms_handset_outcomes_total",
			Help: "SMS by their first final handset state (delivered, undelivered, failed) or no_receipt (silent past the window), by provider and country calling code."},
			[]string{"provider", "country", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "otphub_sms_receipt_latency_seconds",
			Help:    "From the provider accepting an SMS to its final handset state, by provider and country calling code.",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600}},
			[]string{"provider", "country"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "otphub_sms_failovers_total",
			Help: "SMS handed to the fallback provider after their receipts, by the primary's provider, reason (undelivered, failed, no_receipt) and outcome (sent, no_fallback)."},
			[]string{"provider", "reason", "outcome"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "otphub_sms_accepted_total",
			Help: "OTP SMS accepted by a provider's API, by provider and country calling code (the conversion rate's denominator)."},
			[]string{"provider", "country"}),
		verified: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "otphub_sms_otp_verified_total",
			Help: "Verified OTPs, by the provider that delivered their SMS and country calling code (the conversion rate's numerator)."},
			[]string{"provider", "country"}),
	}
	for _, c := range []prometheus.Collector{m.callbacks, m.outcomes, m.latency, m.failovers, m.accepted, m.verified} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, p := range providers {
		for _, r := range results {
			m.callbacks.WithLabelValues(p, r)
		}
		for _, o := range outcomes {
			m.outcomes.WithLabelValues(p, countryOther, o)
		}
		for _, reason := range []string{ReasonUndelivered, ReasonFailed, ReasonNoReceipt} {
			for _, o := range []string{store.FailoverSent, store.FailoverNoFallback} {
				m.failovers.WithLabelValues(p, reason, o)
			}
		}
	}
	return m, nil
}

// countryOther labels numbers without a known calling code.
const countryOther = "other"

// countryLabel is the country label of a calling code: the code itself
// when libphonenumber knows it (a bounded set of about 215), else "other".
// Never a number's other digits.
func countryLabel(cc int) string {
	if cc <= 0 || phonenumbers.GetRegionCodeForCountryCode(cc) == phonenumbers.UNKNOWN_REGION {
		return countryOther
	}
	return strconv.Itoa(cc)
}

// providerLabel bounds the provider label to the receipt providers.
func providerLabel(t string) string {
	for _, p := range providers {
		if p == t {
			return t
		}
	}
	return "other"
}
