package delivery

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/otphub/otphub/egress"
)

// Rule is what an answer means: whether a later attempt may succeed, and why
// the attempt failed.
type Rule struct {
	Retry  bool
	Reason Reason
}

// Classifier classifies HTTP answers by a table: the rule of the exact
// status if the table has one, else of its class. Integrations extend the
// base table (HTTP) with With, never with a switch of their own, so every
// HTTP sender agrees on every status it does not deliberately redefine.
type Classifier struct {
	rules map[int]Rule // by status, and by class (1 … 5) for the rest
}

// HTTP is the base table, for destinations that speak plain HTTP status
// codes (webhooks): any 2xx is success; 408, 425, 429 and 5xx are worth
// retrying, honouring their Retry-After; 410 is gone for good; 401/403 are
// credential errors; other 4xx and any 3xx (redirects are never followed)
// are permanent; a 1xx or nonsense status is the endpoint misbehaving,
// perhaps for a while (retried).
var HTTP = Classifier{rules: map[int]Rule{
	1: {Retry: true, Reason: ReasonServerError},
	2: {},
	3: {Reason: ReasonRedirect},
	4: {Reason: ReasonClientError},
	5: {Retry: true, Reason: ReasonServerError},

	http.StatusUnauthorized:    {Reason: ReasonAuthError},
	http.StatusForbidden:       {Reason: ReasonAuthError},
	http.StatusRequestTimeout:  {Retry: true, Reason: ReasonTimeout},
	http.StatusGone:            {Reason: ReasonGone},
	http.StatusTooEarly:        {Retry: true, Reason: ReasonClientError},
	http.StatusTooManyRequests: {Retry: true, Reason: ReasonRateLimited},
}}

// Provider is HTTP for SMS providers and gateways: 410 is an ordinary
// client error ("gone" ends WebSub subscriptions, not an SMS provider).
var Provider = HTTP.With(map[int]Rule{http.StatusGone: {Reason: ReasonClientError}})

// With returns c with the rules of statuses added or replaced.
func (c Classifier) With(statuses map[int]Rule) Classifier {
	rules := maps.Clone(c.rules)
	maps.Copy(rules, statuses)
	return Classifier{rules: rules}
}

// Rule returns the rule of status: the table's rule of the status, else
// of its class. A rule without a Reason is success.
func (c Classifier) Rule(status int) Rule {
	if r, ok := c.rules[status]; ok {
		return r
	}
	class := status / 100
	if class < 1 || class > 5 {
		class = 1
	}
	return c.rules[class]
}

// Classify classifies an answer with status and header, received at now:
// its rule, and for a retryable one the Retry-After it asks for.
func (c Classifier) Classify(status int, header http.Header, now time.Time) Result {
	return c.Rule(status).Result(status, header, now)
}

// Result is the Result of an answer with status and header, received at
// now, that this rule classifies: for a retryable one, with the
// Retry-After it asks for.
func (rule Rule) Result(status int, header http.Header, now time.Time) Result {
	r := Result{StatusCode: status}
	if rule.Reason == ReasonNone {
		r.OK = true
		return r
	}
	r.Retry, r.Reason = rule.Retry, rule.Reason
	if r.Retry {
		r.RetryAfter = ParseRetryAfter(header.Get("Retry-After"), now)
	}
	r.Err = fmt.Errorf("the endpoint answered %s", strings.TrimSpace(fmt.Sprintf("%d %s", status, http.StatusText(status))))
	return r
}

// ClassifyHTTP is HTTP.Classify.
func ClassifyHTTP(status int, header http.Header, now time.Time) Result {
	return HTTP.Classify(status, header, now)
}

// maxRetryAfter caps a parsed Retry-After (the policy bounds it further).
const maxRetryAfter = 24 * time.Hour

// ParseRetryAfter reads a Retry-After header value (delay-seconds or an
// HTTP-date relative to now); 0 when absent, malformed or in the past.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(0, t.Sub(now)), maxRetryAfter)
	}
	return 0
}

// ClassifyTransport classifies a request that got no HTTP answer: a refusal
// by the egress guard is permanent; timeouts (or ctx ending) and connection
// failures are worth retrying. The request URL is dropped from the error
// (a callback's query may hold a capability token); name (the destination
// type) prefixes it. It is the one transport classifier of the senders.
func ClassifyTransport(ctx context.Context, name string, err error) Result {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	err = fmt.Errorf("%s: %w", name, err)
	var ne net.Error
	switch {
	case egress.IsRefused(err):
		return Result{Reason: ReasonEgressRefused, Err: err}
	case errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()):
		return Result{Retry: true, Reason: ReasonTimeout, Err: err}
	default:
		return Result{Retry: true, Reason: ReasonConnection, Err: err}
	}
}
