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
// partial indexes, never the whole table (and the receipts' failover
// sweep its two).
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
	// SMS receipts: nearly all delivered, a few undelivered, a few silent
	// past their due time.
	if _, err := admin.Exec(`INSERT INTO ` + schema + `.sms_receipts (org_id, event_id, destination_type, destination_id, event_source,
		provider_message_id, country_code, accepted_at, expires_at, receipt_due_at, state, error_code, queued_at, sent_at, delivered_at,
		failed_at, last_receipt_at, receipts, failover_status, failover_reason, failover_at, updated_at)
		SELECT i % 50, 'e' || i, 'sms', 'primary', 'src', 'm' || i, 94, i, i + 300000000, i + 60000000,
			CASE WHEN i % 10000 = 0 THEN 'undelivered' WHEN i % 5000 = 0 THEN 'sent' ELSE 'delivered' END,
			'', 0, 0, 0, 0, 0, 1, '', '', 0, i FROM generate_series(1, 100000) AS i`); err != nil {
		t.Fatal(err)
	}
	for _, tb := range []string{table, schema + ".sms_receipts"} {
		if _, err := admin.Exec(`ANALYZE ` + tb); err != nil {
			t.Fatal(err)
		}
	}
	indexes := map[string][]string{
		"DueFailovers": {"sms_receipts_failed", "sms_receipts_due"},
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
		want, ok := indexes[name]
		if !ok {
			want = []string{"delivery_tasks_due|delivery_tasks_dead"}
		}
		for _, w := range want {
			if !containsAny(text, strings.Split(w, "|")) {
				t.Errorf("%s does not read %s:\n%s", name, w, text)
			}
		}
		if strings.Contains(text, "Seq Scan") {
			t.Errorf("%s scans a table:\n%s", name, text)
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
