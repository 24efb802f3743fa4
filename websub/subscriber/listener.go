package subscriber

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/websub/whsec"
)

// maxChallengeBytes caps hub.challenge: it is echoed, so it is bounded.
const maxChallengeBytes = 1024

// ServeHTTP answers the hub: GET for intent verification and denial, POST
// for content distribution. Mount it at CallbackURL's path.
func (l *Listener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		l.serveVerification(w, r)
	case http.MethodPost:
		l.serveDelivery(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		plain(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

func plain(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

// serveVerification answers a verification of intent (WebSub §5.3) only
// for a request this Listener has pending, of the same mode and topic:
// anything else is 404, as WebSub asks of a subscriber that does not agree.
func (l *Listener) serveVerification(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	mode, topic := q.Get("hub.mode"), q.Get("hub.topic")
	if mode == "" {
		plain(w, http.StatusBadRequest, "hub.mode is required")
		return
	}
	if topic != l.topic {
		l.log.Warn("verification for another topic refused", "mode", mode)
		plain(w, http.StatusNotFound, "unknown topic")
		return
	}
	switch mode {
	case modeDenied:
		l.denied(q.Get("hub.reason"))
		plain(w, http.StatusOK, "")
		return
	case modeSubscribe, modeUnsubscribe:
	default:
		plain(w, http.StatusBadRequest, "hub.mode must be subscribe, unsubscribe or denied")
		return
	}
	challenge := q.Get("hub.challenge")
	if challenge == "" || len(challenge) > maxChallengeBytes {
		plain(w, http.StatusBadRequest, "hub.challenge is missing or too long")
		return
	}
	lease := 0
	if mode == modeSubscribe {
		n, err := strconv.Atoi(q.Get("hub.lease_seconds"))
		if err != nil || n <= 0 {
			plain(w, http.StatusBadRequest, "hub.lease_seconds must be a positive integer")
			return
		}
		lease = n
	}

	l.mu.Lock()
	in := l.pending[mode]
	if in != nil {
		now := l.cfg.Now()
		if mode == modeSubscribe {
			l.status.Active = true
			l.status.LeaseSeconds = lease
			l.status.LeaseExpires = now.Add(time.Duration(lease) * time.Second)
			l.status.Verifications++
			l.status.DeniedReason = ""
		} else {
			l.status.Active = false
		}
	}
	l.mu.Unlock()
	if in == nil {
		l.log.Warn("verification without a pending request refused", "mode", mode)
		plain(w, http.StatusNotFound, "no such pending request")
		return
	}
	select {
	case in.done <- verdict{lease: lease}:
	default: // a repeated verification: the first verdict stands
	}
	l.log.Info("intent verified", "mode", mode, "lease_seconds", lease)
	plain(w, http.StatusOK, challenge)
}

func (l *Listener) denied(reason string) {
	if len(reason) > 500 {
		reason = reason[:500]
	}
	l.mu.Lock()
	in := l.pending[modeSubscribe]
	l.status.Active = false
	l.status.DeniedReason = reason
	l.mu.Unlock()
	if in != nil {
		select {
		case in.done <- verdict{denied: true, reason: reason}:
		default:
		}
	}
	l.log.Error("the hub denied the subscription", "topic", l.topic, "reason", reason)
}

// serveDelivery handles one content distribution request: size cap,
// signatures, decoding, deduplication, the handler.
func (l *Listener) serveDelivery(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, l.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			plain(w, http.StatusRequestEntityTooLarge, "body too large")
			return
		}
		plain(w, http.StatusBadRequest, "reading the body failed")
		return
	}
	if code, msg := l.checkSignatures(r.Header, body); code != 0 {
		l.log.Warn("delivery refused", "status", code, "reason", msg)
		plain(w, code, msg)
		return
	}
	ev, err := event.Decode(r.Header.Get("Content-Type"), body, l.keys.keyfunc)
	if err != nil {
		if errors.Is(err, event.ErrUnsupportedMediaType) {
			plain(w, http.StatusUnsupportedMediaType, "unsupported content type")
			return
		}
		if errors.Is(err, errJWKSUnavailable) {
			l.log.Warn("signed SET not verifiable now: the hub's JWKS is unavailable", "err", err)
			w.Header().Set("Retry-After", "5")
			plain(w, http.StatusServiceUnavailable, "the hub's keys are unavailable; try again")
			return
		}
		if errors.Is(err, event.ErrBadSignature) {
			l.log.Warn("signed SET refused", "err", err)
			plain(w, http.StatusForbidden, "the SET signature does not verify with the hub's keys")
			return
		}
		l.log.Warn("undecodable delivery refused", "err", err)
		plain(w, http.StatusBadRequest, "malformed event: "+err.Error())
		return
	}
	if ev.OrganizationName != l.cfg.Org {
		plain(w, http.StatusBadRequest, "the event is for another organization")
		return
	}
	// Event ids are chosen by each producer: the same id from two
	// producers (iss) is two events.
	key := ev.Issuer + "\x00" + ev.ID
	switch l.dedup.begin(key) {
	case seenDone:
		l.log.Info("duplicate event acknowledged", "jti", ev.ID)
		plain(w, http.StatusOK, "duplicate")
		return
	case seenInFlight:
		w.Header().Set("Retry-After", "1")
		plain(w, http.StatusServiceUnavailable, "this event is being handled")
		return
	}
	if err := l.call(r, ev); err != nil {
		l.dedup.fail(key)
		if IsPermanent(err) {
			l.log.Error("handler failed permanently; the hub will not retry", "jti", ev.ID, "err", err)
			plain(w, http.StatusUnprocessableEntity, "handler failed permanently")
			return
		}
		l.log.Error("handler failed; the hub will retry", "jti", ev.ID, "err", err)
		plain(w, http.StatusInternalServerError, "handler failed")
		return
	}
	l.dedup.done(key)
	plain(w, http.StatusOK, "ok")
}

// call runs the handler, turning a panic into an error (and a 500).
func (l *Listener) call(r *http.Request, ev *event.SmsOtpNotificationEvent) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return l.handler.OnSmsOtp(r.Context(), *ev)
}

// checkSignatures requires at least one of X-Hub-Signature and the
// Standard Webhooks signature, and that every one present verifies:
// 401 when the request is unsigned, 403 when a signature is wrong or the
// webhook-timestamp is outside the tolerance; 0 when it is authentic.
func (l *Listener) checkSignatures(h http.Header, body []byte) (int, string) {
	hubSig := h.Get("X-Hub-Signature")
	stdSig := h.Get("Webhook-Signature")
	if hubSig == "" && stdSig == "" {
		return http.StatusUnauthorized, "unsigned request: X-Hub-Signature or webhook-signature required"
	}
	if hubSig != "" && !verifyHubSignature(l.secret, hubSig, body) {
		return http.StatusForbidden, "X-Hub-Signature does not verify"
	}
	if stdSig != "" {
		if code, msg := l.verifyStandard(h, stdSig, body); code != 0 {
			return code, msg
		}
	}
	return 0, ""
}

func hashFor(alg string) func() hash.Hash {
	switch alg {
	case "sha1":
		return sha1.New
	case "sha256":
		return sha256.New
	case "sha384":
		return sha512.New384
	case "sha512":
		return sha512.New
	}
	return nil
}

// verifyHubSignature checks "X-Hub-Signature: <alg>=<hex HMAC>" (WebSub
// §8) in constant time.
func verifyHubSignature(secret []byte, header string, body []byte) bool {
	alg, hexSig, ok := strings.Cut(header, "=")
	if !ok {
		return false
	}
	newHash := hashFor(strings.ToLower(strings.TrimSpace(alg)))
	if newHash == nil {
		return false
	}
	got, err := hex.DecodeString(strings.TrimSpace(hexSig))
	if err != nil {
		return false
	}
	m := hmac.New(newHash, secret)
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}

// verifyStandard checks the Standard Webhooks headers: webhook-id,
// webhook-timestamp within the tolerance, and a "v1,<base64>" entry of
// webhook-signature (space-separated list) equal, in constant time, to
// HMAC-SHA256(key, id "." timestamp "." body), key being whsec.Key(secret)
// as the hub signs it (a "whsec_" secret's key material, else its bytes).
func (l *Listener) verifyStandard(h http.Header, sigs string, body []byte) (int, string) {
	id, ts := h.Get("Webhook-Id"), h.Get("Webhook-Timestamp")
	if id == "" || ts == "" {
		return http.StatusUnauthorized, "webhook-signature without webhook-id and webhook-timestamp"
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return http.StatusForbidden, "webhook-timestamp is not a Unix time"
	}
	skew := l.cfg.Now().Sub(time.Unix(sec, 0))
	if skew > l.cfg.TimestampTolerance || skew < -l.cfg.TimestampTolerance {
		return http.StatusForbidden, "webhook-timestamp is outside the tolerance"
	}
	m := hmac.New(sha256.New, whsec.Key(l.secret))
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	want := m.Sum(nil)
	ok := false
	for _, s := range strings.Fields(sigs) {
		version, b64, found := strings.Cut(s, ",")
		if !found || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			ok = true // keep looping: the time taken does not depend on which entry matched
		}
	}
	if !ok {
		return http.StatusForbidden, "webhook-signature does not verify"
	}
	return 0, ""
}
