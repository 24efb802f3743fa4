package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/otphub/otphub/store"
)

// groupDB is a DB with group commit on one SQLite connection, and a table.
func groupDB(t *testing.T) *DB {
	t.Helper()
	w, err := sql.Open("sqlite", "file:"+filepath.Join(t.TempDir(), "db")+"?_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	w.SetMaxOpenConns(1)
	db, err := New(Dialect{Name: "sqlite", GroupCommit: true}, w, nil, store.Options{EncryptionKey: make([]byte, 32)}, w.Close)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.exec(context.Background(), `CREATE TABLE t (k INTEGER PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	return db
}

// slowInsert is a write that takes a while (SQLite rolls back the whole
// transaction when such a statement is interrupted).
const slowInsert = `INSERT INTO t (k) WITH RECURSIVE c(x) AS (SELECT 1000000 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000 + ?) SELECT x FROM c`

// TestGroupTransactionIgnoresCallerCancellation: in a group, a caller's
// context ending while its statement runs must not roll back the others'
// writes (it would, were the statement run under the caller's context).
func TestGroupTransactionIgnoresCallerCancellation(t *testing.T) {
	db := groupDB(t)
	ctx := context.Background()
	// A first transaction keeps the writer busy while the group forms.
	busy := make(chan struct{})
	go func() {
		defer close(busy)
		if err := db.tx(ctx, func(tx *Tx) error { time.Sleep(200 * time.Millisecond); return nil }); err != nil {
			t.Error(err)
		}
	}()
	time.Sleep(20 * time.Millisecond)
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 5 {
				c, cancel := context.WithCancel(ctx)
				errs[i] = db.tx(c, func(tx *Tx) error {
					time.AfterFunc(5*time.Millisecond, cancel)
					_, err := tx.ExecContext(c, slowInsert, 20_000)
					return err
				})
				return
			}
			_, errs[i] = db.exec(ctx, `INSERT INTO t (k) VALUES (?)`, i)
		}()
	}
	wg.Wait()
	<-busy
	for i, err := range errs {
		if err != nil {
			t.Errorf("transaction %d: %v", i, err)
		}
	}
	var n int
	if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM t WHERE k < 100`).Scan(&n); err != nil || n != 9 {
		t.Errorf("%d small writes committed (%v), want 9", n, err)
	}
}

// TestGroupTransactionFailsAlone: a function that fails after writing is
// rolled back to its savepoint; the rest of its group commits.
func TestGroupTransactionFailsAlone(t *testing.T) {
	db := groupDB(t)
	ctx := context.Background()
	go db.tx(ctx, func(tx *Tx) error { time.Sleep(100 * time.Millisecond); return nil })
	time.Sleep(10 * time.Millisecond)
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.tx(ctx, func(tx *Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO t (k) VALUES (?)`, i); err != nil {
					return err
				}
				if i%2 == 1 {
					return boom
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if want := error(nil); i%2 == 1 {
			if !errors.Is(err, boom) {
				t.Errorf("transaction %d = %v, want boom", i, err)
			}
		} else if err != want {
			t.Errorf("transaction %d = %v", i, err)
		}
		var n int
		if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM t WHERE k = ?`, i).Scan(&n); err != nil || n != 1-i%2 {
			t.Errorf("row %d: %d (%v), want %d", i, n, err, 1-i%2)
		}
	}
}
