// Package websub is otphub's W3C WebSub hub: subscribe and unsubscribe
// with asynchronous verification of intent, leases and their expiry,
// denial, publishing over HTTP into the durable log, the subscriptions API,
// and the delivery.Resolver that turns an event into one webhook Target
// per active subscription of its org's topic. Content distribution itself
// is the dispatcher's (with websub/webhook as the sender).
//
// Topics are per org: <public url>/topics/{org}/NOTIFICATIONS, with the
// alias {org}-NOTIFICATIONS. Every /hub request needs a bearer token: the
// subscribe scope to subscribe or unsubscribe, publish to publish, on the
// topic's org.
package websub

import (
	"context"
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/egress"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/internal/orgs"
	"github.com/otphub/otphub/store"
)

// SETSigner gives the key signed-SET (set-jwt) deliveries are signed with;
// *oauth.Issuer implements it, and its JWKS publishes the public half.
type SETSigner interface {
	SigningKey() (kid string, key crypto.Signer)
}

// Defaults of Config.
const (
	DefaultLeaseSeconds            = 10 * 24 * 60 * 60 // 10 days (WebSub §8.2)
	DefaultMinLeaseSeconds         = 300
	DefaultMaxLeaseSeconds         = 30 * 24 * 60 * 60
	DefaultVerifyTimeout           = 10 * time.Second
	DefaultMaxPendingVerifications = 1000
	DefaultMaxSubscriptionsPerOrg  = 100
	DefaultResolveCacheTTL         = time.Second
	DefaultExpiryInterval          = time.Minute
	DefaultRenewBefore             = 24 * time.Hour
	// MaxSecretBytes: hub.secret must be shorter than this (WebSub §5.1).
	MaxSecretBytes = 200
	// MaxCallbackBytes caps hub.callback.
	MaxCallbackBytes = 2048
	// maxFormBytes caps a subscription request body.
	maxFormBytes = 16 << 10
)

// Defaults and bounds of the tenant-isolation settings of Config.
const (
	DefaultMaxPendingPerOrg = 50
	DefaultSecretOverlap    = 24 * time.Hour
	// MaxSecretOverlap caps SecretOverlap and otphub.secret_overlap_seconds.
	MaxSecretOverlap = 7 * 24 * time.Hour
)

// PayloadKeys gives the key an org's asgardeo-format deliveries are
// encrypted with, nil when the org has payload encryption off
// (*keyservice.Service implements it).
type PayloadKeys interface {
	EncryptionKey(ctx context.Context, orgID int64) (*rsa.PublicKey, error)
}

// BacklogGate tells whether an org's next event should be refused because
// every destination it would go to is backed up, and how long to wait
// before trying again (backlog.Gate).
type BacklogGate interface {
	Over(ctx context.Context, orgID int64, orgName string) (bool, time.Duration)
}

// Config configures the hub.
type Config struct {
	// PublicURL is the base URL the hub is reached at (--public-url);
	// topic URLs and the hub URL (<PublicURL>/hub) derive from it. Required.
	PublicURL string
	// Backlog, if set, refuses publishing for an org (503 delivery_backlog)
	// while every one of its destinations is backed up.
	Backlog BacklogGate
	// PayloadKeys, if set, encrypts the asgardeo-format deliveries of orgs
	// that turned payload encryption on.
	PayloadKeys PayloadKeys
	// DefaultLeaseSeconds is the lease when a subscriber asks for none.
	// Default 864000 (10 days).
	DefaultLeaseSeconds int
	// MinLeaseSeconds and MaxLeaseSeconds bound a requested lease: a value
	// outside is clamped to the nearest bound (WebSub lets the hub decide;
	// the verification request tells the subscriber the lease granted).
	// Defaults 300 and 2592000 (30 days).
	MinLeaseSeconds int
	MaxLeaseSeconds int
	// VerifyTimeout bounds one intent verification (or denial) request.
	// Default 10 s.
	VerifyTimeout time.Duration
	// MaxPendingVerifications bounds verifications in flight; a subscribe
	// request beyond it gets 503 with Retry-After. Default 1000.
	MaxPendingVerifications int
	// MaxPendingPerOrg is each org's share of them: one org's callbacks
	// that never answer hold at most this many, so only that org gets 503
	// too_many_pending while every other org's requests go through.
	// Default 50 (at most MaxPendingVerifications).
	MaxPendingPerOrg int
	// SecretOverlap is how long deliveries stay signed under a replaced
	// hub.secret as well as the new one after a re-subscription rotates
	// it (a subscriber may ask for less, or 0, with
	// otphub.secret_overlap_seconds). Default 24 h; negative disables.
	SecretOverlap time.Duration
	// MaxSubscriptionsPerOrg: a new subscription beyond it is denied
	// (hub.mode=denied) after the 202. Re-subscriptions always pass.
	// Default 100.
	MaxSubscriptionsPerOrg int
	// MaxPublishBytes caps a published event body. Default event.MaxEventBytes.
	MaxPublishBytes int64
	// ResolveCacheTTL is how long Resolve trusts an org's subscription list
	// before reloading it in the background (the stale list serves until
	// the reload is done); changes made through this hub invalidate it at
	// once, changes made by another replica show within it and one load.
	// Default 1 s.
	ResolveCacheTTL time.Duration
	// ExpiryInterval is how often Run deletes lapsed subscriptions, renews
	// auto-renewing ones and refreshes the subscription gauges. Default 1 min.
	ExpiryInterval time.Duration
	// RenewBefore: an auto-renewing subscription (one whose subscriber
	// asked for no lease) is re-verified once less than this is left of its
	// lease; a failed re-verification is tried again every RenewBefore/24
	// (at least ExpiryInterval) until the lease ends. Default 1 day, at
	// most half the default lease.
	RenewBefore time.Duration
	// TestEventsPerMinute caps the test events (POST
	// …/subscriptions/{id}/test) of one org per minute on this replica.
	// Default 10.
	TestEventsPerMinute int
	// TestEventWait is how long the test route waits for the test event's
	// delivery record, to answer with its id. Default 5 s; negative: no wait.
	TestEventWait time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) applyDefaults() {
	if c.DefaultLeaseSeconds == 0 {
		c.DefaultLeaseSeconds = DefaultLeaseSeconds
	}
	if c.MinLeaseSeconds == 0 {
		c.MinLeaseSeconds = DefaultMinLeaseSeconds
	}
	if c.MaxLeaseSeconds == 0 {
		c.MaxLeaseSeconds = DefaultMaxLeaseSeconds
	}
	if c.VerifyTimeout == 0 {
		c.VerifyTimeout = DefaultVerifyTimeout
	}
	if c.MaxPendingVerifications == 0 {
		c.MaxPendingVerifications = DefaultMaxPendingVerifications
	}
	if c.MaxPendingPerOrg == 0 {
		c.MaxPendingPerOrg = min(DefaultMaxPendingPerOrg, c.MaxPendingVerifications)
	}
	if c.SecretOverlap == 0 {
		c.SecretOverlap = DefaultSecretOverlap
	}
	if c.MaxSubscriptionsPerOrg == 0 {
		c.MaxSubscriptionsPerOrg = DefaultMaxSubscriptionsPerOrg
	}
	if c.MaxPublishBytes == 0 {
		c.MaxPublishBytes = event.MaxEventBytes
	}
	if c.ResolveCacheTTL == 0 {
		c.ResolveCacheTTL = DefaultResolveCacheTTL
	}
	if c.ExpiryInterval == 0 {
		c.ExpiryInterval = DefaultExpiryInterval
	}
	if c.RenewBefore == 0 {
		c.RenewBefore = min(DefaultRenewBefore, time.Duration(c.DefaultLeaseSeconds)*time.Second/2)
	}
	if c.TestEventsPerMinute == 0 {
		c.TestEventsPerMinute = DefaultTestEventsPerMinute
	}
	if c.TestEventWait == 0 {
		c.TestEventWait = DefaultTestEventWait
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate checks the configuration (after defaults).
func (c Config) Validate() error {
	u, err := url.Parse(c.PublicURL)
	if c.PublicURL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("websub: PublicURL %q must be an absolute http(s) URL", c.PublicURL)
	}
	switch {
	case c.MinLeaseSeconds < 1:
		return errors.New("websub: MinLeaseSeconds must be positive")
	case c.MaxLeaseSeconds < c.MinLeaseSeconds:
		return errors.New("websub: MaxLeaseSeconds must be at least MinLeaseSeconds")
	case c.DefaultLeaseSeconds < c.MinLeaseSeconds || c.DefaultLeaseSeconds > c.MaxLeaseSeconds:
		return errors.New("websub: DefaultLeaseSeconds must lie within [MinLeaseSeconds, MaxLeaseSeconds]")
	case c.VerifyTimeout < 0, c.ResolveCacheTTL < 0, c.ExpiryInterval < 0, c.RenewBefore < 0:
		return errors.New("websub: durations must not be negative")
	case c.MaxPendingVerifications < 0, c.MaxPendingPerOrg < 0, c.TestEventsPerMinute < 0, c.MaxSubscriptionsPerOrg < 0, c.MaxPublishBytes < 0:
		return errors.New("websub: limits must not be negative")
	case c.SecretOverlap > MaxSecretOverlap:
		return fmt.Errorf("websub: SecretOverlap must be at most %s", MaxSecretOverlap)
	}
	return nil
}

// Hub is the WebSub hub.
type Hub struct {
	cfg    Config
	base   string // PublicURL without a trailing slash
	hubURL string
	st     store.Store
	pub    bus.Publisher
	eg     *egress.Client
	signer SETSigner
	log    *slog.Logger
	m      *metrics

	// Verifications run on ctx (not the request's): Run cancels it on
	// shutdown and waits for them.
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stopMu  sync.Mutex
	stopped bool          // Run returned: no new verifications
	pending int           // verifications in flight (under stopMu)
	perOrg  map[int64]int // of them, per org (under stopMu)
	changed chan struct{} // a subscription changed: Run recounts the gauges

	renewMu  sync.Mutex
	renewing map[string]time.Time // subscription ID → zero while renewing, else when the last renewal failed

	res *resolver

	testCap *orgs.MinuteCap // test events per org and minute
}

// New returns the hub. signer may be nil when no subscription may use the
// set-jwt format (such subscriptions are then refused).
func New(cfg Config, st store.Store, pub bus.Publisher, eg *egress.Client, signer SETSigner, logger *slog.Logger, reg prometheus.Registerer) (*Hub, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case st == nil:
		return nil, errors.New("websub: nil store")
	case pub == nil:
		return nil, errors.New("websub: nil publisher")
	case eg == nil:
		return nil, errors.New("websub: nil egress client")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	h := &Hub{
		cfg:     cfg,
		base:    strings.TrimRight(cfg.PublicURL, "/"),
		st:      st,
		pub:     pub,
		eg:      eg,
		signer:  signer,
		log:     logger.With("component", "websub"),
		m:       m,
		perOrg:  make(map[int64]int),
		changed: make(chan struct{}, 1),

		renewing: map[string]time.Time{},
	}
	h.hubURL = h.base + "/hub"
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.res = newResolver(h)
	h.testCap = orgs.NewMinuteCap(cfg.TestEventsPerMinute, cfg.Now)
	return h, nil
}

// Forget drops what the hub caches about org's destinations (its
// subscriptions and their payload key), so a change made elsewhere (the
// key service's encryption setting) applies to the next event at once.
func (h *Hub) Forget(org string) { h.res.invalidate(org) }

// HubURL is the hub's URL, <PublicURL>/hub.
func (h *Hub) HubURL() string { return h.hubURL }

// Register mounts the hub's routes on mux:
//
//	POST   /hub                                     subscribe | unsubscribe | publish (bearer token)
//	GET    /topics/{org}/NOTIFICATIONS              discovery (Link headers; no token)
//	GET    /api/v1/orgs/{org}/subscriptions         list (subscribe or admin scope)
//	GET    /api/v1/orgs/{org}/subscriptions/{id}    one
//	DELETE /api/v1/orgs/{org}/subscriptions/{id}    remove at once, no verification
//	POST   /api/v1/orgs/{org}/subscriptions/{id}/test  send it (only it) a test event
func (h *Hub) Register(mux httpx.Mux, v access.Verifier) {
	mux.Handle("POST /hub", access.Authenticate(v, http.HandlerFunc(h.handleHub)))
	mux.HandleFunc("GET /topics/{org}/NOTIFICATIONS", h.handleDiscovery)
	mux.Handle("GET /api/v1/orgs/{org}/subscriptions", access.Authenticate(v, access.Require(access.ScopeSubscribe, http.HandlerFunc(h.handleList))))
	mux.Handle("GET /api/v1/orgs/{org}/subscriptions/{id}", access.Authenticate(v, access.Require(access.ScopeSubscribe, http.HandlerFunc(h.handleGet))))
	mux.Handle("DELETE /api/v1/orgs/{org}/subscriptions/{id}", access.Authenticate(v, access.Require(access.ScopeSubscribe, http.HandlerFunc(h.handleDelete))))
	mux.Handle("POST /api/v1/orgs/{org}/subscriptions/{id}/test", access.Authenticate(v, access.Require(access.ScopeSubscribe, http.HandlerFunc(h.handleTest))))
}

// Run deletes subscriptions whose lease ended and refreshes the
// otphub_websub_subscriptions gauges every ExpiryInterval until ctx is
// done; then it cancels verifications in flight and waits for them.
func (h *Hub) Run(ctx context.Context) error {
	defer func() {
		h.stopMu.Lock()
		h.stopped = true
		h.stopMu.Unlock()
		h.cancel()
		h.wg.Wait()
	}()
	t := time.NewTicker(h.cfg.ExpiryInterval)
	defer t.Stop()
	for {
		h.sweep(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-h.changed:
		}
	}
}

// markChanged asks Run to recount the gauges soon (changes coalesce).
func (h *Hub) markChanged() {
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

// sweep expires lapsed subscriptions and recounts the gauges.
func (h *Hub) sweep(ctx context.Context) {
	n, err := h.st.ExpireSubscriptions(ctx, h.cfg.Now())
	if err != nil {
		if ctx.Err() == nil {
			h.log.Warn("expiring subscriptions failed", "err", err)
		}
		return
	}
	if n > 0 {
		h.log.Info("subscription leases expired", "count", n)
		h.res.invalidateAll()
	}
	orgs, err := h.st.ListOrgs(ctx)
	if err != nil {
		return
	}
	counts := map[string]int{}
	for _, o := range orgs {
		subs, err := h.st.ListSubscriptions(ctx, o.ID)
		if err != nil {
			return
		}
		for _, s := range subs {
			counts[s.State]++
			h.maybeRenew(o, s)
		}
	}
	for _, s := range []string{store.SubActive, store.SubDisabled} {
		h.m.subscriptions.WithLabelValues(s).Set(float64(counts[s]))
	}
}

// topicOrg returns the org a hub.topic names, and the canonical topic URL.
// Accepted: <public url>/topics/{org}/NOTIFICATIONS and {org}-NOTIFICATIONS.
func (h *Hub) topicOrg(topic string) (org, canonical string, ok bool) {
	const suffix = "NOTIFICATIONS"
	prefix := h.base + "/topics/"
	switch {
	case strings.HasPrefix(topic, prefix):
		rest := strings.TrimPrefix(topic, prefix)
		o, s, found := strings.Cut(rest, "/")
		if !found || s != suffix {
			return "", "", false
		}
		org = o
	case strings.HasSuffix(topic, "-"+suffix) && !strings.Contains(topic, "/"):
		org = strings.TrimSuffix(topic, "-"+suffix)
	default:
		return "", "", false
	}
	if !event.ValidOrgName(org) {
		return "", "", false
	}
	return org, event.TopicURL(h.base, org), true
}

// handleDiscovery answers a topic URL with its hub and self links (WebSub
// §4) so a subscriber can discover the hub from the topic.
func (h *Hub) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	org := r.PathValue("org")
	if !event.ValidOrgName(org) {
		httpx.Error(w, http.StatusNotFound, "unknown_topic", fmt.Sprintf("no topic for %q: an organization name is [a-z0-9][a-z0-9-]{0,62}", org))
		return
	}
	topic := event.TopicURL(h.base, org)
	w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="hub", <%s>; rel="self"`, h.hubURL, topic))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "{\"hub\":%q,\"topic\":%q}\n", h.hubURL, topic)
}
