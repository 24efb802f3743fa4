package websub

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/egress"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/websub/webhook"
)

// Subscription parameters otphub adds to WebSub's (other hubs ignore them,
// as WebSub §5.1 requires of unknown parameters).
const (
	// ParamFormat chooses the body format: asgardeo (default) | set |
	// set-jwt | cloudevents.
	ParamFormat = "otphub.format"
	// ParamSignatureAlg chooses the X-Hub-Signature algorithm: sha1 |
	// sha256 (default) | sha384 | sha512.
	ParamSignatureAlg = "otphub.signature_alg"
	// ParamSecretOverlap is how many seconds deliveries stay signed under
	// the secret a re-subscription replaces (Webhook-Signature carries
	// one v1 signature per secret); at most the hub's SecretOverlap,
	// which is the default.
	ParamSecretOverlap = "otphub.secret_overlap_seconds"
)

// Hub modes.
const (
	modeSubscribe   = "subscribe"
	modeUnsubscribe = "unsubscribe"
	modePublish     = "publish"
	modeDenied      = "denied"
)

// handleHub serves POST /hub. A publish names its mode and topic in the
// query string (its body is the event JSON); subscribe and unsubscribe are
// form-encoded (parameters in the query string are honoured too).
func (h *Hub) handleHub(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("hub.mode") == modePublish {
		h.handlePublish(w, r)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		media, _, err := mime.ParseMediaType(ct)
		if err != nil || (media != "application/x-www-form-urlencoded" && media != "application/json") {
			httpx.Error(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "subscription requests must be application/x-www-form-urlencoded")
			return
		}
		if media == "application/json" {
			// A JSON body is only ever a publish, whose mode is in the query.
			httpx.Error(w, http.StatusBadRequest, "invalid_mode", "hub.mode is missing: a publish names hub.mode=publish and hub.topic in the query string")
			return
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			httpx.Error(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the request body exceeds %d bytes", maxFormBytes))
			return
		}
		httpx.Error(w, http.StatusBadRequest, "invalid_request", "the body is not valid form encoding")
		return
	}
	switch mode := r.Form.Get("hub.mode"); mode {
	case modeSubscribe, modeUnsubscribe:
		h.handleSubscription(w, r, mode)
	case modePublish:
		httpx.Error(w, http.StatusBadRequest, "invalid_mode", "a publish names hub.mode=publish and hub.topic in the query string, with the event JSON as the body")
	case "":
		httpx.Error(w, http.StatusBadRequest, "invalid_mode", "hub.mode is required: subscribe, unsubscribe or publish")
	default:
		httpx.Error(w, http.StatusBadRequest, "invalid_mode", "hub.mode must be subscribe, unsubscribe or publish")
	}
}

// request is a validated subscribe or unsubscribe request.
type request struct {
	mode      string
	org       store.Org
	topic     string // as the subscriber gave it (sent back in verification)
	canonical string // the canonical topic URL (stored)
	callback  string
	secret    []byte
	lease     int
	format    event.Format
	alg       string
	overlap   time.Duration // how long a replaced secret still signs
}

// authorizeTopic checks hub.topic names a known org's topic the caller may
// use with scope; on failure it has written the error.
func (h *Hub) authorizeTopic(w http.ResponseWriter, r *http.Request, topic, scope string) (store.Org, string, bool) {
	if topic == "" {
		httpx.Error(w, http.StatusBadRequest, "invalid_topic", "hub.topic is required")
		return store.Org{}, "", false
	}
	orgName, canonical, ok := h.topicOrg(topic)
	if !ok {
		httpx.Error(w, http.StatusBadRequest, "unknown_topic", fmt.Sprintf("hub.topic must be %s or {org}-NOTIFICATIONS", event.TopicURL(h.base, "{org}")))
		return store.Org{}, "", false
	}
	p, _ := access.FromContext(r.Context())
	if !p.Can(orgName, scope) {
		httpx.Error(w, http.StatusForbidden, "forbidden", "the token does not grant the "+scope+" scope on this topic's organization")
		return store.Org{}, "", false
	}
	org, err := h.st.GetOrg(r.Context(), orgName)
	if errors.Is(err, store.ErrNotFound) {
		httpx.Error(w, http.StatusBadRequest, "unknown_topic", "no organization "+orgName)
		return store.Org{}, "", false
	}
	if err != nil {
		h.log.Error("loading org failed", "err", err)
		httpx.Error(w, http.StatusServiceUnavailable, "unavailable", "the store is unavailable; try again")
		return store.Org{}, "", false
	}
	return org, canonical, true
}

func (h *Hub) handleSubscription(w http.ResponseWriter, r *http.Request, mode string) {
	f := r.Form
	org, canonical, ok := h.authorizeTopic(w, r, f.Get("hub.topic"), access.ScopeSubscribe)
	if !ok {
		return
	}
	req := request{mode: mode, org: org, topic: f.Get("hub.topic"), canonical: canonical}

	if mode == modeSubscribe {
		if !h.parseSubscribeParams(w, f, &req) {
			return
		}
	}
	// Last, as it may resolve DNS.
	req.callback = f.Get("hub.callback")
	if err := h.checkCallback(r.Context(), req.callback); err != nil {
		httpx.Error(w, http.StatusBadRequest, "invalid_callback", err.Error())
		return
	}

	if code, msg := h.startVerification(org.ID); code != "" {
		w.Header().Set("Retry-After", "5")
		httpx.Error(w, http.StatusServiceUnavailable, code, msg)
		return
	}
	h.m.subscriptions.WithLabelValues(store.SubPending).Inc()
	go func() {
		defer h.wg.Done()
		defer func() {
			h.m.subscriptions.WithLabelValues(store.SubPending).Dec()
			h.endVerification(org.ID)
		}()
		h.verify(req)
	}()
	w.WriteHeader(http.StatusAccepted)
}

// startVerification takes a slot of the org's share of pending
// verifications (and of the hub's), or returns the error code and message
// of the 503 to answer.
func (h *Hub) startVerification(orgID int64) (code, msg string) {
	h.stopMu.Lock()
	defer h.stopMu.Unlock()
	switch {
	case h.stopped:
		return "unavailable", "the hub is shutting down; try again"
	case h.perOrg[orgID] >= h.cfg.MaxPendingPerOrg:
		return "too_many_pending", fmt.Sprintf("this organization has %d subscription verifications in progress, its limit; try again shortly", h.perOrg[orgID])
	case h.pending >= h.cfg.MaxPendingVerifications:
		return "too_many_pending", "too many subscription verifications in progress; try again shortly"
	}
	h.pending++
	h.perOrg[orgID]++
	h.wg.Add(1)
	return "", ""
}

func (h *Hub) endVerification(orgID int64) {
	h.stopMu.Lock()
	defer h.stopMu.Unlock()
	h.pending--
	if h.perOrg[orgID]--; h.perOrg[orgID] <= 0 {
		delete(h.perOrg, orgID)
	}
}

// checkCallback validates hub.callback: an absolute http(s) URL the egress
// guard lets through.
func (h *Hub) checkCallback(ctx context.Context, cb string) error {
	switch {
	case cb == "":
		return errors.New("hub.callback is required")
	case len(cb) > MaxCallbackBytes:
		return fmt.Errorf("hub.callback is longer than %d bytes", MaxCallbackBytes)
	case !utf8.ValidString(cb):
		return errors.New("hub.callback is not valid UTF-8")
	}
	u, err := url.Parse(cb)
	if err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return errors.New("hub.callback must be an absolute http or https URL")
	}
	if u.Fragment != "" {
		return errors.New("hub.callback must not have a fragment")
	}
	if err := h.eg.CheckURL(ctx, cb); err != nil {
		var re *egress.RefusedError
		if errors.As(err, &re) {
			return fmt.Errorf("hub.callback is not allowed: %s", re.Reason)
		}
		return fmt.Errorf("hub.callback: %v", err)
	}
	return nil
}

// parseSubscribeParams reads hub.secret, hub.lease_seconds and otphub's
// extras; on failure it has written the error.
func (h *Hub) parseSubscribeParams(w http.ResponseWriter, f url.Values, req *request) bool {
	if s := f.Get("hub.secret"); s != "" {
		if len(s) >= MaxSecretBytes {
			httpx.Error(w, http.StatusBadRequest, "invalid_secret", fmt.Sprintf("hub.secret must be less than %d bytes", MaxSecretBytes))
			return false
		}
		req.secret = []byte(s)
	}
	req.lease = h.cfg.DefaultLeaseSeconds
	if ls := f.Get("hub.lease_seconds"); ls != "" {
		n, err := strconv.ParseInt(ls, 10, 64)
		if err != nil || n <= 0 {
			httpx.Error(w, http.StatusBadRequest, "invalid_lease", "hub.lease_seconds must be a positive decimal integer")
			return false
		}
		req.lease = int(min(max(n, int64(h.cfg.MinLeaseSeconds)), int64(h.cfg.MaxLeaseSeconds)))
	}
	format, err := event.ParseFormat(f.Get(ParamFormat))
	if err != nil {
		httpx.Error(w, http.StatusBadRequest, "invalid_format", ParamFormat+" must be one of asgardeo, set, set-jwt, cloudevents")
		return false
	}
	if format == event.FormatSETJWT && h.signer == nil {
		httpx.Error(w, http.StatusBadRequest, "invalid_format", ParamFormat+"=set-jwt is not available: this hub has no signing key")
		return false
	}
	req.format = format
	alg := f.Get(ParamSignatureAlg)
	if alg == "" {
		alg = webhook.DefaultSignatureAlg
	}
	if !webhook.ValidSignatureAlg(alg) {
		httpx.Error(w, http.StatusBadRequest, "invalid_signature_alg", ParamSignatureAlg+" must be one of sha1, sha256, sha384, sha512")
		return false
	}
	req.alg = alg
	req.overlap = max(h.cfg.SecretOverlap, 0)
	if v := f.Get(ParamSecretOverlap); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			httpx.Error(w, http.StatusBadRequest, "invalid_secret_overlap", ParamSecretOverlap+" must be a non-negative decimal integer")
			return false
		}
		req.overlap = min(time.Duration(min(n, int64(MaxSecretOverlap/time.Second)))*time.Second, req.overlap)
	}
	return true
}

// verify runs after the 202: it checks the hub's own policy (denying the
// subscription if it fails), verifies intent with the callback and applies
// the action only if the callback echoed the challenge.
func (h *Hub) verify(req request) {
	ctx := h.ctx
	logger := h.log.With("org", req.org.Name, "mode", req.mode)

	if req.mode == modeSubscribe {
		if reason, err := h.policy(ctx, req); err != nil {
			logger.Warn("subscription policy check failed", "err", err)
			h.m.verifications.WithLabelValues(outcomeFailed).Inc()
			return
		} else if reason != "" {
			h.deny(ctx, req, reason)
			logger.Info("subscription denied", "reason", reason)
			return
		}
	}

	challenge := newChallenge()
	q := url.Values{}
	q.Set("hub.mode", req.mode)
	q.Set("hub.topic", req.topic)
	q.Set("hub.challenge", challenge)
	if req.mode == modeSubscribe {
		q.Set("hub.lease_seconds", strconv.Itoa(req.lease))
	}
	started := h.cfg.Now()
	code, body, err := h.get(ctx, req.callback, q)
	switch {
	case err != nil:
		h.m.verifications.WithLabelValues(outcomeFailed).Inc()
		logger.Info("intent verification failed", "err", err)
		return
	case code < 200 || code > 299:
		h.m.verifications.WithLabelValues(outcomeRejected).Inc()
		logger.Info("intent verification rejected", "status", code)
		return
	case subtle.ConstantTimeCompare(body, []byte(challenge)) != 1:
		h.m.verifications.WithLabelValues(outcomeRejected).Inc()
		logger.Info("intent verification rejected: the body is not the challenge", "status", code)
		return
	}

	if err := h.apply(ctx, req, started); errors.Is(err, store.ErrLimit) {
		// Subscriptions created while this one was being verified took
		// the last places: the count and the insert are one step, so the
		// limit holds however many overlap.
		h.deny(ctx, req, h.limitReason())
		logger.Info("subscription denied at the limit after verification")
		return
	} else if err != nil {
		h.m.verifications.WithLabelValues(outcomeFailed).Inc()
		logger.Error("applying a verified subscription request failed", "err", err)
		return
	}
	h.m.verifications.WithLabelValues(outcomeVerified).Inc()
	logger.Info("intent verified")
}

// policy returns a denial reason, or "" when the subscription may proceed.
func (h *Hub) policy(ctx context.Context, req request) (string, error) {
	if _, err := h.st.FindSubscription(ctx, req.org.ID, req.canonical, req.callback); err == nil {
		return "", nil // a renewal always passes
	} else if !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	// An early answer only: apply checks again, atomically with the
	// insert. Lapsed subscriptions (not swept yet) count in neither.
	subs, err := h.st.ListSubscriptions(ctx, req.org.ID)
	if err != nil {
		return "", err
	}
	now, n := h.cfg.Now(), 0
	for _, s := range subs {
		if s.ExpiresAt.IsZero() || !s.ExpiresAt.Before(now) {
			n++
		}
	}
	if n >= h.cfg.MaxSubscriptionsPerOrg {
		return h.limitReason(), nil
	}
	return "", nil
}

func (h *Hub) limitReason() string {
	return fmt.Sprintf("the organization has reached its limit of %d subscriptions", h.cfg.MaxSubscriptionsPerOrg)
}

// apply carries out a verified request: subscribe upserts (a renewal
// updates secret, lease and options in place), unsubscribe deletes.
func (h *Hub) apply(ctx context.Context, req request, verifiedAt time.Time) error {
	defer h.res.invalidate(req.org.Name)
	defer h.markChanged()
	if req.mode == modeUnsubscribe {
		s, err := h.st.FindSubscription(ctx, req.org.ID, req.canonical, req.callback)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := h.st.DeleteSubscription(ctx, req.org.ID, s.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	}
	s := store.Subscription{
		OrgID:        req.org.ID,
		Topic:        req.canonical,
		Callback:     req.callback,
		Secret:       req.secret,
		State:        store.SubActive,
		LeaseSeconds: req.lease,
		// WebSub §5.3: the lease runs from when the verification request was made.
		ExpiresAt:    verifiedAt.Add(time.Duration(req.lease) * time.Second),
		Format:       string(req.format),
		SignatureAlg: req.alg,
	}
	if old, err := h.st.FindSubscription(ctx, req.org.ID, req.canonical, req.callback); err == nil {
		s.PreviousSecret, s.PreviousSecretUntil = rotatedSecret(old, req, verifiedAt)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	_, err := h.st.UpsertSubscriptionWithin(ctx, s, h.cfg.MaxSubscriptionsPerOrg, verifiedAt)
	return err
}

// rotatedSecret is the previous secret a renewal of old keeps: the secret
// it replaces, for the overlap, when the secret changes; an overlap still
// running when it does not (a plain renewal must not cut a rotation short).
func rotatedSecret(old store.Subscription, req request, now time.Time) ([]byte, time.Time) {
	switch {
	case len(old.Secret) > 0 && !bytes.Equal(old.Secret, req.secret) && req.overlap > 0:
		return old.Secret, now.Add(req.overlap)
	case bytes.Equal(old.Secret, req.secret) && now.Before(old.PreviousSecretUntil):
		return old.PreviousSecret, old.PreviousSecretUntil
	}
	return nil, time.Time{}
}

// deny tells the subscriber the hub refused its subscription (WebSub §5.2).
func (h *Hub) deny(ctx context.Context, req request, reason string) {
	h.m.verifications.WithLabelValues(outcomeDenied).Inc()
	q := url.Values{}
	q.Set("hub.mode", modeDenied)
	q.Set("hub.topic", req.topic)
	q.Set("hub.reason", reason)
	if _, _, err := h.get(ctx, req.callback, q); err != nil {
		h.log.Info("sending a denial failed", "org", req.org.Name, "err", err)
	}
}

// maxChallengeEcho caps how much of a verification response is read.
const maxChallengeEcho = 1024

// get sends a GET to callback with params appended to its own query string
// (WebSub §5.1.1: the callback's parameters are kept, ours follow) and
// returns the status and the start of the body. Errors never repeat the
// callback URL.
func (h *Hub) get(ctx context.Context, callback string, params url.Values) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.VerifyTimeout)
	defer cancel()
	target := callback
	if strings.Contains(target, "?") {
		if !strings.HasSuffix(target, "?") && !strings.HasSuffix(target, "&") {
			target += "&"
		}
	} else {
		target += "?"
	}
	target += params.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return 0, nil, errors.New("invalid callback URL")
	}
	resp, err := h.eg.HTTP().Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, nil, err
	}
	body, err := egress.ReadLimited(resp, maxChallengeEcho)
	if err != nil && !errors.Is(err, egress.ErrBodyTooLarge) {
		return resp.StatusCode, nil, fmt.Errorf("reading the answer: %w", err)
	}
	return resp.StatusCode, body, nil
}

// newChallenge returns a random, single-use hub.challenge.
func newChallenge() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}
