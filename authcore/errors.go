package authcore

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/otphub/otphub/internal/httpx"
)

// Error is a refusal the caller can act on, as the API answers it: the
// HTTP status, the error code and message, how long to wait before trying
// again (Retry-After) and extra fields (attemptsRemaining). The hosted
// login prompt shows the same refusals as messages; every other error of
// a Service method is an internal failure.
type Error struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
	// AttemptsRemaining is set (>= 0) on invalid_code.
	AttemptsRemaining int
}

func (e *Error) Error() string { return "authcore: " + e.Code + ": " + e.Message }

func refuse(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg, AttemptsRemaining: -1}
}

func refuseAfter(status int, code, msg string, wait time.Duration) *Error {
	e := refuse(status, code, msg)
	e.RetryAfter = max(wait, time.Second)
	return e
}

// AsError returns err's *Error, or nil for an internal failure.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// writeError answers err: an *Error as it says, anything else as a logged
// 500 (what names the operation).
func (s *Service) writeError(w http.ResponseWriter, what string, err error) {
	e := AsError(err)
	if e == nil {
		s.internal(w, what, err)
		return
	}
	if e.RetryAfter > 0 {
		httpx.RetryAfter(w, e.RetryAfter)
	}
	if e.AttemptsRemaining >= 0 {
		httpx.ErrorWith(w, e.Status, e.Code, e.Message, map[string]any{"attemptsRemaining": e.AttemptsRemaining})
		return
	}
	httpx.Error(w, e.Status, e.Code, e.Message)
}

func wrapf(err error, what string) error { return fmt.Errorf("%s: %w", what, err) }
