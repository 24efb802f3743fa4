package oauth

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	tokenRequests *prometheus.CounterVec
}

var tokenOutcomes = []string{"issued", "invalid_request", "invalid_client", "unsupported_grant_type", "invalid_scope", "rate_limited", "server_error"}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		tokenRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "otphub_oauth_token_requests_total",
			Help: "Requests to POST /oauth2/token, by outcome (issued or the OAuth error code).",
		}, []string{"outcome"}),
	}
	for _, o := range tokenOutcomes {
		m.tokenRequests.WithLabelValues(o)
	}
	if reg != nil {
		if err := reg.Register(m.tokenRequests); err != nil {
			return nil, err
		}
	}
	return m, nil
}
