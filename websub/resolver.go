package websub

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/websub/webhook"
)

// Resolver returns the delivery.Resolver of webhook destinations: one
// Target per active, unexpired subscription of the event's org topic.
func (h *Hub) Resolver() delivery.Resolver { return h.res }

// resolver caches each org's targets for ResolveCacheTTL.
type resolver struct {
	h    *Hub
	opts webhook.Options

	loads singleflight.Group

	mu      sync.Mutex
	gen     uint64 // bumped by every invalidation; a load started before one is not cached
	entries map[string]*orgEntry
	// refreshing holds the orgs whose expired entry is being reloaded in
	// the background (refresh): one reload each, however many callers
	// find it expired meanwhile.
	refreshing map[string]bool
}

type orgEntry struct {
	loaded  time.Time
	org     store.Org
	found   bool
	targets []target
}

type target struct {
	t         delivery.Target
	expiresAt time.Time
}

// maxCachedOrgs bounds the cache; beyond it the cache is emptied.
const maxCachedOrgs = 10000

func newResolver(h *Hub) *resolver {
	var keys webhook.KeySource
	if h.signer != nil {
		keys = h.signer
	}
	return &resolver{
		h: h,
		opts: webhook.Options{
			HubURL:           h.hubURL,
			Client:           h.eg.HTTP(),
			Keys:             keys,
			MaxResponseBytes: h.eg.MaxResponseBytes(),
			Now:              h.cfg.Now,
		},
		entries:    map[string]*orgEntry{},
		refreshing: map[string]bool{},
	}
}

func (r *resolver) invalidate(org string) {
	r.mu.Lock()
	r.gen++
	delete(r.entries, org)
	r.mu.Unlock()
}

func (r *resolver) invalidateAll() {
	r.mu.Lock()
	r.gen++
	r.entries = map[string]*orgEntry{}
	r.mu.Unlock()
}

// Resolve returns the webhook targets of ev. An event whose org is unknown,
// or whose organizationId is not that org's, has none (logged): retrying
// would not change that, and delivering it would cross tenants.
func (r *resolver) Resolve(ctx context.Context, ev *event.SmsOtpNotificationEvent) ([]delivery.Target, error) {
	e, err := r.entry(ctx, ev.OrganizationName)
	if err != nil {
		return nil, err
	}
	if !e.found {
		return nil, nil
	}
	if e.org.ID != ev.OrganizationID {
		r.h.log.Warn("event's organizationId does not match its organizationName; not delivered to webhooks",
			"org", ev.OrganizationName, "organizationId", ev.OrganizationID, "jti", ev.ID)
		return nil, nil
	}
	now := r.h.cfg.Now()
	out := make([]delivery.Target, 0, len(e.targets))
	for _, t := range e.targets {
		if now.Before(t.expiresAt) {
			out = append(out, t.t)
		}
	}
	return out, nil
}

func (r *resolver) entry(ctx context.Context, orgName string) (*orgEntry, error) {
	now := r.h.cfg.Now()
	r.mu.Lock()
	e, ok := r.entries[orgName]
	gen := r.gen
	r.mu.Unlock()
	if ok && !now.Before(e.loaded) {
		if now.Sub(e.loaded) >= r.h.cfg.ResolveCacheTTL {
			r.refresh(orgName, now, gen)
		}
		return e, nil
	}
	// Concurrent misses of one org share one load.
	v, err, _ := r.loads.Do(orgName, func() (any, error) { return r.load(ctx, orgName, now, gen) })
	if err != nil {
		return nil, err
	}
	return v.(*orgEntry), nil
}

// refreshTimeout bounds a background refresh of an expired entry.
const refreshTimeout = 10 * time.Second

// refresh reloads org's expired entry in the background, once at a time,
// while callers go on with the stale one: every publish (the backlog gate)
// and every routed record asks for its org's targets, and making them all
// wait each ResolveCacheTTL for a store that is busy (the very moment it
// is: under load) stalled publishing and delivery together
// (docs/performance.md). The stale entry is at most one load older than
// the TTL; an invalidation (a change made through this hub) still drops
// it at once, so the next caller waits for a fresh load. It is tracked in
// refreshing rather than by singleflight's DoChan, which would keep a
// channel for every caller until the reload ends: thousands a second
// under load, the moment a reload is slow.
func (r *resolver) refresh(orgName string, now time.Time, gen uint64) {
	r.mu.Lock()
	busy := r.refreshing[orgName]
	r.refreshing[orgName] = true
	r.mu.Unlock()
	if busy {
		return
	}
	go func() {
		defer func() {
			r.mu.Lock()
			delete(r.refreshing, orgName)
			r.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
		defer cancel()
		if _, err := r.load(ctx, orgName, now, gen); err != nil {
			r.h.log.Warn("refreshing an org's subscriptions failed; keeping the last known ones", "org", orgName, "err", err)
		}
	}()
}

// load reads org's subscriptions and caches them unless an invalidation
// happened meanwhile (gen changed).
func (r *resolver) load(ctx context.Context, orgName string, now time.Time, gen uint64) (*orgEntry, error) {
	e := &orgEntry{loaded: now}
	org, err := r.h.st.GetOrg(ctx, orgName)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("websub: load org: %w", err)
	default:
		e.org, e.found = org, true
		subs, err := r.h.st.ActiveSubscriptions(ctx, org.ID, event.TopicURL(r.h.base, org.Name), now)
		if err != nil {
			return nil, fmt.Errorf("websub: load subscriptions: %w", err)
		}
		key, err := r.payloadKey(ctx, org.ID)
		if err != nil {
			return nil, err
		}
		for _, s := range subs {
			e.targets = append(e.targets, target{t: r.target(s, key), expiresAt: s.ExpiresAt})
		}
	}
	r.mu.Lock()
	if r.gen == gen {
		if len(r.entries) >= maxCachedOrgs {
			r.entries = map[string]*orgEntry{}
		}
		r.entries[orgName] = e
	}
	r.mu.Unlock()
	return e, nil
}

// payloadKey is the org's payload encryption key, nil when it has none.
func (r *resolver) payloadKey(ctx context.Context, orgID int64) (*rsa.PublicKey, error) {
	if r.h.cfg.PayloadKeys == nil {
		return nil, nil
	}
	key, err := r.h.cfg.PayloadKeys.EncryptionKey(ctx, orgID)
	if err != nil {
		return nil, fmt.Errorf("websub: payload key: %w", err)
	}
	return key, nil
}

// target builds the webhook Target of s; key, when set, encrypts its
// asgardeo-format bodies.
func (r *resolver) target(s store.Subscription, key *rsa.PublicKey) delivery.Target {
	orgID, id := s.OrgID, s.ID
	opts := r.opts
	opts.PayloadKey = key
	return delivery.Target{
		Type:        webhook.Type,
		ID:          s.ID,
		Endpoint:    endpointOf(s.Callback),
		Sender:      webhook.New(s, opts),
		AtLeastOnce: true,
		OnGone: func(ctx context.Context) error {
			// 410 Gone ends the subscription (WebSub §7); a renewal
			// (subscribe again) reactivates it.
			err := r.h.st.SetSubscriptionState(ctx, orgID, id, store.SubDisabled)
			r.invalidateID(orgID)
			r.h.markChanged()
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		},
	}
}

// invalidateID drops the cached entry of the org with id.
func (r *resolver) invalidateID(id int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	for name, e := range r.entries {
		if e.found && e.org.ID == id {
			delete(r.entries, name)
		}
	}
}

// Lookup rebuilds the target of a retry task: store.ErrNotFound when the
// subscription was deleted, disabled or its lease ended.
func (r *resolver) Lookup(ctx context.Context, orgID int64, _, destID string) (delivery.Target, error) {
	s, err := r.h.st.GetSubscription(ctx, orgID, destID)
	if err != nil {
		return delivery.Target{}, err
	}
	if s.State != store.SubActive || !r.h.cfg.Now().Before(s.ExpiresAt) {
		return delivery.Target{}, fmt.Errorf("websub: subscription is %s: %w", stateOrExpired(s, r.h.cfg.Now()), store.ErrNotFound)
	}
	key, err := r.payloadKey(ctx, orgID)
	if err != nil {
		return delivery.Target{}, err
	}
	return r.target(s, key), nil
}

// Types is the one type of webhook destinations.
func (r *resolver) Types() []string { return []string{webhook.Type} }

func stateOrExpired(s store.Subscription, now time.Time) string {
	if s.State != store.SubActive {
		return s.State
	}
	return stateExpired
}

// endpointOf is the breaker/concurrency key of a callback: scheme://host:port.
func endpointOf(callback string) string {
	u, err := url.Parse(callback)
	if err != nil {
		return callback
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return u.Scheme + "://" + net.JoinHostPort(u.Hostname(), port)
}
