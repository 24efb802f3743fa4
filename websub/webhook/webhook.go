// Package webhook delivers an event to one WebSub subscription's callback:
// it renders the body in the subscription's format, signs it (WebSub
// X-Hub-Signature and Standard Webhooks headers), POSTs it through the
// SSRF-guarded egress client without following redirects, and classifies
// the answer. It never retries by itself: the dispatcher engine decides
// what a Result leads to.
package webhook

import (
	"bytes"
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/egress"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/websub/whsec"
)

// Type is the destination type of webhooks.
const Type = "webhook"

// KeySource gives the hub's current SET signing key (oauth's *Issuer
// implements it). Used for the set-jwt format only.
type KeySource interface {
	SigningKey() (kid string, key crypto.Signer)
}

// Signature algorithms a subscription may choose for X-Hub-Signature
// (WebSub §7.1.1). The default is sha256.
var SignatureAlgs = []string{"sha1", "sha256", "sha384", "sha512"}

// DefaultSignatureAlg is used when a subscription names none.
const DefaultSignatureAlg = "sha256"

// ValidSignatureAlg reports whether alg is one of SignatureAlgs or "".
func ValidSignatureAlg(alg string) bool {
	return alg == "" || hashFor(alg) != nil
}

func hashFor(alg string) func() hash.Hash {
	switch alg {
	case "sha1":
		return sha1.New
	case "sha256", "":
		return sha256.New
	case "sha384":
		return sha512.New384
	case "sha512":
		return sha512.New
	}
	return nil
}

// HubSignature returns the X-Hub-Signature value of body: "<alg>=<hex HMAC>".
func HubSignature(alg string, secret, body []byte) string {
	if alg == "" {
		alg = DefaultSignatureAlg
	}
	h := hashFor(alg)
	if h == nil {
		return ""
	}
	m := hmac.New(h, secret)
	m.Write(body)
	return alg + "=" + hex.EncodeToString(m.Sum(nil))
}

// StandardSignature returns the Standard Webhooks webhook-signature value:
// "v1,<base64 HMAC-SHA256(key, id.timestamp.body)>" with key =
// whsec.Key(secret): a "whsec_" secret's key material, else its bytes.
func StandardSignature(secret []byte, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, whsec.Key(secret))
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(strconv.FormatInt(timestamp, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Options are what every webhook sender of a hub shares.
type Options struct {
	// HubURL is the hub's URL for the rel="hub" Link (<public url>/hub).
	HubURL string
	// Client is the egress client's HTTP client (egress.Client.HTTP()).
	Client *http.Client
	// Keys signs set-jwt bodies; nil refuses that format (ReasonInvalid).
	Keys KeySource
	// MaxResponseBytes caps how much of a response is read (and dropped)
	// so the connection can be reused. Default 64 KiB.
	MaxResponseBytes int64
	// Now is the clock for webhook-timestamp. Default time.Now.
	Now func() time.Time
	// PayloadKey, when set, encrypts asgardeo-format bodies for the
	// holder of its private key (event.MarshalAsgardeoEncrypted, the form
	// the Asgardeo trigger decrypts). The hub sets it per org.
	PayloadKey *rsa.PublicKey
}

// Sender delivers to one subscription. Safe for concurrent use.
type Sender struct {
	sub      store.Subscription
	topicURL string
	link     string
	o        Options
}

// New returns the sender of sub, whose topic URL is sub.Topic.
func New(sub store.Subscription, o Options) *Sender {
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = egress.DefaultMaxResponseBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Sender{
		sub:      sub,
		topicURL: sub.Topic,
		link:     fmt.Sprintf(`<%s>; rel="hub", <%s>; rel="self"`, o.HubURL, sub.Topic),
		o:        o,
	}
}

var _ delivery.Sender = (*Sender)(nil)

// Send renders, signs and POSTs ev to the callback once, and classifies the
// answer with delivery.ClassifyHTTP.
func (s *Sender) Send(ctx context.Context, ev *event.SmsOtpNotificationEvent) delivery.Result {
	req, err := s.Request(ctx, ev)
	if err != nil {
		return delivery.Result{Reason: delivery.ReasonInvalid, Err: err}
	}
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return delivery.ClassifyTransport(ctx, "webhook", err)
	}
	if resp.StatusCode == http.StatusBadRequest && s.sub.Format == string(event.FormatSETJWT) {
		body, _ := egress.ReadLimited(resp, s.o.MaxResponseBytes)
		res := delivery.ClassifyHTTP(resp.StatusCode, resp.Header, s.o.Now())
		if e, ok := parseSETError(body); ok {
			res.Err = fmt.Errorf("%w: %s", res.Err, e)
		}
		return res
	}
	egress.Discard(resp, s.o.MaxResponseBytes)
	return delivery.ClassifyHTTP(resp.StatusCode, resp.Header, s.o.Now())
}

// maxSETErrorChars caps how much of a receiver's err and description is
// kept in the attempt log.
const maxSETErrorChars = 256

// parseSETError reads an RFC 8935 §2.3 error body, {"err": <code>,
// "description": <text>}, and returns it as one line for the attempt log
// ("err=invalid_key description=…"), each part stripped of control
// characters and truncated. ok is false when the body is not such an
// object.
func parseSETError(body []byte) (string, bool) {
	var e struct {
		Err         string `json:"err"`
		Description string `json:"description"`
	}
	if json.Unmarshal(body, &e) != nil || e.Err == "" {
		return "", false
	}
	out := "err=" + printable(e.Err)
	if e.Description != "" {
		out += " description=" + strconv.Quote(printable(e.Description))
	}
	return out, true
}

func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return -1
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) > maxSETErrorChars {
		s = string([]rune(s)[:maxSETErrorChars]) + "…"
	}
	return s
}

// Request builds the content distribution request of ev.
func (s *Sender) Request(ctx context.Context, ev *event.SmsOtpNotificationEvent) (*http.Request, error) {
	format, err := event.ParseFormat(s.sub.Format)
	if err != nil {
		return nil, err
	}
	var signer *event.Signer
	if format == event.FormatSETJWT {
		if s.o.Keys == nil {
			return nil, errors.New("webhook: format set-jwt but the hub has no signing key")
		}
		kid, key := s.o.Keys.SigningKey()
		if key == nil {
			return nil, errors.New("webhook: format set-jwt but the hub has no signing key")
		}
		signer = &event.Signer{Key: key, KeyID: kid}
	}
	if ev.Audience == "" {
		cp := *ev
		cp.Audience = s.topicURL
		ev = &cp
	}
	var body []byte
	var contentType string
	if format == event.FormatAsgardeo && s.o.PayloadKey != nil {
		body, err = event.MarshalAsgardeoEncrypted(ev, s.o.PayloadKey)
		contentType = event.ContentType(format)
	} else {
		body, contentType, err = event.Encode(format, ev, signer)
	}
	if err != nil {
		return nil, fmt.Errorf("webhook: encode %s: %w", format, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.sub.Callback, bytes.NewReader(body))
	if err != nil {
		return nil, errors.New("webhook: the callback URL is invalid")
	}
	ts := s.o.Now().Unix()
	h := req.Header
	h.Set("Content-Type", contentType)
	if format == event.FormatSETJWT {
		// RFC 8935 §2.1: a SET push MUST accept JSON (the error body of §2.3).
		h.Set("Accept", "application/json")
	}
	h.Set("Link", s.link)
	h.Set("Webhook-Id", ev.ID)
	h.Set("Webhook-Timestamp", strconv.FormatInt(ts, 10))
	if len(s.sub.Secret) > 0 {
		h.Set("X-Hub-Signature", HubSignature(s.sub.SignatureAlg, s.sub.Secret, body))
		h.Set("Webhook-Signature", StandardSignature(s.sub.Secret, ev.ID, ts, body))
	}
	return req, nil
}
