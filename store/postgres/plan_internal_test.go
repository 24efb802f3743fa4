package postgres

import (
	"context"
	"strings"
	"testing"

	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/internal/sqlstore"
)

// TestPeriodicQueryPlans: with a table of mostly finished tasks (what
// the retention keeps) and its statistics, the queries run on a timer
// whatever the traffic read the pending or dead tasks through their
// partial indexes, never the whole table.
func TestPeriodicQueryPlans(t *testing.T) {
	u, schema, admin := testSchema(t)
	s, err := Open(context.Background(), u, store.Options{EncryptionKey: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	table := schema + ".delivery_tasks"
	if _, err := admin.Exec(`INSERT INTO ` + table + ` (id, org_id, event_source, event_id, destination_type, destination_id, event,
		status, attempts, next_attempt_at, expires_at, lease_owner, lease_until, last_error, last_status_code, created_at, updated_at)
		SELECT 't' || i, i % 50, 'src', 'e' || i, 'webhook', 's' || (i % 7), '\x7b7d'::bytea,
			CASE WHEN i % 10000 = 0 THEN 'pending' WHEN i % 5000 = 0 THEN 'dead' ELSE 'delivered' END,
			1, i, i, '', 0, '', 200, i, i FROM generate_series(1, 100000) AS i`); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(`ANALYZE ` + table); err != nil {
		t.Fatal(err)
	}
	conn, err := admin.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), `SET search_path TO `+schema); err != nil {
		t.Fatal(err)
	}
	for name, q := range sqlstore.PeriodicQueries(dialect) {
		q = sqlstore.Rebind(q)
		args := make([]any, strings.Count(q, "$"))
		for i := range args {
			args[i] = 0
		}
		rows, err := conn.QueryContext(context.Background(), `EXPLAIN `+q, args...)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, line)
		}
		rows.Close()
		text := strings.Join(plan, "\n")
		if strings.Contains(text, "Seq Scan") || !(strings.Contains(text, "delivery_tasks_due") || strings.Contains(text, "delivery_tasks_dead")) {
			t.Errorf("%s does not read delivery_tasks through a partial index:\n%s", name, text)
		}
	}
}
