package delivery_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/egress"
)

func TestClassifyHTTPEveryStatus(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for code := 100; code <= 599; code++ {
		r := delivery.ClassifyHTTP(code, http.Header{}, now)
		var wantOK, wantRetry bool
		var wantReason delivery.Reason
		switch {
		case code >= 200 && code < 300:
			wantOK = true
		case code == 429:
			wantRetry, wantReason = true, delivery.ReasonRateLimited
		case code >= 500:
			wantRetry, wantReason = true, delivery.ReasonServerError
		case code == 408:
			wantRetry, wantReason = true, delivery.ReasonTimeout
		case code == 425:
			wantRetry, wantReason = true, delivery.ReasonClientError
		case code == 410:
			wantReason = delivery.ReasonGone
		case code == 401 || code == 403:
			wantReason = delivery.ReasonAuthError
		case code >= 400:
			wantReason = delivery.ReasonClientError
		case code >= 300:
			wantReason = delivery.ReasonRedirect
		default:
			wantRetry, wantReason = true, delivery.ReasonServerError
		}
		if r.OK != wantOK || r.Retry != wantRetry || r.Reason != wantReason || r.StatusCode != code {
			t.Errorf("%d: got ok=%v retry=%v reason=%q, want ok=%v retry=%v reason=%q", code, r.OK, r.Retry, r.Reason, wantOK, wantRetry, wantReason)
		}
		if !wantOK && r.Err == nil {
			t.Errorf("%d: no Err for the attempt log", code)
		}
	}
}

func TestClassifyHTTPRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		status int
		value  string
		want   time.Duration
	}{
		{429, "7", 7 * time.Second},
		{503, "7", 7 * time.Second},
		{500, "7", 7 * time.Second},
		{400, "7", 0}, // permanent: no retry, no delay
		{301, "7", 0},
		{429, "", 0},
		{429, "-3", 0},
		{429, "soon", 0},
		{429, "99999999999", 24 * time.Hour},
		{429, now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{429, now.Add(-time.Hour).Format(http.TimeFormat), 0},
	} {
		h := http.Header{}
		if tc.value != "" {
			h.Set("Retry-After", tc.value)
		}
		if got := delivery.ClassifyHTTP(tc.status, h, now).RetryAfter; got != tc.want {
			t.Errorf("%d Retry-After %q: %v, want %v", tc.status, tc.value, got, tc.want)
		}
	}
}

func TestClassifyTransport(t *testing.T) {
	refused := &url.Error{Op: "Post", URL: "http://10.0.0.1/cb?token=s3cret", Err: &egress.RefusedError{Host: "10.0.0.1", Reason: "private address"}}
	timeout := &url.Error{Op: "Post", URL: "http://x/cb?token=s3cret", Err: context.DeadlineExceeded}
	conn := &url.Error{Op: "Post", URL: "http://x/cb?token=s3cret", Err: errors.New("connect: connection refused")}
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		err    error
		retry  bool
		reason delivery.Reason
	}{
		{"egress refused", context.Background(), refused, false, delivery.ReasonEgressRefused},
		{"timeout", context.Background(), timeout, true, delivery.ReasonTimeout},
		{"context ended", expired, conn, true, delivery.ReasonTimeout},
		{"connection", context.Background(), conn, true, delivery.ReasonConnection},
	} {
		r := delivery.ClassifyTransport(tc.ctx, "webhook", tc.err)
		if r.OK || r.Retry != tc.retry || r.Reason != tc.reason {
			t.Errorf("%s: %+v", tc.name, r)
		}
		if msg := r.Err.Error(); strings.Contains(msg, "s3cret") || !strings.HasPrefix(msg, "webhook: ") {
			t.Errorf("%s: error %q must name the destination and drop the URL", tc.name, msg)
		}
	}
}
