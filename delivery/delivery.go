// Package delivery is the port between the delivery engine (package
// dispatcher) and the integrations: a Sender delivers one event to one
// destination and classifies the answer into a Result; a Resolver turns an
// org's event into its Targets. Integrations (websub/webhook and the SMS
// providers under smsprovider/) import this package, never the engine.
// It also holds what every HTTP sender shares: the one classifier of HTTP
// answers and transport errors, and the no-redirect client.
package delivery

import (
	"context"
	"strconv"
	"time"

	"github.com/otphub/otphub/event"
)

// Reason is why an attempt failed: a small closed set, used as a metric label.
type Reason string

// The failure reasons.
const (
	ReasonNone            Reason = ""
	ReasonTimeout         Reason = "timeout"          // connect or total timeout
	ReasonConnection      Reason = "connection"       // refused, reset, DNS failure
	ReasonEgressRefused   Reason = "egress_refused"   // the SSRF guard refused the address
	ReasonRedirect        Reason = "redirect"         // 3xx; never followed
	ReasonRateLimited     Reason = "rate_limited"     // 429 or a provider's throttling code
	ReasonAuthError       Reason = "auth_error"       // 401/403 or a provider's credentials error
	ReasonClientError     Reason = "client_error"     // other 4xx
	ReasonServerError     Reason = "server_error"     // 5xx
	ReasonGone            Reason = "gone"             // 410: the subscription ends
	ReasonProviderRefused Reason = "provider_refused" // the provider refused the message (bad number, opted out…)
	ReasonCircuitOpen     Reason = "circuit_open"     // not attempted: the endpoint's breaker is open
	ReasonInvalid         Reason = "invalid"          // the destination's config cannot render this event
	// ReasonPolicyRefused: not sent, the org's SMS policy refuses it
	// (number type, country, a spent budget: smspolicy). Permanent, and
	// never handed over to a fallback, which the same policy refuses.
	ReasonPolicyRefused Reason = "policy_refused"
)

// Reasons lists every failure reason, so metrics can export each at zero.
var Reasons = []Reason{ReasonTimeout, ReasonConnection, ReasonEgressRefused, ReasonRedirect,
	ReasonRateLimited, ReasonAuthError, ReasonClientError, ReasonServerError, ReasonGone,
	ReasonProviderRefused, ReasonCircuitOpen, ReasonInvalid, ReasonPolicyRefused}

// Result is what one attempt to deliver came to. The Sender classifies; the
// engine decides what happens next (retry, dead letter, end the subscription).
type Result struct {
	// OK is true when the destination accepted the event (any 2xx, or the
	// provider's own success status).
	OK bool
	// Retry is true when a later attempt may succeed (timeouts, 429, 5xx…);
	// false for permanent errors. Ignored when OK.
	Retry bool
	// RetryAfter is the destination's requested delay (Retry-After), 0 if none.
	RetryAfter time.Duration
	Reason     Reason
	StatusCode int    // HTTP status, 0 when there was no answer
	Err        error  // what went wrong, for the attempt log; never holds a secret
	ProviderID string // the provider's message ID (Twilio SID, Vonage message-id), if any
}

// EndpointKey names t's remote endpoint within the org orgID: what the
// dispatcher's isolation gate keeps a circuit, a cap and a queue for (one
// org's endpoint never shares them with another org's on the same host).
func (t *Target) EndpointKey(orgID int64) string {
	ep := t.Endpoint
	if ep == "" {
		ep = t.Type + ":" + t.ID
	}
	return strconv.FormatInt(orgID, 10) + " " + ep
}

// Sender delivers an event to one destination. Send must honour ctx's
// deadline and must not retry by itself.
type Sender interface {
	Send(ctx context.Context, ev *event.SmsOtpNotificationEvent) Result
}

// Target is one resolved destination of an event.
type Target struct {
	Type string // the destination type: "webhook", or an SMS provider's type
	ID   string // subscription ID, or provider slot
	// Endpoint identifies the remote endpoint for the circuit breaker and
	// concurrency cap (e.g. the callback's scheme://host:port); never a
	// metric label.
	Endpoint string
	Sender   Sender
	// AtLeastOnce is true when a duplicate is harmless (a webhook receiver
	// drops it by its webhook-id): the engine then sends a first attempt
	// without first looking for a recorded delivery, and writes the record
	// of a success in batches, off the hot path. False (an SMS costs money
	// and reaches a person): a delivery on record is never sent again.
	AtLeastOnce bool
	// Fallback, if set, is tried when Sender fails permanently or its
	// circuit is open (a provider's fallback slot).
	Fallback *Target
	// OnGone, if set, is called when the destination answers that it is
	// gone for good (ReasonGone: a WebSub callback's 410 ends its subscription).
	OnGone func(ctx context.Context) error
	// OnDelivered, if set, is told of each delivery recorded delivered,
	// with its result (the provider's message ID) and its expiry bound: an
	// SMS provider's acceptance, which delivery receipts follow from there.
	// It runs after the delivery is recorded and must not block for long.
	OnDelivered func(ctx context.Context, ev *event.SmsOtpNotificationEvent, r Result, expires time.Time)
}

// Resolver resolves the destinations of an org's event. Implementations
// cache: Resolve runs once per event on the hot path.
type Resolver interface {
	// Resolve returns the targets of ev (none is not an error).
	Resolve(ctx context.Context, ev *event.SmsOtpNotificationEvent) ([]Target, error)
	// Types lists the destination types the resolver resolves: a retry
	// task's type picks the resolver that rebuilds it, and each type is a
	// value of the destination label of the delivery metrics.
	Types() []string
	// Lookup rebuilds the target a retry task names; destType is one of
	// Types. It returns store.ErrNotFound when the destination no longer
	// exists (the subscription was deleted, the provider removed).
	Lookup(ctx context.Context, orgID int64, destType, destID string) (Target, error)
}
