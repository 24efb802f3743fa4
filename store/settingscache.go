package store

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// maxCachedSettings bounds the settings cache; past it the cache starts over.
const maxCachedSettings = 10000

// CacheSettings returns s with GetOTPSettings and ListMessageTemplates
// served from memory for up to ttl after a read. Every OTP sent reads
// both (the challenge start, and the provider worker's screening): this
// keeps them off the database.
//
// A write through the returned store (PutOTPSettings, PutMessageTemplate,
// DeleteMessageTemplate) drops the org's entry at once, so this replica
// reads its own writes. Another replica sharing the database sees a
// change within ttl. An org without saved settings (ErrNotFound) is
// cached like any other answer; other errors are not.
func CacheSettings(s Store, ttl time.Duration) Store {
	return cacheSettings(s, ttl, time.Now)
}

func cacheSettings(s Store, ttl time.Duration, now func() time.Time) Store {
	return &settingsCache{Store: s, ttl: ttl, now: now, orgs: map[int64]*cachedSettings{}}
}

type settingsCache struct {
	Store
	ttl time.Duration
	now func() time.Time

	mu   sync.Mutex
	orgs map[int64]*cachedSettings
	// gen counts writes: a read that saw a write begin after it started
	// does not fill the cache (it may hold what the write replaced).
	gen uint64
}

type cachedSettings struct {
	settings       OTPSettings
	settingsErr    error // nil or ErrNotFound
	settingsUntil  time.Time
	templates      []MessageTemplate
	templatesUntil time.Time
}

func (c *settingsCache) GetOTPSettings(ctx context.Context, orgID int64) (OTPSettings, error) {
	now := c.now()
	c.mu.Lock()
	e := c.orgs[orgID]
	if e != nil && now.Before(e.settingsUntil) {
		st, err := e.settings, e.settingsErr
		c.mu.Unlock()
		return cloneSettings(st), err
	}
	gen := c.gen
	c.mu.Unlock()

	st, err := c.Store.GetOTPSettings(ctx, orgID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return st, err
	}
	c.fill(orgID, gen, func(e *cachedSettings) {
		e.settings, e.settingsErr, e.settingsUntil = cloneSettings(st), err, now.Add(c.ttl)
	})
	return st, err
}

func (c *settingsCache) ListMessageTemplates(ctx context.Context, orgID int64) ([]MessageTemplate, error) {
	now := c.now()
	c.mu.Lock()
	e := c.orgs[orgID]
	if e != nil && now.Before(e.templatesUntil) {
		list := slices.Clone(e.templates)
		c.mu.Unlock()
		return list, nil
	}
	gen := c.gen
	c.mu.Unlock()

	list, err := c.Store.ListMessageTemplates(ctx, orgID)
	if err != nil {
		return nil, err
	}
	c.fill(orgID, gen, func(e *cachedSettings) {
		e.templates, e.templatesUntil = slices.Clone(list), now.Add(c.ttl)
	})
	return list, nil
}

// fill records what a read that started at generation gen found, unless
// a write happened since.
func (c *settingsCache) fill(orgID int64, gen uint64, set func(*cachedSettings)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	e := c.orgs[orgID]
	if e == nil {
		if len(c.orgs) >= maxCachedSettings {
			clear(c.orgs)
		}
		e = &cachedSettings{}
		c.orgs[orgID] = e
	}
	set(e)
}

// forget drops the org's entry around a write: before it (no read that
// starts during the write fills the cache) and after it (nothing read
// before the write survives it).
func (c *settingsCache) forget(orgID int64, write func() error) error {
	c.mu.Lock()
	c.gen++
	delete(c.orgs, orgID)
	c.mu.Unlock()
	err := write()
	c.mu.Lock()
	c.gen++
	delete(c.orgs, orgID)
	c.mu.Unlock()
	return err
}

func (c *settingsCache) PutOTPSettings(ctx context.Context, s OTPSettings) error {
	return c.forget(s.OrgID, func() error { return c.Store.PutOTPSettings(ctx, s) })
}

func (c *settingsCache) PutMessageTemplate(ctx context.Context, t MessageTemplate) error {
	return c.forget(t.OrgID, func() error { return c.Store.PutMessageTemplate(ctx, t) })
}

func (c *settingsCache) DeleteMessageTemplate(ctx context.Context, orgID int64, locale string) error {
	return c.forget(orgID, func() error { return c.Store.DeleteMessageTemplate(ctx, orgID, locale) })
}

// cloneSettings copies the slices of s, so no caller can change the
// cached value through them.
func cloneSettings(s OTPSettings) OTPSettings {
	s.AllowedCountryCodes = slices.Clone(s.AllowedCountryCodes)
	s.AllowedNumberTypes = slices.Clone(s.AllowedNumberTypes)
	return s
}
