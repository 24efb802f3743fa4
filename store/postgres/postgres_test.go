package postgres_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/postgres"
	"github.com/otphub/otphub/store/storetest"
)

const defaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func baseURL() string {
	if u := os.Getenv("OTPHUB_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return defaultURL
}

// admin returns a handle on the test database, failing the test (not
// skipping it) when PostgreSQL is unreachable, unless OTPHUB_SKIP_POSTGRES=1.
func admin(tb testing.TB) *sql.DB {
	tb.Helper()
	if os.Getenv("OTPHUB_SKIP_POSTGRES") == "1" {
		tb.Skip("OTPHUB_SKIP_POSTGRES=1: PostgreSQL tests skipped")
	}
	db, err := sql.Open("pgx", baseURL())
	if err != nil {
		tb.Fatalf("PostgreSQL test database URL: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		tb.Fatalf("PostgreSQL is unreachable at %s: %v\n"+
			"start it with `bash .ci/postgres.sh` (or point OTPHUB_TEST_DATABASE_URL elsewhere; OTPHUB_SKIP_POSTGRES=1 skips these tests)",
			redacted(baseURL()), err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// freshSchema creates otphub_test_<random>, drops it in Cleanup, and returns
// a URL whose search_path selects it.
func freshSchema(tb testing.TB) (schemaURL string, raw *sql.DB) {
	tb.Helper()
	db := admin(tb)
	b := make([]byte, 6)
	rand.Read(b)
	schema := "otphub_test_" + hex.EncodeToString(b)
	if _, err := db.Exec(`CREATE SCHEMA ` + schema); err != nil {
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		if _, err := db.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(baseURL())
	if err != nil {
		tb.Fatalf("OTPHUB_TEST_DATABASE_URL must be a postgres:// URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	raw, err = sql.Open("pgx", u.String())
	if err != nil {
		tb.Fatal(err)
	}
	raw.SetMaxOpenConns(2)
	// Registered after the schema's drop, so it runs before it.
	tb.Cleanup(func() { raw.Close() })
	return u.String(), raw
}

func testKey(tb testing.TB) []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

func openAt(tb testing.TB, u string, key []byte) *postgres.Store {
	tb.Helper()
	s, err := postgres.Open(context.Background(), u, store.Options{EncryptionKey: key})
	if err != nil {
		tb.Fatalf("postgres.Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func openFresh(tb testing.TB) store.Store {
	u, _ := freshSchema(tb)
	return openAt(tb, u, testKey(tb))
}

func TestConformance(t *testing.T) {
	admin(t) // one clear failure (or skip) rather than one per case
	storetest.Run(t, func(t *testing.T) store.Store { return openFresh(t) })
}

func TestSecretsAtRest(t *testing.T) {
	u, raw := freshSchema(t)
	storetest.CheckSecretsAtRest(t, openAt(t, u, testKey(t)), raw)
}

func TestOpenErrors(t *testing.T) {
	if _, err := postgres.Open(context.Background(), defaultURL, store.Options{EncryptionKey: make([]byte, 16)}); err == nil ||
		!strings.Contains(err.Error(), "32 bytes") {
		t.Errorf("Open with a 16-byte key: err = %v, want one naming the 32-byte requirement", err)
	}
	if _, err := postgres.Open(context.Background(), "postgres://u:hunter2@[::1", store.Options{EncryptionKey: make([]byte, 32)}); err == nil ||
		strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Open with a malformed URL: err = %v, want an error without the password", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Nothing listens on port 1.
	_, err := postgres.Open(ctx, "postgres://postgres:hunter2@127.0.0.1:1/test?sslmode=disable&connect_timeout=2", store.Options{EncryptionKey: make([]byte, 32)})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Open of an unreachable server: err = %v, want an error without the password", err)
	}
}

// TestConcurrentOpenMigratesOnce starts several "replicas" on one empty
// schema at once: all must open, and each migration must be recorded once.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	u, raw := freshSchema(t)
	key := testKey(t)
	const replicas = 5
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	stores := make([]*postgres.Store, replicas)
	for i := 0; i < replicas; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = postgres.Open(context.Background(), u, store.Options{EncryptionKey: key})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: Open: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	var n, distinct int
	if err := raw.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations`).Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if n != distinct || n == 0 {
		t.Fatalf("schema_migrations has %d rows for %d versions", n, distinct)
	}
	// Every replica works on the shared schema.
	org, err := stores[0].CreateOrg(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	got, err := stores[replicas-1].GetOrgByID(context.Background(), org.ID)
	if err != nil || got.Name != "acme" {
		t.Fatalf("GetOrgByID through another replica = %+v, %v", got, err)
	}
}

// TestLeasingAcrossReplicas runs leasing through separate connection pools
// (as separate processes would), so FOR UPDATE SKIP LOCKED is what keeps
// owners apart.
func TestLeasingAcrossReplicas(t *testing.T) {
	u, _ := freshSchema(t)
	key := testKey(t)
	ctx := context.Background()
	first := openAt(t, u, key)
	org, err := first.CreateOrg(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const tasks = 80
	var in []store.DeliveryTask
	for i := 0; i < tasks; i++ {
		id := "t" + hex.EncodeToString([]byte{byte(i)})
		in = append(in, store.DeliveryTask{ID: id, OrgID: org.ID, EventID: id, DestinationType: "webhook", DestinationID: "s",
			Event: []byte("{}"), Status: store.DeliveryPending, NextAttemptAt: base, ExpiresAt: base.Add(time.Hour)})
	}
	if _, err := first.InsertDeliveryTasks(ctx, in, nil); err != nil {
		t.Fatal(err)
	}
	const replicas = 4
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	errs := make([]error, replicas)
	for r := 0; r < replicas; r++ {
		s := first
		if r > 0 {
			s = openAt(t, u, key)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := s.LeaseDueTasks(ctx, "replica-"+string(rune('a'+r)), base.Add(time.Second), time.Hour, 3)
				if err != nil {
					errs[r] = err
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, tk := range got {
					seen[tk.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != tasks {
		t.Fatalf("%d distinct tasks leased, want %d", len(seen), tasks)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("task %s leased %d times", id, n)
		}
	}
}

func TestWrongKeyDoesNotOpenSecrets(t *testing.T) {
	u, _ := freshSchema(t)
	ctx := context.Background()
	s := openAt(t, u, testKey(t))
	org, _ := s.CreateOrg(ctx, "acme")
	if err := s.PutSMSProvider(ctx, store.SMSProvider{OrgID: org.ID, Slot: store.ProviderPrimary, Type: "console", Config: []byte(`{"t":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	s2 := openAt(t, u, testKey(t))
	_, err := s2.GetSMSProvider(ctx, org.ID, store.ProviderPrimary)
	if err == nil || errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "encryption key") {
		t.Fatalf("GetSMSProvider under another key: err = %v, want a clear encryption-key error", err)
	}
}

func BenchmarkInsertDeliveryTasks(b *testing.B) { storetest.BenchInsertDeliveryTasks(b, openFresh(b)) }
func BenchmarkCreateChallenge(b *testing.B)     { storetest.BenchCreateChallenge(b, openFresh(b)) }
func BenchmarkLeaseDueTasks(b *testing.B)       { storetest.BenchLeaseDueTasks(b, openFresh(b)) }

func TestKeyRotation(t *testing.T) {
	u, _ := freshSchema(t)
	storetest.CheckKeyRotation(t, func(t *testing.T, opts store.Options) store.Store {
		s, err := postgres.Open(context.Background(), u, opts)
		if err != nil {
			t.Fatalf("postgres.Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
