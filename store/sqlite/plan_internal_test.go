package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/internal/sqlstore"
)

// TestPeriodicQueryPlans: the queries run on a timer whatever the traffic
// must read only pending or dead tasks, through their partial indexes,
// never scan the finished tasks kept for the retention. Without its index
// hint, SQLite's planner reads PendingByDestination through
// delivery_tasks_destination, every retained task (1.9 s for a million
// rows, every two seconds).
func TestPeriodicQueryPlans(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(context.Background(), dir, store.Options{EncryptionKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	partial := map[string][]string{
		"delivery_tasks": {"INDEX delivery_tasks_due", "INDEX delivery_tasks_dead"},
		"sms_receipts":   {"INDEX sms_receipts_failed", "INDEX sms_receipts_due"},
	}
	for name, q := range sqlstore.PeriodicQueries(dialect) {
		args := make([]any, strings.Count(q, "?"))
		for i := range args {
			args[i] = 0
		}
		rows, err := raw.Query(`EXPLAIN QUERY PLAN `+q, args...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		for _, step := range plan {
			for table, indexes := range partial {
				if strings.Contains(step, table) && !containsAny(step, indexes) {
					t.Errorf("%s reads %s without a partial index: %q (plan %q)", name, table, step, plan)
				}
			}
		}
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
