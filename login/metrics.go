package login

import "github.com/prometheus/client_golang/prometheus"

// outcomes are the login step's outcomes, the label of
// otphub_login_outcomes_total.
var outcomes = []string{
	"started",         // an authorization request was accepted and the prompt shown
	"refused",         // an authorization request was refused (redirected with an error)
	"rejected",        // an authorization request was refused with an error page (unknown client or redirect URI)
	"sms_verified",    // the user finished with the SMS code
	"backup_verified", // the user finished with a backup code
	"invalid_code",    // a wrong SMS or backup code
	"expired_code",    // an expired SMS code
	"locked_out",      // refused by the user's lockout
	"send_refused",    // an SMS could not be sent (budget, backlog, log)
	"cancelled",       // the user cancelled
	"expired_flow",    // the flow expired before it was finished
	"token_issued",    // a code was redeemed for an ID token
	"token_refused",   // a token request with a code was refused
}

type metrics struct{ outcomes *prometheus.CounterVec }

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "otphub_login_outcomes_total",
		Help: "Hosted login step outcomes, by outcome.",
	}, []string{"outcome"})}
	for _, o := range outcomes {
		m.outcomes.WithLabelValues(o)
	}
	if reg != nil {
		if err := reg.Register(m.outcomes); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) outcome(o string) { m.outcomes.WithLabelValues(o).Inc() }
