package sqlite_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/sqlite"
	"github.com/otphub/otphub/store/storetest"
)

func testKey(tb testing.TB) []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		tb.Fatal(err)
	}
	return k
}

func openAt(tb testing.TB, dir string, key []byte) *sqlite.Store {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), dir, store.Options{EncryptionKey: key})
	if err != nil {
		tb.Fatalf("sqlite.Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func openFresh(tb testing.TB) store.Store {
	return openAt(tb, tb.TempDir(), testKey(tb))
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openFresh(t) })
}

// The read caches the app puts in front of the store change nothing a
// caller can see.
func TestConformanceCached(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return store.CacheSettings(store.CacheOrgs(openFresh(t)), time.Second)
	})
}

func rawDB(t *testing.T, dir string) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, sqlite.FileName)+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

func TestSecretsAtRest(t *testing.T) {
	dir := t.TempDir()
	s := openAt(t, dir, testKey(t))
	storetest.CheckSecretsAtRest(t, s, rawDB(t, dir))
}

func TestOpenRejectsBadKey(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		_, err := sqlite.Open(context.Background(), t.TempDir(), store.Options{EncryptionKey: make([]byte, n)})
		if err == nil || !strings.Contains(err.Error(), "32 bytes") {
			t.Errorf("Open with a %d-byte key: err = %v, want one naming the 32-byte requirement", n, err)
		}
	}
	if _, err := sqlite.Open(context.Background(), "", store.Options{EncryptionKey: make([]byte, 32)}); err == nil {
		t.Errorf("Open with an empty directory succeeded")
	}
}

func TestReopenKeepsDataAndAppliesMigrationsOnce(t *testing.T) {
	dir, key := t.TempDir(), testKey(t)
	ctx := context.Background()
	s, err := sqlite.Open(ctx, dir, store.Options{EncryptionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	org, err := s.CreateOrg(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutSMSProvider(ctx, store.SMSProvider{OrgID: org.ID, Slot: store.ProviderPrimary, Type: "console", Config: []byte(`{"a":1}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s2 := openAt(t, dir, key)
	got, err := s2.GetOrg(ctx, "acme")
	if err != nil || got.ID != org.ID {
		t.Fatalf("GetOrg after reopen = %+v, %v", got, err)
	}
	p, err := s2.GetSMSProvider(ctx, org.ID, store.ProviderPrimary)
	if err != nil || string(p.Config) != `{"a":1}` {
		t.Fatalf("GetSMSProvider after reopen = %+v, %v", p, err)
	}
	raw := rawDB(t, dir)
	var n, versions int
	if err := raw.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations`).Scan(&n, &versions); err != nil || n != versions || n < 2 {
		t.Fatalf("schema_migrations rows = %d for %d versions, %v; want each migration once", n, versions, err)
	}
	var mode string
	if err := raw.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestWrongKeyDoesNotOpenSecrets(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := openAt(t, dir, testKey(t))
	org, _ := s.CreateOrg(ctx, "acme")
	if err := s.PutSMSProvider(ctx, store.SMSProvider{OrgID: org.ID, Slot: store.ProviderPrimary, Type: "console", Config: []byte(`{"t":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openAt(t, dir, testKey(t))
	_, err := s2.GetSMSProvider(ctx, org.ID, store.ProviderPrimary)
	if err == nil || errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "encryption key") {
		t.Fatalf("GetSMSProvider under another key: err = %v, want a clear encryption-key error", err)
	}
}

func BenchmarkInsertDeliveryTasks(b *testing.B) { storetest.BenchInsertDeliveryTasks(b, openFresh(b)) }
func BenchmarkCreateChallenge(b *testing.B)     { storetest.BenchCreateChallenge(b, openFresh(b)) }
func BenchmarkLeaseDueTasks(b *testing.B)       { storetest.BenchLeaseDueTasks(b, openFresh(b)) }

func TestFilePermissions(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := openAt(t, dir, testKey(t))
	if _, err := s.CreateOrg(context.Background(), "acme"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{sqlite.FileName, sqlite.FileName + "-wal"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s mode = %o, want no group/other access", name, perm)
		}
	}
	fi, _ := os.Stat(dir)
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("data dir mode = %o, want 700", perm)
	}
}

func TestKeyRotation(t *testing.T) {
	dir := t.TempDir()
	storetest.CheckKeyRotation(t, func(t *testing.T, opts store.Options) store.Store {
		s, err := sqlite.Open(context.Background(), dir, opts)
		if err != nil {
			t.Fatalf("sqlite.Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
