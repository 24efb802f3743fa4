package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/otphub/otphub/egress"
)

// ClassifyHTTP classifies an HTTP answer for destinations that speak plain
// HTTP status codes (webhooks, custom gateways): any 2xx is success; 408,
// 425, 429 and 5xx are worth retrying, honouring their Retry-After; 410 is
// gone for good; 401/403 are credential errors; other 4xx and any 3xx
// (redirects are never followed) are permanent. It is the one HTTP
// classifier: destinations adjust its answer rather than write another.
func ClassifyHTTP(status int, header http.Header, now time.Time) Result {
	r := Result{StatusCode: status}
	switch {
	case status >= 200 && status < 300:
		r.OK = true
		return r
	case status == http.StatusTooManyRequests:
		r.Retry, r.Reason = true, ReasonRateLimited
	case status >= 500:
		r.Retry, r.Reason = true, ReasonServerError
	case status == http.StatusRequestTimeout:
		r.Retry, r.Reason = true, ReasonTimeout
	case status == http.StatusTooEarly:
		r.Retry, r.Reason = true, ReasonClientError
	case status == http.StatusGone:
		r.Reason = ReasonGone
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		r.Reason = ReasonAuthError
	case status >= 400:
		r.Reason = ReasonClientError
	case status >= 300:
		r.Reason = ReasonRedirect
	default: // 1xx or nonsense: the endpoint misbehaves, perhaps for a while
		r.Retry, r.Reason = true, ReasonServerError
	}
	if r.Retry {
		r.RetryAfter = ParseRetryAfter(header.Get("Retry-After"), now)
	}
	r.Err = fmt.Errorf("the endpoint answered %s", strings.TrimSpace(fmt.Sprintf("%d %s", status, http.StatusText(status))))
	return r
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
