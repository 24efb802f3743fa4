package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/otphub/otphub/store"
)

const receiptCols = `org_id, event_id, destination_type, destination_id, event_source, provider_message_id, country_code, accepted_at,
	expires_at, receipt_due_at, state, error_code, queued_at, sent_at, delivered_at, failed_at, last_receipt_at,
	receipts, failover_status, failover_reason, failover_at, updated_at`

const receiptKeyWhere = `org_id = ? AND event_id = ? AND destination_type = ? AND destination_id = ?`

func keyArgs(k store.ReceiptKey) []any {
	return []any{k.OrgID, k.EventID, k.DestinationType, k.DestinationID}
}

func scanReceipt(row interface{ Scan(...any) error }) (store.SMSReceipt, error) {
	var r store.SMSReceipt
	var accepted, expires, due, queued, sent, delivered, failed, last, failoverAt, updated int64
	err := row.Scan(&r.OrgID, &r.EventID, &r.DestinationType, &r.DestinationID, &r.EventSource, &r.ProviderMessageID, &r.CountryCode,
		&accepted, &expires, &due, &r.State, &r.ErrorCode, &queued, &sent, &delivered, &failed, &last,
		&r.Receipts, &r.FailoverStatus, &r.FailoverReason, &failoverAt, &updated)
	if err != nil {
		return store.SMSReceipt{}, err
	}
	r.AcceptedAt, r.ExpiresAt, r.ReceiptDueAt = fromMicros(accepted), fromMicros(expires), fromMicros(due)
	r.QueuedAt, r.SentAt, r.DeliveredAt, r.FailedAt = fromMicros(queued), fromMicros(sent), fromMicros(delivered), fromMicros(failed)
	r.LastReceiptAt, r.FailoverAt, r.UpdatedAt = fromMicros(last), fromMicros(failoverAt), fromMicros(updated)
	return r, nil
}

func receiptArgs(r store.SMSReceipt) []any {
	return []any{r.OrgID, r.EventID, r.DestinationType, r.DestinationID, r.EventSource, r.ProviderMessageID, r.CountryCode,
		micros(r.AcceptedAt), micros(r.ExpiresAt), micros(r.ReceiptDueAt), r.State, r.ErrorCode,
		micros(r.QueuedAt), micros(r.SentAt), micros(r.DeliveredAt), micros(r.FailedAt), micros(r.LastReceiptAt),
		r.Receipts, r.FailoverStatus, r.FailoverReason, micros(r.FailoverAt), micros(r.UpdatedAt)}
}

// saveReceipt writes r whole (insert or replace) inside tx.
func (db *DB) saveReceipt(ctx context.Context, tx *Tx, r store.SMSReceipt) error {
	_, err := tx.ExecContext(ctx, db.q(`INSERT INTO sms_receipts (`+receiptCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (org_id, event_id, destination_type, destination_id) DO UPDATE SET
		event_source = excluded.event_source, provider_message_id = excluded.provider_message_id, country_code = excluded.country_code,
		accepted_at = excluded.accepted_at, expires_at = excluded.expires_at, receipt_due_at = excluded.receipt_due_at,
		state = excluded.state, error_code = excluded.error_code, queued_at = excluded.queued_at,
		sent_at = excluded.sent_at, delivered_at = excluded.delivered_at, failed_at = excluded.failed_at,
		last_receipt_at = excluded.last_receipt_at, receipts = excluded.receipts,
		failover_status = excluded.failover_status, failover_reason = excluded.failover_reason,
		failover_at = excluded.failover_at, updated_at = excluded.updated_at`), receiptArgs(r)...)
	return err
}

// lockedReceipt reads key's record for rewriting inside tx, creating an
// empty one first when there is none (found false): with no row to lock,
// two transactions would both start from nothing and the later write would
// drop the earlier one's merge.
func (db *DB) lockedReceipt(ctx context.Context, tx *Tx, key store.ReceiptKey) (store.SMSReceipt, bool, error) {
	res, err := tx.ExecContext(ctx, db.q(`INSERT INTO sms_receipts (`+receiptCols+`)
		VALUES (?, ?, ?, ?, '', '', 0, 0, 0, 0, '', '', 0, 0, 0, 0, 0, 0, '', '', 0, ?)
		ON CONFLICT (org_id, event_id, destination_type, destination_id) DO NOTHING`),
		append(keyArgs(key), micros(db.nowUTC()))...)
	if err != nil {
		return store.SMSReceipt{}, false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return store.SMSReceipt{}, false, err
	}
	r, err := scanReceipt(tx.QueryRowContext(ctx, db.q(`SELECT `+receiptCols+` FROM sms_receipts WHERE `+receiptKeyWhere+db.d.ForUpdate), keyArgs(key)...))
	return r, n == 0, err
}

// RecordSMSAccepted stores the provider's acceptance of an SMS, keeping
// the state of receipts that came first (unless they named another
// message).
func (db *DB) RecordSMSAccepted(ctx context.Context, in store.SMSReceipt) error {
	return db.tx(ctx, func(tx *Tx) error {
		r, found, err := db.lockedReceipt(ctx, tx, in.ReceiptKey)
		if err != nil {
			return db.wrap("record sms accepted", err)
		}
		if found && r.ProviderMessageID != "" && in.ProviderMessageID != "" && r.ProviderMessageID != in.ProviderMessageID {
			r = store.SMSReceipt{ReceiptKey: in.ReceiptKey} // receipts of another message: not this SMS's
		}
		r.EventSource, r.ProviderMessageID = in.EventSource, in.ProviderMessageID
		if in.CountryCode != 0 {
			r.CountryCode = in.CountryCode
		}
		r.AcceptedAt, r.ExpiresAt, r.ReceiptDueAt = in.AcceptedAt, in.ExpiresAt, in.ReceiptDueAt
		r.UpdatedAt = db.nowUTC()
		return db.wrap("record sms accepted", db.saveReceipt(ctx, tx, r))
	})
}

// ApplyReceipt merges rc into its record in one transaction.
func (db *DB) ApplyReceipt(ctx context.Context, rc store.Receipt) (store.ReceiptResult, error) {
	if store.HandsetRank(rc.State) == 0 {
		return store.ReceiptResult{}, fmt.Errorf("store: apply receipt: unknown handset state %q", rc.State)
	}
	var res store.ReceiptResult
	err := db.tx(ctx, func(tx *Tx) error {
		r, _, err := db.lockedReceipt(ctx, tx, rc.ReceiptKey)
		if err != nil {
			return db.wrap("apply receipt", err)
		}
		if r.ProviderMessageID != "" && rc.ProviderMessageID != "" && r.ProviderMessageID != rc.ProviderMessageID {
			return fmt.Errorf("apply receipt: message %s is not the one recorded: %w", rc.ProviderMessageID, store.ErrPrecondition)
		}
		res = store.ReceiptResult{Previous: r.State}
		res.Changed = store.MergeReceipt(&r, rc)
		if res.Changed {
			r.UpdatedAt = db.nowUTC()
			if err := db.saveReceipt(ctx, tx, r); err != nil {
				return db.wrap("apply receipt", err)
			}
		}
		res.Receipt = r
		return nil
	})
	return res, err
}

// GetSMSReceipt returns key's record.
func (db *DB) GetSMSReceipt(ctx context.Context, key store.ReceiptKey) (store.SMSReceipt, error) {
	r, err := scanReceipt(db.r.QueryRowContext(ctx, db.q(`SELECT `+receiptCols+` FROM sms_receipts WHERE `+receiptKeyWhere), keyArgs(key)...))
	return r, db.wrap("sms receipt", err)
}

// SMSReceiptsOfEvent returns the org's records of eventID.
func (db *DB) SMSReceiptsOfEvent(ctx context.Context, orgID int64, eventID string) ([]store.SMSReceipt, error) {
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT `+receiptCols+` FROM sms_receipts WHERE org_id = ? AND event_id = ?
		ORDER BY destination_id, destination_type`), orgID, eventID)
	if err != nil {
		return nil, db.wrap("sms receipts", err)
	}
	return scanReceipts(rows, db, "sms receipts")
}

func scanReceipts(rows *sql.Rows, db *DB, op string) ([]store.SMSReceipt, error) {
	defer rows.Close()
	var out []store.SMSReceipt
	for rows.Next() {
		r, err := scanReceipt(rows)
		if err != nil {
			return nil, db.wrap(op, err)
		}
		out = append(out, r)
	}
	return out, db.wrap(op, rows.Err())
}

// dueFailoversSQL selects the primary-slot records not failed over yet
// and unexpired whose final receipt said undelivered or failed (the
// soonest to expire first), and those still silent past their
// receipt_due_at (the longest overdue first), each case through the
// partial index that holds only its records (migration 0013) and read no
// further than the limit: it runs every second, every SMS in flight is
// such a record until it is delivered, and after an outage most of them
// may be overdue at once.
func dueFailoversSQL(d Dialect) string {
	return `SELECT ` + receiptCols + ` FROM (SELECT ` + receiptCols + ` FROM sms_receipts` + d.indexedBy("sms_receipts_failed") + `
			WHERE failover_status = '' AND destination_id = 'primary' AND state IN ('undelivered', 'failed') AND expires_at > ?
			ORDER BY expires_at LIMIT ?) AS failed
		UNION ALL
		SELECT ` + receiptCols + ` FROM (SELECT ` + receiptCols + ` FROM sms_receipts` + d.indexedBy("sms_receipts_due") + `
			WHERE failover_status = '' AND destination_id = 'primary' AND receipt_due_at > 0 AND state NOT IN ('delivered', 'undelivered', 'failed')
			AND receipt_due_at <= ? AND expires_at > ? ORDER BY receipt_due_at LIMIT ?) AS due
		ORDER BY expires_at, event_id LIMIT ?`
}

// DueFailovers returns primary-slot records that may fail over at now.
func (db *DB) DueFailovers(ctx context.Context, now time.Time, limit int) ([]store.SMSReceipt, error) {
	if limit <= 0 {
		return nil, nil
	}
	n := micros(now)
	rows, err := db.r.QueryContext(ctx, db.q(dueFailoversSQL(db.d)), n, limit, n, n, limit, limit)
	if err != nil {
		return nil, db.wrap("due failovers", err)
	}
	return scanReceipts(rows, db, "due failovers")
}

// FailOver records f on key's record, once, and inserts the fallback's
// task with the event of the record's own task, in one transaction.
func (db *DB) FailOver(ctx context.Context, key store.ReceiptKey, f store.Failover) error {
	if f.Status == "" {
		return fmt.Errorf("store: fail over: empty status")
	}
	if f.Status == store.FailoverSent && f.Task == nil {
		return fmt.Errorf("store: fail over: no fallback task")
	}
	return db.tx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`UPDATE sms_receipts SET failover_status = ?, failover_reason = ?, failover_at = ?,
			updated_at = ? WHERE `+receiptKeyWhere+` AND failover_status = ''`),
			append([]any{f.Status, f.Reason, micros(f.At), micros(db.nowUTC())}, keyArgs(key)...)...)
		if err != nil {
			return db.wrap("fail over", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return db.wrap("fail over", err)
		} else if n == 0 {
			var one int
			err := tx.QueryRowContext(ctx, db.q(`SELECT 1 FROM sms_receipts WHERE `+receiptKeyWhere), keyArgs(key)...).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("fail over: %w", store.ErrNotFound)
			}
			if err != nil {
				return db.wrap("fail over", err)
			}
			return fmt.Errorf("fail over: already failed over: %w", store.ErrPrecondition)
		}
		if f.Status != store.FailoverSent {
			return nil
		}
		// The task of the SMS the record is about: since delivery keys
		// include the producer, two producers' SMS may share the other parts.
		var source string
		if err := tx.QueryRowContext(ctx, db.q(`SELECT event_source FROM sms_receipts WHERE `+receiptKeyWhere), keyArgs(key)...).Scan(&source); err != nil {
			return db.wrap("fail over", err)
		}
		primary, err := db.scanTask(tx.QueryRowContext(ctx, db.q(`SELECT `+taskCols+` FROM delivery_tasks
			WHERE org_id = ? AND event_source = ? AND event_id = ? AND destination_type = ? AND destination_id = ?`),
			key.OrgID, source, key.EventID, key.DestinationType, key.DestinationID))
		if err != nil {
			return db.wrap("fail over: primary delivery", err)
		}
		t := *f.Task
		t.OrgID, t.EventSource, t.EventID, t.Event = key.OrgID, primary.EventSource, key.EventID, primary.Event
		t.Status, t.Attempts, t.LeaseOwner, t.LeaseUntil = store.DeliveryPending, 0, "", time.Time{}
		if t.CreatedAt.IsZero() {
			t.CreatedAt = db.nowUTC()
		}
		t.UpdatedAt = t.CreatedAt
		sealed, err := db.seal.seal(t.Event, eventAD(t.ID))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, db.q(`INSERT INTO delivery_tasks (`+taskCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (org_id, event_source, event_id, destination_type, destination_id) DO NOTHING`),
			t.ID, t.OrgID, t.EventSource, t.EventID, t.DestinationType, t.DestinationID, sealed, t.Status, t.Attempts,
			micros(t.NextAttemptAt), micros(t.ExpiresAt), t.LeaseOwner, micros(t.LeaseUntil),
			truncate(t.LastError), t.LastStatusCode, micros(t.CreatedAt), micros(t.UpdatedAt))
		return db.wrap("fail over: insert fallback task", err)
	})
}

// attachReceipts sets Handset on the SMS tasks of tasks (all of one org).
func (db *DB) attachReceipts(ctx context.Context, orgID int64, tasks []store.DeliveryTask) error {
	var ids []any
	seen := map[string]bool{}
	for _, t := range tasks {
		if t.DestinationType != "webhook" && !seen[t.EventID] {
			seen[t.EventID] = true
			ids = append(ids, t.EventID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT `+receiptCols+` FROM sms_receipts WHERE org_id = ? AND event_id IN (`+
		placeholders(len(ids))+`)`), append([]any{orgID}, ids...)...)
	if err != nil {
		return db.wrap("delivery receipts", err)
	}
	recs, err := scanReceipts(rows, db, "delivery receipts")
	if err != nil {
		return err
	}
	byKey := make(map[store.ReceiptKey]*store.SMSReceipt, len(recs))
	for i := range recs {
		byKey[recs[i].ReceiptKey] = &recs[i]
	}
	for i := range tasks {
		t := &tasks[i]
		t.Handset = byKey[store.ReceiptKey{OrgID: t.OrgID, EventID: t.EventID, DestinationType: t.DestinationType, DestinationID: t.DestinationID}]
	}
	return nil
}
