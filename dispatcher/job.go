package dispatcher

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
)

// job is one event on its way to one target: a first attempt (msg set,
// task nil) or a retry (task set, msg nil).
type job struct {
	ev     *event.SmsOtpNotificationEvent
	enc    *encodedEvent
	target delivery.Target
	task   *store.DeliveryTask // the leased task of a retry; nil for a first attempt
	msg    *tracker            // the log message of a first attempt; nil for a retry
	// expires is the expiry bound a fallback inherits from its primary (a
	// replayed primary's is later than the OTP's); zero: the event's own.
	expires time.Time
}

// endpointKey is the isolation key of d's endpoint: its org and the
// target's endpoint. Keyed by endpoint alone, one org's failing callback
// opened the circuit of another org's healthy one on the same host.
func (d *job) endpointKey() string { return d.target.EndpointKey(d.orgID()) }

// hostKey is what the per-host politeness cap counts: the endpoint
// without an account suffix (Twilio's is origin#AccountSID).
func (d *job) hostKey() string {
	host, _, _ := strings.Cut(d.target.Endpoint, "#")
	return host
}

func (d *job) orgID() int64 {
	if d.task != nil {
		return d.task.OrgID
	}
	return d.ev.OrganizationID
}

// finish marks a first attempt done (delivered or durably recorded).
func (d *job) finish() {
	if d.msg != nil {
		d.msg.done()
	}
}

// fallback returns the delivery of ev to the target's fallback, counted in
// the same log message (before the primary finishes, so the message cannot
// be acknowledged in between). It is bounded by the primary's expiry: a
// retry or replay of the primary moved it to now + ReplayWindow, and its
// fallback must not end expired on the OTP's original one.
func (d *job) fallback() *job {
	if d.target.Fallback == nil {
		return nil
	}
	if d.msg != nil {
		d.msg.add()
	}
	return &job{ev: d.ev, enc: d.enc, target: *d.target.Fallback, msg: d.msg, expires: d.expiresAt()}
}

// tracker acknowledges a log message once every delivery of it is done.
type tracker struct {
	msg     *bus.Message
	pending atomic.Int64
}

func newTracker(m *bus.Message) *tracker {
	t := &tracker{msg: m}
	t.pending.Store(1) // the router's own hold, released once every target is dispatched
	return t
}

func (t *tracker) add() { t.pending.Add(1) }

func (t *tracker) done() {
	if t.pending.Add(-1) == 0 {
		t.msg.Ack()
	}
}

// encodedEvent is the task encoding of an event, computed at most once and
// shared by the event's targets.
type encodedEvent struct {
	once sync.Once
	ev   *event.SmsOtpNotificationEvent
	b    []byte
	err  error
}

func (x *encodedEvent) bytes() ([]byte, error) {
	x.once.Do(func() { x.b, x.err = delivery.EncodeTaskEvent(x.ev) })
	return x.b, x.err
}

func (d *job) attempts() int {
	if d.task != nil {
		return d.task.Attempts
	}
	return 0
}

func (d *job) expiresAt() time.Time {
	if d.task != nil && !d.task.ExpiresAt.IsZero() {
		return d.task.ExpiresAt
	}
	if !d.expires.IsZero() {
		return d.expires
	}
	return d.ev.Expiry()
}
