// Package subscriber is the Go SDK for custom SMS handlers: a WebSub
// subscriber of otphub's hub that hands each SMS OTP notification to your
// code as a typed event, the Go twin of the seed's Ballerina
// `onSmsOtp(event)` service.
//
// A Listener is an http.Handler (mount it at your callback URL, in your own
// server or alone) plus a small client of the hub:
//
//   - Start obtains a token (OAuth 2.0 client credentials), subscribes to
//     the org's topic, answers the hub's intent verification and returns
//     once the subscription is active; a background loop then renews the
//     lease at 80 % of what the hub granted.
//   - ServeHTTP answers intent verification only for a request it made
//     (mode and topic must match a pending request), and accepts a delivery
//     only when it is signed with the subscription's secret
//     (X-Hub-Signature and/or Standard Webhooks webhook-signature, compared
//     in constant time). It decodes every body format the hub sends
//     (Asgardeo JSON, SET, signed SET verified against the hub's JWKS,
//     CloudEvents), drops duplicate jtis, and calls your Handler. A
//     handler error is answered with 500, so the hub retries; only a
//     handled (or duplicate) event is answered with 2xx.
//   - Shutdown stops renewing and unsubscribes.
package subscriber

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/otphub/otphub/event"
)

// Handler handles one SMS OTP notification. OnSmsOtp may be called
// concurrently. A nil error acknowledges the event (the hub will not send
// it again); an error makes the Listener answer 500, so the hub retries
// with the same event (same ID) until the OTP expires; an error wrapped
// with Permanent is answered 422, which the hub does not retry.
type Handler interface {
	OnSmsOtp(ctx context.Context, ev event.SmsOtpNotificationEvent) error
}

// Permanent marks a handler error as one a retry cannot fix (the gateway
// refused the number, say): the Listener answers 422 instead of 500, and
// the hub records the delivery as failed instead of retrying it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, ev event.SmsOtpNotificationEvent) error

// OnSmsOtp calls f.
func (f HandlerFunc) OnSmsOtp(ctx context.Context, ev event.SmsOtpNotificationEvent) error {
	return f(ctx, ev)
}

// Defaults of Config.
const (
	DefaultDedupWindow        = 10 * time.Minute
	DefaultTimestampTolerance = 5 * time.Minute
	DefaultVerifyTimeout      = 30 * time.Second
	DefaultMaxBodyBytes       = event.MaxEventBytes
	// DefaultDedupCapacity bounds the jtis remembered for DedupWindow.
	DefaultDedupCapacity = 100_000
	// SecretBytes is the entropy of a generated secret (43 base64url chars).
	SecretBytes = 32
	// maxSecretBytes: a hub.secret must be shorter than 200 bytes (WebSub §5.1).
	maxSecretBytes = 200
)

// Config configures a Listener.
type Config struct {
	// HubURL is the hub's URL, e.g. https://otphub.example.com/hub. The hub
	// base (HubURL without its trailing /hub) gives the topic URL, the
	// token URL and the JWKS URL. Required.
	HubURL string
	// TokenURL is the OAuth 2.0 token endpoint. Default <hub base>/oauth2/token.
	TokenURL string
	// ClientID and ClientSecret are an OAuth client of Org with the
	// subscribe scope. Required.
	ClientID, ClientSecret string
	// Org is the organization whose notifications to receive. Required.
	Org string
	// CallbackURL is the absolute URL at which the hub reaches this
	// Listener's ServeHTTP. Required.
	CallbackURL string
	// Secret is the hub.secret deliveries are signed with (fewer than 200
	// bytes). Default: SecretBytes random bytes from crypto/rand, base64url
	// encoded; read it back with (*Listener).Secret.
	Secret string
	// LeaseSeconds is the lease asked for; the hub may grant another, and
	// renewal follows what it granted. Default 0: the hub's default
	// (10 days on otphub).
	LeaseSeconds int
	// Format is the body format asked for (otphub.format). Default
	// event.FormatAsgardeo. The Listener decodes every format whatever it
	// asked for.
	Format event.Format
	// SignatureAlg is the X-Hub-Signature algorithm asked for
	// (otphub.signature_alg): sha1, sha256, sha384 or sha512. Default ""
	// (the hub's default, sha256).
	SignatureAlg string
	// JWKSURL is where the hub's signed-SET keys are published. Default
	// <hub base>/.well-known/jwks.json.
	JWKSURL string
	// HTTPClient makes the token, subscribe and JWKS requests. Default a
	// client with a 10 s timeout.
	HTTPClient *http.Client
	// Logger receives the Listener's logs (never a secret, OTP or message).
	// Default: discard.
	Logger *slog.Logger
	// DedupWindow is how long a handled event's jti is remembered so that
	// a redelivery is acknowledged without calling the Handler again.
	// Default 10 min; negative disables deduplication.
	DedupWindow time.Duration
	// TimestampTolerance bounds the age (and future skew) of a Standard
	// Webhooks webhook-timestamp. Default 5 min.
	TimestampTolerance time.Duration
	// VerifyTimeout bounds how long Start, a renewal and Shutdown wait for
	// the hub's intent verification after it accepted the request.
	// Default 30 s.
	VerifyTimeout time.Duration
	// MaxBodyBytes caps a delivery's body; a bigger one is answered 413.
	// Default event.MaxEventBytes (64 KiB).
	MaxBodyBytes int64
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) applyDefaults() error {
	if c.Format == "" {
		c.Format = event.FormatAsgardeo
	}
	if c.TokenURL == "" {
		c.TokenURL = hubBase(c.HubURL) + "/oauth2/token"
	}
	if c.JWKSURL == "" {
		c.JWKSURL = hubBase(c.HubURL) + "/.well-known/jwks.json"
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = DefaultDedupWindow
	}
	if c.TimestampTolerance == 0 {
		c.TimestampTolerance = DefaultTimestampTolerance
	}
	if c.VerifyTimeout == 0 {
		c.VerifyTimeout = DefaultVerifyTimeout
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Secret == "" {
		b := make([]byte, SecretBytes)
		if _, err := rand.Read(b); err != nil {
			return fmt.Errorf("subscriber: generating a secret: %w", err)
		}
		c.Secret = base64.RawURLEncoding.EncodeToString(b)
	}
	return nil
}

// Validate checks the configuration (after defaults).
func (c *Config) Validate() error {
	for name, u := range map[string]string{"HubURL": c.HubURL, "TokenURL": c.TokenURL,
		"CallbackURL": c.CallbackURL, "JWKSURL": c.JWKSURL} {
		if err := checkURL(u); err != nil {
			return fmt.Errorf("subscriber: %s: %w", name, err)
		}
	}
	switch {
	case c.ClientID == "" || c.ClientSecret == "":
		return errors.New("subscriber: ClientID and ClientSecret are required")
	case !event.ValidOrgName(c.Org):
		return fmt.Errorf("subscriber: Org %q is not an organization name", c.Org)
	case len(c.Secret) >= maxSecretBytes:
		return fmt.Errorf("subscriber: Secret must be shorter than %d bytes", maxSecretBytes)
	case c.LeaseSeconds < 0:
		return errors.New("subscriber: LeaseSeconds must not be negative")
	case c.SignatureAlg != "" && hashFor(c.SignatureAlg) == nil:
		return fmt.Errorf("subscriber: SignatureAlg %q: want sha1, sha256, sha384 or sha512", c.SignatureAlg)
	case c.TimestampTolerance < 0 || c.VerifyTimeout < 0 || c.MaxBodyBytes < 0:
		return errors.New("subscriber: TimestampTolerance, VerifyTimeout and MaxBodyBytes must not be negative")
	}
	if _, err := event.ParseFormat(string(c.Format)); err != nil {
		return fmt.Errorf("subscriber: Format: %w", err)
	}
	return nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if s == "" || err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return nil
}

// hubBase is HubURL without a trailing "/hub" (and slash).
func hubBase(hubURL string) string {
	return strings.TrimSuffix(strings.TrimRight(hubURL, "/"), "/hub")
}

// Listener receives an org's SMS OTP notifications from the hub. It is
// safe for concurrent use.
type Listener struct {
	cfg     Config
	handler Handler
	log     *slog.Logger
	topic   string
	secret  []byte
	dedup   *dedup
	keys    *jwksCache
	tokens  *tokenSource

	mu       sync.Mutex
	pending  map[string]*intent // by hub.mode: the request awaiting verification
	status   Status
	started  bool
	stop     context.CancelFunc
	loopDone chan struct{}

	// renewAfter maps a granted lease to the delay before renewing it;
	// tests shorten it, as a hub grants at least minutes.
	renewAfter func(lease time.Duration) time.Duration
	// retryBackoff is the first delay after a failed renewal (doubling to
	// 5 min). 5 s; tests shorten it.
	retryBackoff time.Duration
}

// Status is the subscription's state as the Listener knows it.
type Status struct {
	// Active is true from a verified subscription to its lease's end, a
	// denial or a verified unsubscription.
	Active bool
	// LeaseSeconds is what the hub granted at the last verification.
	LeaseSeconds int
	// LeaseExpires is when the granted lease ends.
	LeaseExpires time.Time
	// Verifications counts the verified subscribe requests (the first one
	// and every renewal).
	Verifications int
	// DeniedReason is hub.reason of the last denial, if any.
	DeniedReason string
}

// New returns a Listener for cfg that passes events to handler. It makes no
// request: serve it, then call Start.
func New(cfg Config, handler Handler) (*Listener, error) {
	if handler == nil {
		return nil, errors.New("subscriber: nil handler")
	}
	if err := cfg.applyDefaults(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Listener{
		cfg:          cfg,
		handler:      handler,
		log:          cfg.Logger,
		topic:        event.TopicURL(hubBase(cfg.HubURL), cfg.Org),
		secret:       []byte(cfg.Secret),
		dedup:        newDedup(cfg.DedupWindow, DefaultDedupCapacity, cfg.Now),
		keys:         newJWKSCache(cfg.JWKSURL, cfg.HTTPClient, cfg.Now),
		tokens:       &tokenSource{url: cfg.TokenURL, id: cfg.ClientID, secret: cfg.ClientSecret, client: cfg.HTTPClient, now: cfg.Now},
		pending:      map[string]*intent{},
		renewAfter:   func(lease time.Duration) time.Duration { return lease * 8 / 10 },
		retryBackoff: 5 * time.Second,
	}
	return l, nil
}

// Topic returns the topic URL the Listener subscribes to.
func (l *Listener) Topic() string { return l.topic }

// Secret returns the subscription secret (the generated one when
// Config.Secret was empty). Treat it as a credential.
func (l *Listener) Secret() string { return l.cfg.Secret }

// Status returns the subscription's current state.
func (l *Listener) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.status
	if s.Active && !s.LeaseExpires.IsZero() && !l.cfg.Now().Before(s.LeaseExpires) {
		s.Active = false
	}
	return s
}
