package postgres

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"sync"
	"testing"

	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/internal/sqlstore"
	"github.com/otphub/otphub/store/storetest"
)

// testSchema creates a schema of its own for t, dropped in Cleanup, and
// returns a URL selecting it and an admin handle on the database.
func testSchema(t *testing.T) (schemaURL, schema string, admin *sql.DB) {
	t.Helper()
	if os.Getenv("OTPHUB_SKIP_POSTGRES") == "1" {
		t.Skip("OTPHUB_SKIP_POSTGRES=1")
	}
	base := os.Getenv("OTPHUB_TEST_DATABASE_URL")
	if base == "" {
		base = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if err := admin.Ping(); err != nil {
		t.Fatalf("PostgreSQL is unreachable (run `bash .ci/postgres.sh`): %v", err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	schema = "otphub_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatal(err)
	}
	// Registered after admin's Close, so it runs before it.
	t.Cleanup(func() { admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`) })
	u, _ := url.Parse(base)
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), schema, admin
}

// TestMigrateWithoutLockIsSafe races several migrators on one empty schema
// with no advisory lock (as on a database without one): the versions
// table's primary key alone must keep them correct.
func TestMigrateWithoutLockIsSafe(t *testing.T) {
	u, schema, admin := testSchema(t)
	migrations, err := sqlstore.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	const racers = 5
	var wg sync.WaitGroup
	errs := make([]error, racers)
	for i := 0; i < racers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := sql.Open("pgx", u)
			if err != nil {
				errs[i] = err
				return
			}
			defer db.Close()
			s, err := sqlstore.New(dialect, db, db, store.Options{EncryptionKey: make([]byte, 32)}, nil)
			if err != nil {
				errs[i] = err
				return
			}
			errs[i] = s.Migrate(context.Background(), migrations, nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("migrator %d: %v", i, err)
		}
	}
	var n int
	if err := admin.QueryRow(`SELECT COUNT(*) FROM ` + schema + `.schema_migrations`).Scan(&n); err != nil || n != len(migrations) {
		t.Fatalf("schema_migrations rows = %d, %v; want %d", n, err, len(migrations))
	}
}

// TestDeliveryKeyMigrationKeepsData migrates a schema holding deliveries
// from the version before storetest.DeliveryKeyMigration.
func TestDeliveryKeyMigrationKeepsData(t *testing.T) {
	u, _, _ := testSchema(t)
	raw, err := sql.Open("pgx", u)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	key := make([]byte, 32)
	rand.Read(key)
	all, err := sqlstore.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	var before []sqlstore.Migration
	for _, m := range all {
		if m.Version < storetest.DeliveryKeyMigration {
			before = append(before, m)
		}
	}
	old, err := sqlstore.New(dialect, raw, raw, store.Options{EncryptionKey: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Migrate(context.Background(), before, lockMigrations); err != nil {
		t.Fatal(err)
	}
	storetest.CheckDeliveryKeyMigration(t, raw, sqlstore.Rebind, func() store.Store {
		s, err := Open(context.Background(), u, store.Options{EncryptionKey: key})
		if err != nil {
			t.Fatalf("Open (applying the migration): %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
