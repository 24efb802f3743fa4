package websub

import (
	"crypto/subtle"
	"errors"
	"net/url"
	"strconv"
	"time"

	"github.com/otphub/otphub/store"
)

// Lease renewal for subscribers that never renew.
//
// WebSub leaves renewal to the subscriber (§5.1: it subscribes again before
// the lease ends). Some subscribers never do: the Asgardeo trigger for
// Ballerina subscribes once when its listener starts, without
// hub.lease_seconds, and never again (ballerina-platform/asyncapi-triggers
// asyncapi/asgardeo/listener.bal 'start; module-ballerina-websub
// subscriber_client.bal sends hub.lease_seconds only when one is
// configured). So a subscription made without hub.lease_seconds is
// auto-renewing: before its lease ends (Config.RenewBefore) the hub
// verifies intent again exactly as for a subscription request — GET with
// hub.mode=subscribe, hub.topic, a new hub.challenge and hub.lease_seconds
// — and only an echo of the challenge extends the lease (by the default
// lease, from the moment of that request). A subscriber that answers
// anything else keeps its lease until it runs out, as before. A
// subscription that named hub.lease_seconds is never renewed by the hub:
// W3C behaviour is unchanged for subscribers that renew.

// maybeRenew starts the renewal of s when it is due and none is running.
// A failed renewal is tried again at most every renewRetry.
func (h *Hub) maybeRenew(org store.Org, s store.Subscription) {
	if !s.AutoRenew || s.State != store.SubActive || s.ExpiresAt.IsZero() {
		return
	}
	now := h.cfg.Now()
	if s.ExpiresAt.Sub(now) > h.cfg.RenewBefore || !now.Before(s.ExpiresAt) {
		return
	}
	h.renewMu.Lock()
	if last, ok := h.renewing[s.ID]; ok && (last.IsZero() || now.Sub(last) < h.renewRetry()) {
		h.renewMu.Unlock()
		return // running, or failed a moment ago
	}
	h.renewing[s.ID] = time.Time{}
	h.renewMu.Unlock()

	select {
	case h.pending <- struct{}{}:
	default:
		h.renewDone(s.ID, false) // the verification slots are full: next sweep
		return
	}
	h.stopMu.Lock()
	if h.stopped {
		h.stopMu.Unlock()
		<-h.pending
		h.renewDone(s.ID, false)
		return
	}
	h.wg.Add(1)
	h.stopMu.Unlock()
	go func() {
		defer h.wg.Done()
		defer func() { <-h.pending }()
		h.renewDone(s.ID, h.renew(org, s))
	}()
}

// renewRetry is how long a failed renewal waits before the next try: an
// hour by default, so a subscriber that is down for a while is asked about
// 24 times before its lease ends, not 1440.
func (h *Hub) renewRetry() time.Duration {
	return max(h.cfg.ExpiryInterval, h.cfg.RenewBefore/24)
}

// renewDone records the end of a renewal: forgotten when it succeeded,
// timestamped (for renewRetry) when it did not.
func (h *Hub) renewDone(id string, ok bool) {
	h.renewMu.Lock()
	defer h.renewMu.Unlock()
	if ok {
		delete(h.renewing, id)
		return
	}
	h.renewing[id] = h.cfg.Now()
	if len(h.renewing) > 100000 {
		h.renewing = map[string]time.Time{}
	}
}

// renew verifies intent for s again and extends its lease on an echo.
func (h *Hub) renew(org store.Org, s store.Subscription) bool {
	ctx := h.ctx
	logger := h.log.With("org", org.Name, "mode", "renew", "subscription", s.ID)
	lease := h.cfg.DefaultLeaseSeconds
	challenge := newChallenge()
	q := url.Values{}
	q.Set("hub.mode", modeSubscribe)
	q.Set("hub.topic", s.Topic)
	q.Set("hub.challenge", challenge)
	q.Set("hub.lease_seconds", strconv.Itoa(lease))
	started := h.cfg.Now()
	code, body, err := h.get(ctx, s.Callback, q)
	switch {
	case err != nil:
		h.m.verifications.WithLabelValues(outcomeFailed).Inc()
		logger.Info("lease renewal: intent verification failed", "err", err)
		return false
	case code < 200 || code > 299 || subtle.ConstantTimeCompare(body, []byte(challenge)) != 1:
		h.m.verifications.WithLabelValues(outcomeRejected).Inc()
		logger.Info("lease renewal: intent verification rejected", "status", code)
		return false
	}
	// Extend only the subscription as it was: one the subscriber changed
	// meanwhile (re-subscribed, unsubscribed) is left as it is now.
	cur, err := h.st.FindSubscription(ctx, s.OrgID, s.Topic, s.Callback)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (cur.ID != s.ID || !cur.UpdatedAt.Equal(s.UpdatedAt))) {
		return true
	}
	if err == nil {
		cur.LeaseSeconds = lease
		cur.ExpiresAt = started.Add(time.Duration(lease) * time.Second)
		cur.UpdatedAt = time.Time{}
		_, err = h.st.UpsertSubscription(ctx, cur)
	}
	if err != nil {
		h.m.verifications.WithLabelValues(outcomeFailed).Inc()
		logger.Error("lease renewal: storing the new lease failed", "err", err)
		return false
	}
	h.res.invalidate(org.Name)
	h.markChanged()
	h.m.verifications.WithLabelValues(outcomeVerified).Inc()
	logger.Info("lease renewed", "lease_seconds", lease)
	return true
}
