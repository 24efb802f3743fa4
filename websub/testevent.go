package websub

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/websub/webhook"
)

// The test event's data (docs/websub.md, "Test events"): an ordinary
// SmsOtpNotificationEvent, so every format stays valid for stock
// receivers, whose sendTo is a number reserved for fiction (NANP 555-01xx)
// and whose messageBody says it is a test and holds no OTP.
const (
	TestEventSendTo      = "+15555550100"
	TestEventMessageBody = "otphub test event: this is not a one-time password and no SMS should be sent for it."
)

// Defaults of the test event route.
const (
	// DefaultTestEventsPerMinute caps test events per org and minute.
	DefaultTestEventsPerMinute = 10
	// DefaultTestEventWait is how long the test route waits for the first
	// attempt's delivery record, to answer with its id.
	DefaultTestEventWait = 5 * time.Second
)

// TestEventResponse is the body of POST …/subscriptions/{id}/test.
type TestEventResponse struct {
	EventID        string `json:"eventId"`
	SubscriptionID string `json:"subscriptionId"`
	Topic          string `json:"topic"`
	// DeliveryID and Status are the delivery's once it is on record (the
	// first attempt ended or was deferred); empty when that took longer
	// than the route waits: find it by eventId in the deliveries list.
	DeliveryID string `json:"deliveryId,omitempty"`
	Status     string `json:"status,omitempty"`
}

// handleTest serves POST /api/v1/orgs/{org}/subscriptions/{id}/test: one
// test event, appended to the log like any published event but restricted
// to this subscription (event.Destination), so the dispatcher delivers it
// there only — in its format, signed with its secret, recorded and
// retried like any other delivery — and to none of the org's other
// subscriptions or SMS providers.
func (h *Hub) handleTest(w http.ResponseWriter, r *http.Request) {
	org, s, ok := h.subscriptionOf(w, r)
	if !ok {
		return
	}
	now := h.cfg.Now()
	if state := viewOf(s, now).State; state != store.SubActive {
		httpx.Error(w, http.StatusConflict, "subscription_not_active",
			fmt.Sprintf("the subscription is %s: only an active (verified, unexpired) subscription receives events", state))
		return
	}
	if ok, wait := h.testCap.Allow(org.ID); !ok {
		httpx.RetryAfter(w, wait)
		httpx.Error(w, http.StatusTooManyRequests, "rate_limited", fmt.Sprintf("at most %d test events per minute", h.testCap.Max()))
		return
	}
	topic := event.TopicURL(h.base, org.Name)
	ev := &event.SmsOtpNotificationEvent{
		Issuer: h.base, ID: uuid.NewString(), IssuedAt: now.UTC().Truncate(time.Millisecond), Audience: topic,
		OrganizationID: org.ID, OrganizationName: org.Name, SendTo: TestEventSendTo, MessageBody: TestEventMessageBody,
		ExpiresAt:   now.UTC().Truncate(time.Millisecond).Add(event.DefaultOTPValidity),
		Destination: event.Destination(webhook.Type, s.ID),
	}
	key, headers, value, err := event.EncodeBinary(ev)
	if err != nil {
		h.log.Error("encoding the test event failed", "err", err)
		httpx.Error(w, http.StatusInternalServerError, "internal", "the test event could not be encoded")
		return
	}
	if err := h.pub.Publish(r.Context(), bus.NotificationsTopic, bus.Message{Key: key, Value: value, Headers: headers}); err != nil {
		h.log.Error("publishing the test event to the log failed", "org", org.Name, "jti", ev.ID, "err", err)
		httpx.RetryAfter(w, time.Second)
		httpx.Error(w, http.StatusServiceUnavailable, "unavailable", "the event log is unavailable; the test event was not accepted")
		return
	}
	h.m.published.WithLabelValues("test").Inc()
	out := TestEventResponse{EventID: ev.ID, SubscriptionID: s.ID, Topic: topic}
	if t, ok := h.awaitDelivery(r.Context(), ev, s.ID); ok {
		out.DeliveryID, out.Status = t.ID, t.Status
	}
	httpx.JSON(w, http.StatusAccepted, out)
}

// awaitDelivery waits up to TestEventWait for the delivery record of ev
// to subscription id (the dispatcher writes it after the first attempt).
func (h *Hub) awaitDelivery(ctx context.Context, ev *event.SmsOtpNotificationEvent, id string) (store.DeliveryTask, bool) {
	if h.cfg.TestEventWait < 0 {
		return store.DeliveryTask{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.TestEventWait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		t, err := h.st.FindDelivery(ctx, ev.OrganizationID, ev.Issuer, ev.ID, webhook.Type, id)
		if err == nil {
			return t, true
		}
		select {
		case <-ctx.Done():
			return store.DeliveryTask{}, false
		case <-tick.C:
		}
	}
}
