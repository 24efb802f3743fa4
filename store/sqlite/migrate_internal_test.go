package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/internal/sqlstore"
	"github.com/otphub/otphub/store/storetest"
)

// TestDeliveryKeyMigrationKeepsData migrates a database holding deliveries
// from the schema before storetest.DeliveryKeyMigration: SQLite cannot drop
// the old unique constraint, so the migration rebuilds the tables, and
// nothing may be lost on the way.
func TestDeliveryKeyMigrationKeepsData(t *testing.T) {
	dir := t.TempDir()
	key := make([]byte, 32)
	rand.Read(key)
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName)+"?_pragma=busy_timeout(5000)&_pragma=foreign_keys(ON)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
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
	if err := old.Migrate(context.Background(), before, nil); err != nil {
		t.Fatal(err)
	}
	storetest.CheckDeliveryKeyMigration(t, raw, func(q string) string { return q }, func() store.Store {
		s, err := Open(context.Background(), dir, store.Options{EncryptionKey: key})
		if err != nil {
			t.Fatalf("Open (applying the migration): %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
