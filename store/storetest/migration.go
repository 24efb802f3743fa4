package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/otphub/otphub/store"
)

// DeliveryKeyMigration is the version of the migration that scopes delivery
// idempotency by org: delivery_tasks' unique key becomes (org_id, event_id,
// destination_type, destination_id).
const DeliveryKeyMigration = 3

// CheckDeliveryKeyMigration checks DeliveryKeyMigration on a database that
// holds deliveries. raw is a handle on a database migrated to the version
// before it (with foreign keys enforced); rebind adapts `?` placeholders to
// the adapter's; migrate applies the remaining migrations and returns the
// store. Every task and attempt must survive unchanged, attempts must still
// belong to their tasks, and the new key must hold: another org may insert
// the same (event, destination), the same org may not.
func CheckDeliveryKeyMigration(t *testing.T, raw *sql.DB, rebind func(string) string, migrate func() store.Store) {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const orgA, orgB = 101, 102
	task := func(id string, org int64, ev, typ, dest, status string, attempts int, created time.Duration) []any {
		return []any{id, org, ev, typ, dest, []byte{}, status, attempts, at(created + time.Second).UnixMicro(),
			at(time.Hour).UnixMicro(), "", 0, "HTTP 503", 503, at(created).UnixMicro(), at(created).UnixMicro()}
	}
	for _, row := range [][]any{
		task("t1", orgA, "ev-1", "webhook", "sub-1", store.DeliveryPending, 2, 0),
		task("t2", orgA, "ev-1", "console", store.ProviderPrimary, store.DeliveryDelivered, 1, time.Second),
		task("t3", orgA, "ev-2", "console", store.ProviderPrimary, store.DeliveryDead, 0, 2*time.Second),
	} {
		_, err := raw.ExecContext(c, rebind(`INSERT INTO delivery_tasks (id, org_id, event_id, destination_type,
			destination_id, event, status, attempts, next_attempt_at, expires_at, lease_owner, lease_until, last_error,
			last_status_code, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`), row...)
		must(t, err, "insert task %s before the migration", row[0])
	}
	for i, taskID := range []string{"t1", "t1", "t2"} {
		_, err := raw.ExecContext(c, rebind(`INSERT INTO delivery_attempts (task_id, number, started_at, duration_us,
			status_code, outcome, error) VALUES (?, ?, ?, ?, ?, ?, ?)`), taskID, i+1, at(0).UnixMicro(), 1500, 503, "retry", "HTTP 503")
		must(t, err, "insert an attempt of %s before the migration", taskID)
	}
	// The columns the tasks had before (later migrations may add some).
	const taskColumns = `id, org_id, event_id, destination_type, destination_id, event, status, attempts, next_attempt_at, expires_at, lease_owner, lease_until, last_error, last_status_code, created_at, updated_at`
	tasksBefore := dumpRows(t, raw, `SELECT `+taskColumns+` FROM delivery_tasks ORDER BY id`)
	attemptsBefore := dumpRows(t, raw, `SELECT * FROM delivery_attempts ORDER BY id`)

	s := migrate()

	eq(t, dumpRows(t, raw, `SELECT `+taskColumns+` FROM delivery_tasks ORDER BY id`), tasksBefore, "delivery_tasks after the migration")
	eq(t, dumpRows(t, raw, `SELECT * FROM delivery_attempts ORDER BY id`), attemptsBefore, "delivery_attempts after the migration")
	_, atts, err := s.GetDelivery(c, orgA, "t1")
	must(t, err, "GetDelivery(t1) after the migration")
	eq(t, len(atts), 2, "attempts of t1 after the migration")
	found, err := s.FindDelivery(c, orgA, "", "ev-1", "console", store.ProviderPrimary)
	must(t, err, "FindDelivery(org A) after the migration")
	eq(t, found.ID, "t2", "FindDelivery(org A) after the migration")
	leased, err := s.LeaseDueTasks(c, "owner", at(time.Minute), time.Minute, 10)
	must(t, err, "LeaseDueTasks after the migration")
	if len(leased) != 1 || leased[0].ID != "t1" {
		t.Fatalf("LeaseDueTasks after the migration = %+v, want t1 alone", leased)
	}

	// The new key: org B's task of org A's event and destination is its own;
	// a second one in org A is still a duplicate.
	b := newTask(orgB, "tb", "ev-1", at(time.Minute))
	b.DestinationType, b.DestinationID, b.Status = "console", store.ProviderPrimary, store.DeliveryDelivered
	dupA := newTask(orgA, "t2-dup", "ev-1", at(time.Minute))
	dupA.DestinationType, dupA.DestinationID = "console", store.ProviderPrimary
	n, err := s.InsertDeliveryTasks(c, []store.DeliveryTask{b, dupA},
		[]store.DeliveryAttempt{{TaskID: "tb", Number: 1, StartedAt: at(time.Minute), StatusCode: 200, Outcome: "success"}})
	must(t, err, "InsertDeliveryTasks after the migration")
	eq(t, n, 1, "inserted after the migration (org B's task, not org A's duplicate)")
	found, err = s.FindDelivery(c, orgB, "", "ev-1", "console", store.ProviderPrimary)
	must(t, err, "FindDelivery(org B) after the migration")
	eq(t, found.ID, "tb", "FindDelivery(org B) after the migration")
	var maxOld, newID int64
	must(t, raw.QueryRowContext(c, rebind(`SELECT id FROM delivery_attempts WHERE task_id = ?`), "tb").Scan(&newID), "attempt of tb")
	must(t, raw.QueryRowContext(c, rebind(`SELECT MAX(id) FROM delivery_attempts WHERE task_id <> ?`), "tb").Scan(&maxOld), "old attempts")
	if newID <= maxOld {
		t.Fatalf("a new attempt's id %d does not follow the migrated ones (max %d)", newID, maxOld)
	}

	// Attempts still reference their tasks.
	_, err = raw.ExecContext(c, rebind(`INSERT INTO delivery_attempts (task_id, number, started_at, duration_us,
		status_code, outcome, error) VALUES (?, ?, ?, ?, ?, ?, ?)`), "no-such-task", 1, 0, 0, 0, "retry", "")
	if err == nil {
		t.Fatal("an attempt of an unknown task was stored after the migration: the foreign key is gone")
	}
	purged, err := s.PurgeDeliveries(c, at(time.Hour))
	must(t, err, "PurgeDeliveries after the migration")
	eq(t, purged, 3, "purged finished tasks (t2, t3, tb)")
	var left int
	must(t, raw.QueryRowContext(c, `SELECT COUNT(*) FROM delivery_attempts`).Scan(&left), "count attempts")
	eq(t, left, 2, "attempts left (t1's)")
}

// dumpRows renders every row of query, column by column, for comparison.
func dumpRows(t *testing.T, raw *sql.DB, query string) string {
	t.Helper()
	rows, err := raw.Query(query)
	must(t, err, "%s", query)
	defer rows.Close()
	cols, err := rows.Columns()
	must(t, err, "columns of %s", query)
	var out string
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		must(t, rows.Scan(ptrs...), "scan %s", query)
		for i, v := range vals {
			if b, ok := v.([]byte); ok {
				v = string(b)
			}
			out += fmt.Sprintf("%s=%v ", cols[i], v)
		}
		out += "\n"
	}
	must(t, rows.Err(), "%s", query)
	return out
}
