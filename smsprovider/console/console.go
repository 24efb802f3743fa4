// Package console is a development-only SMS provider: it writes each OTP
// SMS to a writer (the server's standard output), clearly marked, so otphub
// can run end to end without a provider account. It is never used unless
// an org explicitly chooses provider type "console" and the server allows
// it (smsprovider.Config.AllowConsole).
package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/event"
)

// Marker starts every line the console provider writes.
const Marker = "[otphub console SMS — development only]"

// Sender writes SMS to a writer. Safe for concurrent use: each SMS is
// written as one line in one Write call.
type Sender struct {
	mu sync.Mutex
	w  io.Writer
}

// New returns a Sender writing to w.
func New(w io.Writer) *Sender { return &Sender{w: w} }

// Endpoint is the circuit breaker key of the console.
func (s *Sender) Endpoint() string { return "console:" }

// Send writes one line: the marker, the org, the recipient, the event ID
// and the quoted body.
func (s *Sender) Send(ctx context.Context, ev *event.SmsOtpNotificationEvent) delivery.Result {
	if ev.SendTo == "" || ev.MessageBody == "" {
		return delivery.Result{Reason: delivery.ReasonInvalid, Err: errors.New("console: the event has no recipient or no message body")}
	}
	if err := ctx.Err(); err != nil {
		return delivery.Result{Retry: true, Reason: delivery.ReasonTimeout, Err: err}
	}
	line := fmt.Sprintf("%s org=%s to=%s id=%s body=%s\n", Marker,
		strconv.Quote(ev.OrganizationName), strconv.Quote(ev.SendTo), strconv.Quote(ev.ID), strconv.Quote(ev.MessageBody))
	s.mu.Lock()
	_, err := io.WriteString(s.w, line)
	s.mu.Unlock()
	if err != nil {
		return delivery.Result{Retry: true, Reason: delivery.ReasonConnection, Err: fmt.Errorf("console: %w", err)}
	}
	return delivery.Result{OK: true, ProviderID: "console-" + ev.ID}
}
