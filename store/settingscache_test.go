package store_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/sqlite"
)

func openCached(t *testing.T, ttl time.Duration) (raw, cached store.Store, org store.Org) {
	t.Helper()
	ctx := context.Background()
	r, err := sqlite.Open(ctx, t.TempDir(), store.Options{EncryptionKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	org, err = r.CreateOrg(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	return r, store.CacheSettings(r, ttl), org
}

func TestCacheSettingsReadsItsOwnWrites(t *testing.T) {
	ctx := context.Background()
	_, st, org := openCached(t, time.Hour)

	if _, err := st.GetOTPSettings(ctx, org.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("never saved: %v", err)
	}
	// The cached miss does not hide a write through the cache.
	in := store.OTPSettings{OrgID: org.ID, ExpirySeconds: 120, Length: 6, AllowedCountryCodes: []int{1, 94}}
	if err := st.PutOTPSettings(ctx, in); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetOTPSettings(ctx, org.ID)
	if err != nil || got.ExpirySeconds != 120 {
		t.Fatalf("after put: %+v %v", got, err)
	}
	// A caller changing what it was given does not change the cache.
	got.AllowedCountryCodes[0] = 44
	if again, _ := st.GetOTPSettings(ctx, org.ID); !slices.Equal(again.AllowedCountryCodes, []int{1, 94}) {
		t.Fatalf("cached settings changed through a returned slice: %v", again.AllowedCountryCodes)
	}

	if list, err := st.ListMessageTemplates(ctx, org.ID); err != nil || len(list) != 0 {
		t.Fatalf("no templates yet: %+v %v", list, err)
	}
	if err := st.PutMessageTemplate(ctx, store.MessageTemplate{OrgID: org.ID, Locale: "fr", Body: "Code {{otp}}"}); err != nil {
		t.Fatal(err)
	}
	if list, _ := st.ListMessageTemplates(ctx, org.ID); len(list) != 1 || list[0].Locale != "fr" {
		t.Fatalf("after put template: %+v", list)
	}
	if err := st.DeleteMessageTemplate(ctx, org.ID, "fr"); err != nil {
		t.Fatal(err)
	}
	if list, _ := st.ListMessageTemplates(ctx, org.ID); len(list) != 0 {
		t.Fatalf("after delete template: %+v", list)
	}
}

func TestCacheSettingsServesFromMemoryUntilTTL(t *testing.T) {
	ctx := context.Background()
	const ttl = time.Second
	raw, _, org := openCached(t, ttl)
	var mu sync.Mutex
	clock := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	st := store.CacheSettingsAt(raw, ttl, now)
	if err := st.PutOTPSettings(ctx, store.OTPSettings{OrgID: org.ID, ExpirySeconds: 120, Length: 6}); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.GetOTPSettings(ctx, org.ID); got.ExpirySeconds != 120 {
		t.Fatalf("first read: %+v", got)
	}
	// Another replica (here: the raw store) changes the settings: this one
	// keeps what it read until the TTL ends, then reads the change.
	if err := raw.PutOTPSettings(ctx, store.OTPSettings{OrgID: org.ID, ExpirySeconds: 300, Length: 6}); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.GetOTPSettings(ctx, org.ID); got.ExpirySeconds != 120 {
		t.Fatalf("within the TTL the cached value is served, got %+v", got)
	}
	mu.Lock()
	clock = clock.Add(ttl) // the TTL has ended
	mu.Unlock()
	if got, _ := st.GetOTPSettings(ctx, org.ID); got.ExpirySeconds != 300 {
		t.Fatalf("after the TTL the change is read, got %+v", got)
	}
}

// A read racing a write never leaves the value the write replaced in the
// cache: after the writes end, every read returns the last one.
func TestCacheSettingsConcurrentWrites(t *testing.T) {
	ctx := context.Background()
	_, st, org := openCached(t, time.Hour)
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if _, err := st.GetOTPSettings(ctx, org.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := 1; i <= 50; i++ {
		if err := st.PutOTPSettings(ctx, store.OTPSettings{OrgID: org.ID, ExpirySeconds: 60 + i, Length: 6}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if got, _ := st.GetOTPSettings(ctx, org.ID); got.ExpirySeconds != 110 {
		t.Fatalf("after the writes: %+v, want the last write (110)", got)
	}
}
