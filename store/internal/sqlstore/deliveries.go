package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/otphub/otphub/store"
)

// maxErrorLen bounds stored error texts (attempt log and last error).
const maxErrorLen = 1024

func truncate(s string) string {
	if len(s) <= maxErrorLen {
		return s
	}
	// Cut on a rune boundary.
	cut := maxErrorLen
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut]
}

// eventAD binds a sealed event to its task. Events carry the OTP in their
// message body, so they are sealed like the other secrets.
func eventAD(taskID string) string { return "delivery_tasks.event\x00" + taskID }

const taskCols = `id, org_id, event_source, event_id, destination_type, destination_id, event, status, attempts, next_attempt_at,
	expires_at, lease_owner, lease_until, last_error, last_status_code, created_at, updated_at`

func (db *DB) scanTask(row interface{ Scan(...any) error }) (store.DeliveryTask, error) {
	var t store.DeliveryTask
	var sealed []byte
	var next, expires, leaseUntil, created, updated int64
	if err := row.Scan(&t.ID, &t.OrgID, &t.EventSource, &t.EventID, &t.DestinationType, &t.DestinationID, &sealed, &t.Status,
		&t.Attempts, &next, &expires, &t.LeaseOwner, &leaseUntil, &t.LastError, &t.LastStatusCode, &created, &updated); err != nil {
		return store.DeliveryTask{}, err
	}
	ev, err := db.seal.open(sealed, eventAD(t.ID))
	if err != nil {
		return store.DeliveryTask{}, fmt.Errorf("delivery %s: event: %w", t.ID, err)
	}
	t.Event = ev
	t.NextAttemptAt, t.ExpiresAt, t.LeaseUntil = fromMicros(next), fromMicros(expires), fromMicros(leaseUntil)
	t.CreatedAt, t.UpdatedAt = fromMicros(created), fromMicros(updated)
	return t, nil
}

func (db *DB) scanTasks(rows *sql.Rows, op string) ([]store.DeliveryTask, error) {
	defer rows.Close()
	var out []store.DeliveryTask
	for rows.Next() {
		t, err := db.scanTask(rows)
		if err != nil {
			return nil, db.wrap(op, err)
		}
		out = append(out, t)
	}
	return out, db.wrap(op, rows.Err())
}

// InsertDeliveryTasks stores tasks and the attempts of the tasks it inserted
// in one transaction; a task whose (OrgID, EventSource, EventID,
// DestinationType, DestinationID) exists is skipped with its attempts. An empty task ID is generated (its
// attempts then cannot name it, so such tasks carry no attempts); zero
// CreatedAt/UpdatedAt are stamped with the current time; an empty Status is
// pending.
func (db *DB) InsertDeliveryTasks(ctx context.Context, tasks []store.DeliveryTask, attempts []store.DeliveryAttempt) (int, error) {
	if len(tasks) == 0 {
		return 0, nil
	}
	now := db.nowUTC()
	byTask := map[string][]store.DeliveryAttempt{}
	for _, a := range attempts {
		byTask[a.TaskID] = append(byTask[a.TaskID], a)
	}
	var inserted int
	err := db.tx(ctx, func(tx *Tx) error {
		inserted = 0
		// Multi-row statements, taskChunk tasks or attemptChunk attempts
		// each: through database/sql every statement is a round trip to
		// PostgreSQL (and a statement step on SQLite), and a batch of the
		// recorder is hundreds of tasks.
		var atts []store.DeliveryAttempt // of the tasks inserted
		for start := 0; start < len(tasks); start += taskChunk {
			chunk := tasks[start:min(start+taskChunk, len(tasks))]
			args := make([]any, 0, 17*len(chunk))
			for _, t := range chunk {
				if t.ID == "" {
					t.ID = uuid.NewString()
				}
				if t.Status == "" {
					t.Status = store.DeliveryPending
				}
				if t.CreatedAt.IsZero() {
					t.CreatedAt = now
				}
				if t.UpdatedAt.IsZero() {
					t.UpdatedAt = t.CreatedAt
				}
				sealed, err := db.seal.seal(t.Event, eventAD(t.ID))
				if err != nil {
					return err
				}
				args = append(args, t.ID, t.OrgID, t.EventSource, t.EventID, t.DestinationType, t.DestinationID, sealed, t.Status, t.Attempts,
					micros(t.NextAttemptAt), micros(t.ExpiresAt), t.LeaseOwner, micros(t.LeaseUntil),
					truncate(t.LastError), t.LastStatusCode, micros(t.CreatedAt), micros(t.UpdatedAt))
			}
			err := tx.queryRows(ctx, db.q(insertTasksSQL(len(chunk))), args, func(rows *sql.Rows) error {
				var id string
				if err := rows.Scan(&id); err != nil {
					return err
				}
				inserted++
				atts = append(atts, byTask[id]...)
				return nil
			})
			if err != nil {
				return db.wrap("insert delivery task", err)
			}
		}
		return db.insertAttempts(ctx, tx, atts)
	})
	if err != nil {
		return 0, err
	}
	return inserted, nil
}

// Rows per statement of InsertDeliveryTasks: 17 parameters a task, 7 an
// attempt, far below either database's limit on parameters.
const (
	taskChunk    = 64
	attemptChunk = 128
)

// insertTasksSQL inserts n tasks, skipping those whose key exists, and
// returns the IDs of those it inserted.
func insertTasksSQL(n int) string {
	return `INSERT INTO delivery_tasks (` + taskCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)` +
		strings.Repeat(`, (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, n-1) +
		` ON CONFLICT (org_id, event_source, event_id, destination_type, destination_id) DO NOTHING RETURNING id`
}

// insertAttempts stores atts (each naming its task) in tx, attemptChunk
// per statement.
func (db *DB) insertAttempts(ctx context.Context, tx *Tx, atts []store.DeliveryAttempt) error {
	for start := 0; start < len(atts); start += attemptChunk {
		chunk := atts[start:min(start+attemptChunk, len(atts))]
		args := make([]any, 0, 7*len(chunk))
		for _, a := range chunk {
			args = append(args, a.TaskID, a.Number, micros(a.StartedAt), a.Duration.Microseconds(), a.StatusCode, a.Outcome, truncate(a.Error))
		}
		if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO delivery_attempts (task_id, number, started_at, duration_us, status_code, outcome, error)
			VALUES (?, ?, ?, ?, ?, ?, ?)`+strings.Repeat(", (?, ?, ?, ?, ?, ?, ?)", len(chunk)-1)), args...); err != nil {
			return db.wrap("insert delivery attempt", err)
		}
	}
	return nil
}

// LeaseDueTasks leases up to limit pending tasks due at now whose lease is
// free or has run out (whoever held it, owner included) to owner until
// now+lease, oldest due first. PostgreSQL picks them with FOR UPDATE SKIP
// LOCKED, so concurrent leasers take disjoint sets without waiting; SQLite's
// single writer runs one lease at a time.
func (db *DB) LeaseDueTasks(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]store.DeliveryTask, error) {
	if owner == "" {
		return nil, fmt.Errorf("store: lease due tasks: empty owner")
	}
	if limit <= 0 {
		return nil, nil
	}
	nowUS := micros(now)
	// The candidates are picked in a materialised CTE: PostgreSQL may
	// re-evaluate an IN (SELECT … LIMIT … SKIP LOCKED) subquery inside an
	// UPDATE and so lease more than limit tasks.
	var out []store.DeliveryTask
	err := db.tx(ctx, func(tx *Tx) error {
		rows, err := tx.QueryContext(ctx, db.q(`WITH picked AS MATERIALIZED (
			SELECT id FROM delivery_tasks
			WHERE status = 'pending' AND next_attempt_at <= ? AND lease_until <= ?
			ORDER BY next_attempt_at, id LIMIT ?`+db.d.SkipLocked+`)
		UPDATE delivery_tasks SET lease_owner = ?, lease_until = ?
		WHERE id IN (SELECT id FROM picked) AND status = 'pending' AND lease_until <= ?
		RETURNING `+taskCols),
			nowUS, nowUS, limit, owner, micros(now.Add(lease)), nowUS)
		if err != nil {
			return db.wrap("lease due tasks", err)
		}
		out, err = db.scanTasks(rows, "lease due tasks")
		return err
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].NextAttemptAt.Equal(out[j].NextAttemptAt) {
			return out[i].NextAttemptAt.Before(out[j].NextAttemptAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// CompleteAttempt appends attempt to the task's log, applies u, adds one to
// Attempts and releases the lease, if owner still holds it (else
// ErrPrecondition; ErrNotFound for an unknown task). An attempt Number <= 0
// is set to the task's new attempt count. UpdatedAt becomes the attempt's
// end (StartedAt+Duration), or the current time when StartedAt is zero.
func (db *DB) CompleteAttempt(ctx context.Context, taskID, owner string, attempt store.DeliveryAttempt, u store.TaskUpdate) error {
	if owner == "" {
		return fmt.Errorf("store: complete attempt: empty owner")
	}
	return db.tx(ctx, func(tx *Tx) error {
		return db.completeIn(ctx, tx, taskID, owner, attempt, u)
	})
}

// CompleteAttempts applies CompleteAttempt to each item in one transaction;
// an item's ErrPrecondition or ErrNotFound is its own outcome and does not
// stop the others.
func (db *DB) CompleteAttempts(ctx context.Context, owner string, items []store.AttemptCompletion) ([]error, error) {
	if owner == "" {
		return nil, fmt.Errorf("store: complete attempts: empty owner")
	}
	errs := make([]error, len(items))
	err := db.tx(ctx, func(tx *Tx) error {
		for i, it := range items {
			err := db.completeIn(ctx, tx, it.TaskID, owner, it.Attempt, it.Update)
			if err != nil && !errors.Is(err, store.ErrPrecondition) && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			errs[i] = err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return errs, nil
}

// completeIn is CompleteAttempt's work inside tx.
func (db *DB) completeIn(ctx context.Context, tx *Tx, taskID, owner string, attempt store.DeliveryAttempt, u store.TaskUpdate) error {
	updated := db.nowUTC()
	if !attempt.StartedAt.IsZero() {
		updated = attempt.StartedAt.Add(attempt.Duration)
	}
	status := u.Status
	if status == "" {
		status = store.DeliveryPending
	}
	var attempts int
	err := tx.QueryRowContext(ctx, db.q(`UPDATE delivery_tasks SET status = ?, next_attempt_at = ?, last_error = ?,
		last_status_code = ?, attempts = attempts + 1, lease_owner = '', lease_until = 0, updated_at = ?
		WHERE id = ? AND lease_owner = ? RETURNING attempts`),
		status, micros(u.NextAttemptAt), truncate(u.LastError), u.LastStatusCode, micros(updated), taskID, owner).Scan(&attempts)
	if err == sql.ErrNoRows {
		var one int
		err = tx.QueryRowContext(ctx, db.q(`SELECT 1 FROM delivery_tasks WHERE id = ?`), taskID).Scan(&one)
		if err == sql.ErrNoRows {
			return fmt.Errorf("complete attempt: delivery %s: %w", taskID, store.ErrNotFound)
		}
		if err != nil {
			return db.wrap("complete attempt", err)
		}
		return fmt.Errorf("complete attempt: delivery %s not leased by %s: %w", taskID, owner, store.ErrPrecondition)
	}
	if err != nil {
		return db.wrap("complete attempt", err)
	}
	if attempt.Number <= 0 {
		attempt.Number = attempts
	}
	attempt.TaskID = taskID
	return db.insertAttempts(ctx, tx, []store.DeliveryAttempt{attempt})
}

// DeferDelivery releases owner's lease on a pending task and makes it due
// at nextAttemptAt, leaving its status, attempt count and log untouched.
// ErrPrecondition when owner no longer holds the lease; ErrNotFound for an
// unknown task.
func (db *DB) DeferDelivery(ctx context.Context, taskID, owner string, nextAttemptAt time.Time) error {
	if owner == "" {
		return fmt.Errorf("store: defer delivery: empty owner")
	}
	res, err := db.exec(ctx, db.q(`UPDATE delivery_tasks SET next_attempt_at = ?, lease_owner = '', lease_until = 0, updated_at = ?
		WHERE id = ? AND lease_owner = ? AND status = 'pending'`),
		micros(nextAttemptAt), micros(db.nowUTC()), taskID, owner)
	if err != nil {
		return db.wrap("defer delivery", err)
	}
	return db.conditional(ctx, res, "defer delivery", `SELECT 1 FROM delivery_tasks WHERE id = ?`, taskID)
}

// GetDelivery returns the org's task id with its attempt log (by number).
func (db *DB) GetDelivery(ctx context.Context, orgID int64, id string) (store.DeliveryTask, []store.DeliveryAttempt, error) {
	t, err := db.scanTask(db.r.QueryRowContext(ctx, db.q(`SELECT `+taskCols+` FROM delivery_tasks WHERE org_id = ? AND id = ?`), orgID, id))
	if err != nil {
		return store.DeliveryTask{}, nil, db.wrap("delivery", err)
	}
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT number, started_at, duration_us, status_code, outcome, error
		FROM delivery_attempts WHERE task_id = ? ORDER BY number, id`), id)
	if err != nil {
		return store.DeliveryTask{}, nil, db.wrap("delivery attempts", err)
	}
	defer rows.Close()
	var out []store.DeliveryAttempt
	for rows.Next() {
		a := store.DeliveryAttempt{TaskID: id}
		var started, dur int64
		if err := rows.Scan(&a.Number, &started, &dur, &a.StatusCode, &a.Outcome, &a.Error); err != nil {
			return store.DeliveryTask{}, nil, db.wrap("delivery attempts", err)
		}
		a.StartedAt, a.Duration = fromMicros(started), time.Duration(dur)*time.Microsecond
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return store.DeliveryTask{}, nil, db.wrap("delivery attempts", err)
	}
	one := []store.DeliveryTask{t}
	if err := db.attachReceipts(ctx, orgID, one); err != nil {
		return store.DeliveryTask{}, nil, err
	}
	return one[0], out, nil
}

// FindDelivery returns the org's task of (source, eventID, destType, destID).
func (db *DB) FindDelivery(ctx context.Context, orgID int64, source, eventID, destType, destID string) (store.DeliveryTask, error) {
	t, err := db.scanTask(db.r.QueryRowContext(ctx, db.q(`SELECT `+taskCols+` FROM delivery_tasks
		WHERE org_id = ? AND event_source = ? AND event_id = ? AND destination_type = ? AND destination_id = ?`),
		orgID, source, eventID, destType, destID))
	return t, db.wrap("delivery", err)
}

// ListDeliveries returns the org's tasks, newest first (CreatedAt desc, ID
// desc), filtered by status and paged by the (Before, BeforeID) cursor.
func (db *DB) ListDeliveries(ctx context.Context, orgID int64, f store.DeliveryFilter) ([]store.DeliveryTask, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	if limit > 1000 {
		limit = 1000
	}
	query := `SELECT ` + taskCols + ` FROM delivery_tasks WHERE org_id = ?`
	args := []any{orgID}
	if f.Status != "" {
		query += ` AND status = ?`
		args = append(args, f.Status)
	}
	if f.DestinationType != "" {
		// Through delivery_tasks_destination (migration 0011).
		query += ` AND destination_type = ?`
		args = append(args, f.DestinationType)
		if f.DestinationID != "" {
			query += ` AND destination_id = ?`
			args = append(args, f.DestinationID)
		}
	}
	if !f.Since.IsZero() {
		query += ` AND created_at >= ?`
		args = append(args, micros(f.Since))
	}
	if !f.Before.IsZero() {
		b := micros(f.Before)
		if f.BeforeID != "" {
			query += ` AND (created_at < ? OR (created_at = ? AND id < ?))`
			args = append(args, b, b, f.BeforeID)
		} else {
			query += ` AND created_at < ?`
			args = append(args, b)
		}
	}
	query += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := db.r.QueryContext(ctx, db.q(query), args...)
	if err != nil {
		return nil, db.wrap("list deliveries", err)
	}
	tasks, err := db.scanTasks(rows, "list deliveries")
	if err != nil {
		return nil, err
	}
	return tasks, db.attachReceipts(ctx, orgID, tasks)
}

// RequeueDelivery makes the org's non-pending task pending again, due at
// now, bounded by expiresAt, with its lease cleared; its attempt count and
// log are kept. ErrPrecondition when it is pending already.
func (db *DB) RequeueDelivery(ctx context.Context, orgID int64, id string, now, expiresAt time.Time) error {
	res, err := db.exec(ctx, db.q(`UPDATE delivery_tasks SET status = 'pending', next_attempt_at = ?, expires_at = ?,
		lease_owner = '', lease_until = 0, updated_at = ? WHERE org_id = ? AND id = ? AND status <> 'pending'`),
		micros(now), micros(expiresAt), micros(now), orgID, id)
	if err != nil {
		return db.wrap("requeue delivery", err)
	}
	return db.conditional(ctx, res, "requeue delivery", `SELECT 1 FROM delivery_tasks WHERE org_id = ? AND id = ?`, orgID, id)
}

// RequeueDeliveries requeues (as RequeueDelivery) every non-pending task of
// the org with one of statuses (all non-pending ones when empty) created at
// or after since, and returns how many.
func (db *DB) RequeueDeliveries(ctx context.Context, orgID int64, statuses []string, since, now, expiresAt time.Time) (int, error) {
	return db.requeue(ctx, orgID, "", statuses, since, now, expiresAt)
}

// RequeueDeliveriesOfType is RequeueDeliveries for the tasks of one
// destination type.
func (db *DB) RequeueDeliveriesOfType(ctx context.Context, orgID int64, destType string, statuses []string, since, now, expiresAt time.Time) (int, error) {
	if destType == "" {
		return 0, fmt.Errorf("store: requeue deliveries: empty destination type")
	}
	return db.requeue(ctx, orgID, destType, statuses, since, now, expiresAt)
}

func (db *DB) requeue(ctx context.Context, orgID int64, destType string, statuses []string, since, now, expiresAt time.Time) (int, error) {
	query := `UPDATE delivery_tasks SET status = 'pending', next_attempt_at = ?, expires_at = ?,
		lease_owner = '', lease_until = 0, updated_at = ? WHERE org_id = ? AND status <> 'pending' AND created_at >= ?`
	args := []any{micros(now), micros(expiresAt), micros(now), orgID, micros(since)}
	if destType != "" {
		query += ` AND destination_type = ?`
		args = append(args, destType)
	}
	if len(statuses) > 0 {
		query += ` AND status IN (` + placeholders(len(statuses)) + `)`
		for _, s := range statuses {
			args = append(args, s)
		}
	}
	res, err := db.exec(ctx, db.q(query), args...)
	if err != nil {
		return 0, db.wrap("requeue deliveries", err)
	}
	n, err := res.RowsAffected()
	return int(n), db.wrap("requeue deliveries", err)
}

// DeliveryStats counts the pending and the dead tasks and finds the
// creation time of the oldest pending one. Each query reads only the rows
// it counts, through a partial index (delivery_tasks_due and
// delivery_tasks_dead): it runs every StatsInterval, and a scan of the
// table would grow with the retained history (TestPeriodicQueryPlans).
func (db *DB) DeliveryStats(ctx context.Context) (store.DeliveryStats, error) {
	var st store.DeliveryStats
	var oldest sql.NullInt64
	if err := db.r.QueryRowContext(ctx, pendingStatsSQL(db.d)).Scan(&st.Pending, &oldest); err != nil {
		return st, db.wrap("delivery stats", err)
	}
	if oldest.Valid {
		st.OldestPendingAt = fromMicros(oldest.Int64)
	}
	if err := db.r.QueryRowContext(ctx, deadStatsSQL(db.d)).Scan(&st.Dead); err != nil {
		return st, db.wrap("delivery stats", err)
	}
	return st, nil
}

// The queries that run on a timer whatever the traffic (the metrics'
// DeliveryStats, the back-pressure gate's PendingByDestination, the
// receipts' DueFailovers): each
// names the partial index it must read, on SQLite, whose planner
// otherwise prefers delivery_tasks_destination for the GROUP BY and so
// scans every retained task.
//
// PeriodicQueries lists them by name (with '?' placeholders), for the
// adapters' tests of their plans.
func PeriodicQueries(d Dialect) map[string]string {
	return map[string]string{
		"DeliveryStats pending": pendingStatsSQL(d),
		"DeliveryStats dead":    deadStatsSQL(d),
		"PendingByDestination":  pendingByDestinationSQL(d),
		"DueFailovers":          dueFailoversSQL(d),
	}
}

func pendingStatsSQL(d Dialect) string {
	return `SELECT COUNT(*), MIN(created_at) FROM delivery_tasks` + d.indexedBy("delivery_tasks_due") + ` WHERE status = 'pending'`
}

func deadStatsSQL(d Dialect) string {
	return `SELECT COUNT(*) FROM delivery_tasks` + d.indexedBy("delivery_tasks_dead") + ` WHERE status = 'dead'`
}

func pendingByDestinationSQL(d Dialect) string {
	return `SELECT org_id, destination_type, destination_id, COUNT(*) FROM delivery_tasks` + d.indexedBy("delivery_tasks_due") + `
		WHERE status = 'pending' GROUP BY org_id, destination_type, destination_id HAVING COUNT(*) > ?`
}

// PendingByDestination counts pending tasks per destination, keeping those
// with more than over. Only pending rows are read, through the partial
// index delivery_tasks_due (normally few: first attempts run from memory);
// HAVING keeps the answer to the backed-up ones.
func (db *DB) PendingByDestination(ctx context.Context, over int64) (map[store.Destination]int64, error) {
	rows, err := db.r.QueryContext(ctx, db.q(pendingByDestinationSQL(db.d)), over)
	if err != nil {
		return nil, db.wrap("pending by destination", err)
	}
	defer rows.Close()
	out := map[store.Destination]int64{}
	for rows.Next() {
		var d store.Destination
		var n int64
		if err := rows.Scan(&d.OrgID, &d.Type, &d.ID, &n); err != nil {
			return nil, db.wrap("pending by destination", err)
		}
		out[d] = n
	}
	if err := rows.Err(); err != nil {
		return nil, db.wrap("pending by destination", err)
	}
	return out, nil
}

// PurgeDeliveries deletes finished tasks updated before cutoff, with their
// attempts, in one transaction.
func (db *DB) PurgeDeliveries(ctx context.Context, cutoff time.Time) (int, error) {
	var n int64
	err := db.tx(ctx, func(tx *Tx) error {
		c := micros(cutoff)
		if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM delivery_attempts WHERE task_id IN
			(SELECT id FROM delivery_tasks WHERE status <> 'pending' AND updated_at < ?)`), c); err != nil {
			return db.wrap("purge deliveries", err)
		}
		// Receipt records go with their deliveries: a record is updated at
		// least when its SMS was accepted, which is after its task began.
		if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM sms_receipts WHERE updated_at < ?`), c); err != nil {
			return db.wrap("purge deliveries", err)
		}
		res, err := tx.ExecContext(ctx, db.q(`DELETE FROM delivery_tasks WHERE status <> 'pending' AND updated_at < ?`), c)
		if err != nil {
			return db.wrap("purge deliveries", err)
		}
		n, err = res.RowsAffected()
		return db.wrap("purge deliveries", err)
	})
	return int(n), err
}
