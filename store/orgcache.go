package store

import (
	"context"
	"sync"
)

// maxCachedOrgs bounds the org cache; past it the cache starts over.
const maxCachedOrgs = 10000

// CacheOrgs returns s with GetOrg and GetOrgByID served from memory after
// the first hit. Orgs are never renamed or deleted, so a found org cannot
// go stale, on this replica or any other; a miss is never cached (the org
// may be created later). Every request resolves its {org}: this keeps that
// off the database.
func CacheOrgs(s Store) Store {
	return &orgCache{Store: s, byName: map[string]Org{}, byID: map[int64]Org{}}
}

type orgCache struct {
	Store
	mu     sync.RWMutex
	byName map[string]Org
	byID   map[int64]Org
}

func (c *orgCache) GetOrg(ctx context.Context, name string) (Org, error) {
	c.mu.RLock()
	o, ok := c.byName[name]
	c.mu.RUnlock()
	if ok {
		return o, nil
	}
	o, err := c.Store.GetOrg(ctx, name)
	if err == nil {
		c.remember(o)
	}
	return o, err
}

func (c *orgCache) GetOrgByID(ctx context.Context, id int64) (Org, error) {
	c.mu.RLock()
	o, ok := c.byID[id]
	c.mu.RUnlock()
	if ok {
		return o, nil
	}
	o, err := c.Store.GetOrgByID(ctx, id)
	if err == nil {
		c.remember(o)
	}
	return o, err
}

func (c *orgCache) remember(o Org) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.byID) >= maxCachedOrgs {
		clear(c.byName)
		clear(c.byID)
	}
	c.byName[o.Name] = o
	c.byID[o.ID] = o
}
