package store

import "time"

// CacheSettingsAt is CacheSettings on the clock now.
func CacheSettingsAt(s Store, ttl time.Duration, now func() time.Time) Store {
	return cacheSettings(s, ttl, now)
}
