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
	partial := []string{"INDEX delivery_tasks_due", "INDEX delivery_tasks_dead"}
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
			if strings.Contains(step, "delivery_tasks") && !containsAny(step, partial) {
				t.Errorf("%s reads delivery_tasks without a partial index: %q (plan %q)", name, step, plan)
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
