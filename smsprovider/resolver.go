package smsprovider

import (
	"context"
	"errors"
	"time"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
)

// maxCachedOrgs bounds the resolver cache; past it, expired entries are
// dropped, and if none are, the whole cache.
const maxCachedOrgs = 10000

// orgProviders is the cached resolution of one org's two slots.
type orgProviders struct {
	primary, fallback *delivery.Target // nil when the slot is empty
	loaded            time.Time
}

// Resolver returns the delivery.Resolver of SMS provider destinations.
func (s *Service) Resolver() delivery.Resolver { return resolver{s} }

type resolver struct{ s *Service }

// Resolve returns the org's primary provider with its fallback, or the
// fallback alone when only it is configured, or nothing.
func (r resolver) Resolve(ctx context.Context, ev *event.SmsOtpNotificationEvent) ([]delivery.Target, error) {
	op, err := r.s.slots(ctx, ev.OrganizationID)
	if err != nil {
		return nil, err
	}
	switch {
	case op.primary != nil:
		t := *op.primary
		t.Fallback = op.fallback
		return []delivery.Target{t}, nil
	case op.fallback != nil:
		return []delivery.Target{*op.fallback}, nil
	}
	return nil, nil
}

// Types lists the registered provider types.
func (r resolver) Types() []string { return r.s.providers.Types() }

// Lookup rebuilds the target of a retry: destID is the slot. The slot's
// current provider is returned even if its type changed since the first
// attempt (the OTP still needs delivering).
func (r resolver) Lookup(ctx context.Context, orgID int64, destType, destID string) (delivery.Target, error) {
	op, err := r.s.slots(ctx, orgID)
	if err != nil {
		return delivery.Target{}, err
	}
	switch {
	case destID == store.ProviderPrimary && op.primary != nil:
		t := *op.primary
		t.Fallback = op.fallback
		return t, nil
	case destID == store.ProviderFallback && op.fallback != nil:
		return *op.fallback, nil
	}
	return delivery.Target{}, store.ErrNotFound
}

// slots returns org's resolved slots, from the cache when fresh.
func (s *Service) slots(ctx context.Context, orgID int64) (*orgProviders, error) {
	now := s.cfg.Now()
	s.mu.Lock()
	op, ok := s.cache[orgID]
	s.mu.Unlock()
	if ok && now.Sub(op.loaded) < s.cfg.CacheTTL && !now.Before(op.loaded) {
		return op, nil
	}
	s.mu.Lock()
	gen := s.gen
	s.mu.Unlock()
	op = &orgProviders{loaded: now}
	for _, slot := range []string{store.ProviderPrimary, store.ProviderFallback} {
		sp, err := s.load(ctx, orgID, slot)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		sender, endpoint := s.sender(sp, true)
		t := &delivery.Target{Type: sp.row.Type, ID: slot, Endpoint: endpoint, Sender: sender, OnDelivered: s.onDelivered(sp)}
		if slot == store.ProviderPrimary {
			op.primary = t
		} else {
			op.fallback = t
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if gen != s.gen {
		return op, nil // a PUT or DELETE raced this load: do not cache it
	}
	if len(s.cache) >= maxCachedOrgs {
		for id, e := range s.cache {
			if now.Sub(e.loaded) >= s.cfg.CacheTTL {
				delete(s.cache, id)
			}
		}
		if len(s.cache) >= maxCachedOrgs {
			clear(s.cache)
		}
	}
	s.cache[orgID] = op
	return op, nil
}

// invalidate drops org's cached resolution.
func (s *Service) invalidate(orgID int64) {
	s.mu.Lock()
	delete(s.cache, orgID)
	s.gen++
	s.mu.Unlock()
}
