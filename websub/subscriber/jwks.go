package subscriber

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/otphub/otphub/event"
)

// jwksRefetchInterval bounds how often an unknown kid makes the cache
// fetch the JWKS again (the hub may have rotated its key).
const jwksRefetchInterval = 10 * time.Second

// errJWKSUnavailable: the JWKS could not be fetched, so a signed SET can
// be neither accepted nor refused; the Listener answers 503.
var errJWKSUnavailable = errors.New("subscriber: the hub's JWKS is unavailable")

// jwksCache fetches the hub's JWKS lazily, on the first signed SET, and
// again when a token names a kid it does not know.
type jwksCache struct {
	url    string
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	set     *event.JWKS
	fetched time.Time
}

func newJWKSCache(url string, client *http.Client, now func() time.Time) *jwksCache {
	return &jwksCache{url: url, client: client, now: now}
}

// keyfunc is a jwt.Keyfunc over the hub's JWKS.
func (c *jwksCache) keyfunc(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.set == nil || (!c.has(kid) && c.now().Sub(c.fetched) >= jwksRefetchInterval) {
		if err := c.fetch(); err != nil && c.set == nil {
			return nil, fmt.Errorf("%w: %w", errJWKSUnavailable, err)
		}
	}
	return c.set.Keyfunc()(t)
}

func (c *jwksCache) has(kid string) bool {
	for _, k := range c.set.Keys {
		if k.Kid == kid {
			return true
		}
	}
	return false
}

func (c *jwksCache) fetch() error {
	c.fetched = c.now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("subscriber: fetching the JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("subscriber: fetching the JWKS: HTTP %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("subscriber: fetching the JWKS: %w", err)
	}
	set, err := event.ParseJWKS(b)
	if err != nil {
		return err
	}
	c.set = set
	return nil
}
