package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/otphub/otphub/store"
)

// GetOTPSettings returns the org's settings; ErrNotFound when never saved.
func (db *DB) GetOTPSettings(ctx context.Context, orgID int64) (store.OTPSettings, error) {
	s := store.OTPSettings{OrgID: orgID}
	var codes, types string
	var updated int64
	err := db.r.QueryRowContext(ctx, db.q(`SELECT expiry_seconds, numeric_only, length, max_resends, resend_interval_seconds,
		max_failed_attempts, backup_codes_enabled, web_otp, allowed_country_codes, updated_at,
		allowed_number_types, send_limit_per_number, send_limit_per_ip, send_limit_per_org FROM otp_settings WHERE org_id = ?`), orgID).
		Scan(&s.ExpirySeconds, &s.NumericOnly, &s.Length, &s.MaxResends, &s.ResendIntervalSeconds,
			&s.MaxFailedAttempts, &s.BackupCodesEnabled, &s.WebOTP, &codes, &updated,
			&types, &s.SendLimitPerNumber, &s.SendLimitPerIP, &s.SendLimitPerOrg)
	if err != nil {
		return store.OTPSettings{}, db.wrap("otp settings", err)
	}
	if err := json.Unmarshal([]byte(codes), &s.AllowedCountryCodes); err != nil {
		return store.OTPSettings{}, fmt.Errorf("store: otp settings of org %d: country codes: %w", orgID, err)
	}
	if err := json.Unmarshal([]byte(types), &s.AllowedNumberTypes); err != nil {
		return store.OTPSettings{}, fmt.Errorf("store: otp settings of org %d: number types: %w", orgID, err)
	}
	if len(s.AllowedNumberTypes) == 0 {
		s.AllowedNumberTypes = nil
	}
	s.UpdatedAt = fromMicros(updated)
	return s, nil
}

// PutOTPSettings creates or replaces the org's settings. A zero UpdatedAt
// is stamped with the current time.
func (db *DB) PutOTPSettings(ctx context.Context, s store.OTPSettings) error {
	if s.UpdatedAt.IsZero() {
		s.UpdatedAt = db.nowUTC()
	}
	codes := s.AllowedCountryCodes
	if codes == nil {
		codes = []int{}
	}
	js, err := json.Marshal(codes)
	if err != nil {
		return fmt.Errorf("store: otp settings: %w", err)
	}
	types := s.AllowedNumberTypes
	if types == nil {
		types = []string{}
	}
	tjs, err := json.Marshal(types)
	if err != nil {
		return fmt.Errorf("store: otp settings: %w", err)
	}
	_, err = db.exec(ctx, db.q(`INSERT INTO otp_settings (org_id, expiry_seconds, numeric_only, length, max_resends,
		resend_interval_seconds, max_failed_attempts, backup_codes_enabled, web_otp, allowed_country_codes, updated_at,
		allowed_number_types, send_limit_per_number, send_limit_per_ip, send_limit_per_org)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (org_id) DO UPDATE SET expiry_seconds = excluded.expiry_seconds, numeric_only = excluded.numeric_only,
		length = excluded.length, max_resends = excluded.max_resends, resend_interval_seconds = excluded.resend_interval_seconds,
		max_failed_attempts = excluded.max_failed_attempts, backup_codes_enabled = excluded.backup_codes_enabled,
		web_otp = excluded.web_otp, allowed_country_codes = excluded.allowed_country_codes, updated_at = excluded.updated_at,
		allowed_number_types = excluded.allowed_number_types, send_limit_per_number = excluded.send_limit_per_number,
		send_limit_per_ip = excluded.send_limit_per_ip, send_limit_per_org = excluded.send_limit_per_org`),
		s.OrgID, s.ExpirySeconds, s.NumericOnly, s.Length, s.MaxResends, s.ResendIntervalSeconds,
		s.MaxFailedAttempts, s.BackupCodesEnabled, s.WebOTP, string(js), micros(s.UpdatedAt),
		string(tjs), s.SendLimitPerNumber, s.SendLimitPerIP, s.SendLimitPerOrg)
	return db.wrap("put otp settings", err)
}

// GetMessageTemplate returns the org's template for locale.
func (db *DB) GetMessageTemplate(ctx context.Context, orgID int64, locale string) (store.MessageTemplate, error) {
	t := store.MessageTemplate{OrgID: orgID, Locale: locale}
	var updated int64
	err := db.r.QueryRowContext(ctx, db.q(`SELECT body, updated_at FROM message_templates WHERE org_id = ? AND locale = ?`),
		orgID, locale).Scan(&t.Body, &updated)
	if err != nil {
		return store.MessageTemplate{}, db.wrap("message template", err)
	}
	t.UpdatedAt = fromMicros(updated)
	return t, nil
}

// PutMessageTemplate creates or replaces the org's template for t.Locale.
func (db *DB) PutMessageTemplate(ctx context.Context, t store.MessageTemplate) error {
	if t.UpdatedAt.IsZero() {
		t.UpdatedAt = db.nowUTC()
	}
	_, err := db.exec(ctx, db.q(`INSERT INTO message_templates (org_id, locale, body, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (org_id, locale) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`),
		t.OrgID, t.Locale, t.Body, micros(t.UpdatedAt))
	return db.wrap("put message template", err)
}

// DeleteMessageTemplate deletes the org's template for locale; ErrNotFound
// when there is none.
func (db *DB) DeleteMessageTemplate(ctx context.Context, orgID int64, locale string) error {
	res, err := db.exec(ctx, db.q(`DELETE FROM message_templates WHERE org_id = ? AND locale = ?`), orgID, locale)
	if err != nil {
		return db.wrap("delete message template", err)
	}
	return db.wrap("delete message template", affected(res, "message template"))
}

// ListMessageTemplates returns the org's templates by locale.
func (db *DB) ListMessageTemplates(ctx context.Context, orgID int64) ([]store.MessageTemplate, error) {
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT locale, body, updated_at FROM message_templates WHERE org_id = ? ORDER BY locale`), orgID)
	if err != nil {
		return nil, db.wrap("list message templates", err)
	}
	defer rows.Close()
	var out []store.MessageTemplate
	for rows.Next() {
		t := store.MessageTemplate{OrgID: orgID}
		var updated int64
		if err := rows.Scan(&t.Locale, &t.Body, &updated); err != nil {
			return nil, db.wrap("list message templates", err)
		}
		t.UpdatedAt = fromMicros(updated)
		out = append(out, t)
	}
	return out, db.wrap("list message templates", rows.Err())
}

// CreateChallenge checks the lockout, makes the counter hits and stores a
// new challenge (store.Store says how a lockout or a budget refuses, and
// how the hits commit with an async pool); ErrConflict on a duplicate ID,
// with no hit made.
// A zero CreatedAt is stamped with the current time. Now and then (see
// purger) it also deletes challenges expired for over ChallengeRetention.
func (db *DB) CreateChallenge(ctx context.Context, c store.Challenge, lock store.Lockout, hits ...store.CounterHit) error {
	if c.ID == "" {
		return fmt.Errorf("store: create challenge: empty ID")
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = db.nowUTC()
	}
	code := c.CodeHMAC
	if code == nil {
		code = []byte{}
	}
	over := -1
	if db.async == nil {
		// One transaction: a hit over its budget commits the hits so far
		// and skips the insert.
		err := db.tx(ctx, func(tx *Tx) (err error) {
			if err := db.checkLockout(ctx, tx, c, lock); err != nil {
				return err
			}
			if over, err = db.hitAll(ctx, tx, hits); err != nil || over >= 0 {
				return err
			}
			if err := db.insertChallenge(ctx, tx, c, code, ""); err != nil {
				return err
			}
			db.purgeChallenges(ctx, tx, c.CreatedAt)
			return nil
		})
		if err == nil && over >= 0 {
			return &store.OverBudgetError{Hit: over}
		}
		return err
	}
	// Two statements, no transaction: the challenge unless the user is
	// locked out, then the counters on the pool that commits without
	// waiting for the flush (WithAsyncCommits); a challenge they refuse
	// (or could not count) is withdrawn. Its ID was never disclosed.
	if err := db.insertUnlessLocked(ctx, c, code, lock); err != nil {
		return err
	}
	db.purgeChallenges(ctx, pool{db.w}, c.CreatedAt)
	over, err := db.hitAll(ctx, pool{db.async}, hits)
	if err == nil && over < 0 {
		return nil
	}
	if derr := db.DeleteChallenge(context.WithoutCancel(ctx), c.OrgID, c.ID); derr != nil {
		return errors.Join(err, derr)
	}
	if err != nil {
		return err
	}
	return &store.OverBudgetError{Hit: over}
}

// checkLockout is CreateChallenge's lock check with q: a *LockedOutError
// when the user is locked out.
func (db *DB) checkLockout(ctx context.Context, q querier, c store.Challenge, lock store.Lockout) error {
	if lock.Max <= 0 {
		return nil
	}
	var n int
	var last int64
	err := q.QueryRowContext(ctx, db.q(`SELECT attempts, last_failure_at FROM failed_attempts WHERE org_id = ? AND user_id = ?`),
		c.OrgID, c.UserID).Scan(&n, &last)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return db.wrap("check lockout", err)
	case n >= lock.Max && last > micros(lock.Since):
		return &store.LockedOutError{Attempts: n, LastFailure: fromMicros(last)}
	}
	return nil
}

// insertUnlessLocked inserts c in one statement unless its user is locked
// out (a *LockedOutError then).
func (db *DB) insertUnlessLocked(ctx context.Context, c store.Challenge, code []byte, lock store.Lockout) error {
	if lock.Max <= 0 {
		return db.insertChallenge(ctx, pool{db.w}, c, code, "")
	}
	for range 2 {
		err := db.insertChallenge(ctx, pool{db.w}, c, code, ` WHERE NOT EXISTS (SELECT 1 FROM failed_attempts
			WHERE org_id = ? AND user_id = ? AND attempts >= ? AND last_failure_at > ?)`, c.OrgID, c.UserID, lock.Max, micros(lock.Since))
		if !errors.Is(err, errNotInserted) {
			return err
		}
		// Locked out when the insert ran: read why. (Unlocked since, as by
		// a verification that succeeded in between: insert again, once.)
		if err := db.checkLockout(ctx, pool{db.w}, c, lock); err != nil {
			return err
		}
	}
	return db.wrap("create challenge", errNotInserted)
}

var errNotInserted = errors.New("the challenge was not inserted")

// hitAll makes hits in order with q, up to the first that goes over its
// Max: its index, or -1. They are one statement; the hits after one over
// its Max are taken back at once, as if never made (with q a transaction,
// no one sees them; with the async pool, another challenge may, for the
// moment between the two statements).
func (db *DB) hitAll(ctx context.Context, q querier, hits []store.CounterHit) (over int, err error) {
	if len(hits) == 0 {
		return -1, nil
	}
	if len(hits) > len(hitQueries) || duplicateHits(hits) {
		// One row could not be updated twice in one statement.
		for i, h := range hits {
			n, err := db.hitCounter(ctx, q, h.Key, h.WindowStart, h.ExpiresAt)
			if err != nil {
				return -1, err
			}
			if h.Max > 0 && n > h.Max {
				return i, nil
			}
		}
		return -1, nil
	}
	args := make([]any, 0, 3*len(hits))
	latest := hits[0].WindowStart
	for _, h := range hits {
		args = append(args, h.Key, micros(h.WindowStart), micros(h.ExpiresAt))
		if h.WindowStart.After(latest) {
			latest = h.WindowStart
		}
	}
	counts := make([]int64, len(hits))
	err = q.queryRows(ctx, db.q(hitQueries[len(hits)-1]), args, func(rows *sql.Rows) error {
		var key string
		var window, n int64
		if err := rows.Scan(&key, &window, &n); err != nil {
			return err
		}
		for i, h := range hits {
			if h.Key == key && micros(h.WindowStart) == window {
				counts[i] = n
			}
		}
		return nil
	})
	if err != nil {
		return -1, db.wrap("hit counters", err)
	}
	over = -1
	for i, h := range hits {
		if h.Max > 0 && counts[i] > h.Max {
			over = i
			break
		}
	}
	if over >= 0 {
		for _, h := range hits[over+1:] {
			if _, err := q.ExecContext(ctx, db.q(`UPDATE rate_counters SET hits = hits - 1 WHERE counter_key = ? AND window_start = ?`),
				h.Key, micros(h.WindowStart)); err != nil {
				return -1, db.wrap("hit counters", err)
			}
		}
	}
	db.purgeCounters(ctx, q, latest)
	return over, nil
}

// hitQueries[n-1] is the upsert of n counter hits.
var hitQueries = func() (qs [8]string) {
	for n := range qs {
		qs[n] = `INSERT INTO rate_counters (counter_key, window_start, hits, expires_at) VALUES (?, ?, 1, ?)` +
			strings.Repeat(`, (?, ?, 1, ?)`, n) +
			` ON CONFLICT (counter_key, window_start) DO UPDATE SET hits = rate_counters.hits + 1 RETURNING counter_key, window_start, hits`
	}
	return qs
}()

func duplicateHits(hits []store.CounterHit) bool {
	for i, a := range hits {
		for _, b := range hits[:i] {
			if a.Key == b.Key && a.WindowStart.Equal(b.WindowStart) {
				return true
			}
		}
	}
	return false
}

// insertChallenge is CreateChallenge's insert of c with q; where, if set,
// is a WHERE clause (with its args) that may keep it from being inserted
// (errNotInserted).
func (db *DB) insertChallenge(ctx context.Context, q querier, c store.Challenge, code []byte, where string, whereArgs ...any) error {
	res, err := q.ExecContext(ctx, db.q(`INSERT INTO challenges (id, org_id, user_id, mobile, country_code, application, code_hmac,
		event_id, expires_at, resends, last_sent_at, consumed_at, created_at) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?`+where),
		append([]any{c.ID, c.OrgID, c.UserID, c.Mobile, c.CountryCode, c.Application, code, c.EventID, micros(c.ExpiresAt), c.Resends,
			micros(c.LastSentAt), micros(c.ConsumedAt), micros(c.CreatedAt)}, whereArgs...)...)
	if err != nil {
		return db.wrap("create challenge", err)
	}
	if where != "" {
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return cmp.Or(err, errNotInserted)
		}
	}
	return nil
}

// purgeChallenges deletes, now and then, the challenges past their expiry
// by more than ChallengeRetention: they can never be verified again. Best
// effort: a failed purge is done again next time.
func (db *DB) purgeChallenges(ctx context.Context, q querier, now time.Time) {
	if db.challengePurge.due(now) {
		_, _ = q.ExecContext(ctx, db.q(`DELETE FROM challenges WHERE expires_at <> 0 AND expires_at < ?`),
			micros(now.Add(-ChallengeRetention)))
	}
}

// ChallengeRetention is how long a challenge is kept after its expiry
// (for GetChallenge to tell "expired" from "unknown", and for OTPStats to
// read every challenge of its longest window); older ones are purged now
// and then by CreateChallenge.
const ChallengeRetention = store.MaxStatsWindow + 24*time.Hour

// GetChallenge returns the org's challenge id.
func (db *DB) GetChallenge(ctx context.Context, orgID int64, id string) (store.Challenge, error) {
	c := store.Challenge{ID: id, OrgID: orgID}
	var expires, lastSent, consumed, created int64
	err := db.r.QueryRowContext(ctx, db.q(`SELECT user_id, mobile, country_code, application, code_hmac, event_id, expires_at, resends,
		last_sent_at, consumed_at, created_at FROM challenges WHERE org_id = ? AND id = ?`), orgID, id).
		Scan(&c.UserID, &c.Mobile, &c.CountryCode, &c.Application, &c.CodeHMAC, &c.EventID, &expires, &c.Resends, &lastSent, &consumed, &created)
	if err != nil {
		return store.Challenge{}, db.wrap("challenge", err)
	}
	c.ExpiresAt, c.LastSentAt = fromMicros(expires), fromMicros(lastSent)
	c.ConsumedAt, c.CreatedAt = fromMicros(consumed), fromMicros(created)
	return c, nil
}

// ReplaceChallengeCode installs a resent OTP when the challenge still has
// prevResends resends used and is not consumed; ErrPrecondition otherwise,
// ErrNotFound when the org has no such challenge.
func (db *DB) ReplaceChallengeCode(ctx context.Context, orgID int64, id string, prevResends int, codeHMAC []byte, eventID string, expiresAt, sentAt time.Time) error {
	res, err := db.exec(ctx, db.q(`UPDATE challenges SET code_hmac = ?, event_id = ?, expires_at = ?, resends = resends + 1
		WHERE org_id = ? AND id = ? AND resends = ? AND last_sent_at = ? AND consumed_at = 0`),
		codeHMAC, eventID, micros(expiresAt), orgID, id, prevResends, micros(sentAt))
	if err != nil {
		return db.wrap("replace challenge code", err)
	}
	return db.conditional(ctx, res, "replace challenge code",
		`SELECT 1 FROM challenges WHERE org_id = ? AND id = ?`, orgID, id)
}

// ClaimResend is one conditional UPDATE: of concurrent claims of a turn
// the database lets exactly one change the row.
func (db *DB) ClaimResend(ctx context.Context, orgID int64, id string, resends int, from, to time.Time) error {
	res, err := db.exec(ctx, db.q(`UPDATE challenges SET last_sent_at = ?
		WHERE org_id = ? AND id = ? AND resends = ? AND last_sent_at = ? AND consumed_at = 0`),
		micros(to), orgID, id, resends, micros(from))
	if err != nil {
		return db.wrap("claim resend", err)
	}
	return db.conditional(ctx, res, "claim resend",
		`SELECT 1 FROM challenges WHERE org_id = ? AND id = ?`, orgID, id)
}

// ConsumeChallenge marks the challenge consumed at now if it is not yet and
// its code is still codeHMAC. A single conditional UPDATE: of concurrent
// calls the database lets exactly one change the row.
func (db *DB) ConsumeChallenge(ctx context.Context, orgID int64, id string, codeHMAC []byte, now time.Time) error {
	if now.IsZero() {
		now = db.nowUTC()
	}
	res, err := db.exec(ctx, db.q(`UPDATE challenges SET consumed_at = ?
		WHERE org_id = ? AND id = ? AND consumed_at = 0 AND code_hmac = ?`),
		micros(now), orgID, id, codeHMAC)
	if err != nil {
		return db.wrap("consume challenge", err)
	}
	return db.conditional(ctx, res, "consume challenge",
		`SELECT 1 FROM challenges WHERE org_id = ? AND id = ?`, orgID, id)
}

// DeleteChallenge removes the org's challenge id.
func (db *DB) DeleteChallenge(ctx context.Context, orgID int64, id string) error {
	res, err := db.exec(ctx, db.q(`DELETE FROM challenges WHERE org_id = ? AND id = ?`), orgID, id)
	if err != nil {
		return db.wrap("delete challenge", err)
	}
	return db.wrap("delete challenge", affected(res, "challenge"))
}

// conditional turns a conditional UPDATE that changed no row into
// ErrNotFound (exists found nothing) or ErrPrecondition.
func (db *DB) conditional(ctx context.Context, res sql.Result, op, exists string, args ...any) error {
	n, err := res.RowsAffected()
	if err != nil {
		return db.wrap(op, err)
	}
	if n > 0 {
		return nil
	}
	var one int
	err = db.writeRow(ctx, db.q(exists), args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, store.ErrNotFound)
	}
	if err != nil {
		return db.wrap(op, err)
	}
	return fmt.Errorf("%s: %w", op, store.ErrPrecondition)
}

// ReserveFailedAttempt is one conditional upsert: the database serializes
// concurrent reservations of a user's row, and the WHERE clause sees the
// count the previous one left, so at most max of them return a row.
func (db *DB) ReserveFailedAttempt(ctx context.Context, orgID int64, userID string, max int, now, forgetAt time.Time) (int, error) {
	if max < 1 {
		return 0, fmt.Errorf("reserve failed attempt: %w", store.ErrPrecondition)
	}
	var n int
	err := db.writeRow(ctx, db.q(`INSERT INTO failed_attempts (org_id, user_id, attempts, last_failure_at) VALUES (?, ?, 1, ?)
		ON CONFLICT (org_id, user_id) DO UPDATE SET
			attempts = CASE WHEN failed_attempts.last_failure_at <= ? THEN 1 ELSE failed_attempts.attempts + 1 END,
			last_failure_at = excluded.last_failure_at
		WHERE failed_attempts.last_failure_at <= ? OR failed_attempts.attempts < ?
		RETURNING attempts`), orgID, userID, micros(now), micros(forgetAt), micros(forgetAt), max).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("reserve failed attempt: %w", store.ErrPrecondition)
	}
	return n, db.wrap("reserve failed attempt", err)
}

// FailedAttempts returns the user's count and last failure; 0 and the zero
// time (no error) for a user without failures.
func (db *DB) FailedAttempts(ctx context.Context, orgID int64, userID string) (int, time.Time, error) {
	var n int
	var last int64
	err := db.r.QueryRowContext(ctx, db.q(`SELECT attempts, last_failure_at FROM failed_attempts WHERE org_id = ? AND user_id = ?`),
		orgID, userID).Scan(&n, &last)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, time.Time{}, nil
	}
	if err != nil {
		return 0, time.Time{}, db.wrap("failed attempts", err)
	}
	return n, fromMicros(last), nil
}

// ResetFailedAttempts forgets the user's failures (no error when none).
func (db *DB) ResetFailedAttempts(ctx context.Context, orgID int64, userID string) error {
	_, err := db.exec(ctx, db.q(`DELETE FROM failed_attempts WHERE org_id = ? AND user_id = ?`), orgID, userID)
	return db.wrap("reset failed attempts", err)
}

// ReplaceBackupCodes deletes the user's codes and stores hashes in one
// transaction.
func (db *DB) ReplaceBackupCodes(ctx context.Context, orgID int64, userID string, hashes [][]byte) error {
	return db.tx(ctx, func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM backup_codes WHERE org_id = ? AND user_id = ?`), orgID, userID); err != nil {
			return db.wrap("replace backup codes", err)
		}
		for _, h := range hashes {
			if _, err := tx.ExecContext(ctx, db.q(`INSERT INTO backup_codes (org_id, user_id, hash, used_at) VALUES (?, ?, ?, 0)`),
				orgID, userID, h); err != nil {
				return db.wrap("replace backup codes", err)
			}
		}
		return nil
	})
}

// ListBackupCodes returns the user's codes, used ones included, by ID.
func (db *DB) ListBackupCodes(ctx context.Context, orgID int64, userID string) ([]store.BackupCode, error) {
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT id, hash, used_at FROM backup_codes WHERE org_id = ? AND user_id = ? ORDER BY id`), orgID, userID)
	if err != nil {
		return nil, db.wrap("list backup codes", err)
	}
	defer rows.Close()
	var out []store.BackupCode
	for rows.Next() {
		c := store.BackupCode{OrgID: orgID, UserID: userID}
		var used int64
		if err := rows.Scan(&c.ID, &c.Hash, &used); err != nil {
			return nil, db.wrap("list backup codes", err)
		}
		c.UsedAt = fromMicros(used)
		out = append(out, c)
	}
	return out, db.wrap("list backup codes", rows.Err())
}

// UseBackupCode marks an unused code used: one conditional UPDATE, so of
// concurrent calls exactly one succeeds; the others get ErrPrecondition.
func (db *DB) UseBackupCode(ctx context.Context, orgID int64, userID string, id int64, now time.Time) error {
	if now.IsZero() {
		now = db.nowUTC()
	}
	res, err := db.exec(ctx, db.q(`UPDATE backup_codes SET used_at = ? WHERE org_id = ? AND user_id = ? AND id = ? AND used_at = 0`),
		micros(now), orgID, userID, id)
	if err != nil {
		return db.wrap("use backup code", err)
	}
	return db.conditional(ctx, res, "use backup code",
		`SELECT 1 FROM backup_codes WHERE org_id = ? AND user_id = ? AND id = ?`, orgID, userID, id)
}

// HitCounter adds one to the (key, windowStart) counter in one atomic upsert
// and returns its new value. Now and then (see purger) it also deletes the
// rows that expired before windowStart.
func (db *DB) HitCounter(ctx context.Context, key string, windowStart, expiresAt time.Time) (int64, error) {
	var n int64
	err := db.tx(ctx, func(tx *Tx) (err error) {
		n, err = db.hitCounter(ctx, tx, key, windowStart, expiresAt)
		return err
	})
	return n, err
}

// hitCounter is HitCounter with q.
func (db *DB) hitCounter(ctx context.Context, q querier, key string, windowStart, expiresAt time.Time) (int64, error) {
	var n int64
	err := q.QueryRowContext(ctx, db.q(`INSERT INTO rate_counters (counter_key, window_start, hits, expires_at) VALUES (?, ?, 1, ?)
		ON CONFLICT (counter_key, window_start) DO UPDATE SET hits = rate_counters.hits + 1
		RETURNING hits`), key, micros(windowStart), micros(expiresAt)).Scan(&n)
	if err != nil {
		return 0, db.wrap("hit counter", err)
	}
	db.purgeCounters(ctx, q, windowStart)
	return n, nil
}

// purgeCounters deletes, now and then, the counters that expired before
// windowStart. Best effort: a failed purge is done again next time.
func (db *DB) purgeCounters(ctx context.Context, q querier, windowStart time.Time) {
	if db.counterPurge.due(windowStart) {
		_, _ = q.ExecContext(ctx, db.q(`DELETE FROM rate_counters WHERE expires_at < ?`), micros(windowStart))
	}
}

// otpStatsChallenges selects the challenges OTPStats counts (org, window),
// through the index challenges_org_created (migration 0010).
const otpStatsChallenges = `FROM challenges c WHERE c.org_id = ? AND c.created_at >= ? AND c.created_at < ?`

// OTPStats is two GROUP BYs over one org's challenges of a bounded window;
// the country one looks up each challenge's current SMS in sms_receipts
// by its primary key prefix (org_id, event_id).
func (db *DB) OTPStats(ctx context.Context, orgID int64, since, until time.Time) (store.OTPStats, error) {
	if !until.After(since) || until.Sub(since) > store.MaxStatsWindow {
		return store.OTPStats{}, fmt.Errorf("store: otp stats: window %v to %v: want a positive one of at most %v", since, until, store.MaxStatsWindow)
	}
	since = since.UTC().Truncate(time.Microsecond)
	n := int((until.Sub(since) + time.Hour - 1) / time.Hour)
	out := store.OTPStats{Hours: make([]store.OTPHourStats, n), Countries: []store.OTPCountryStats{}}
	for i := range out.Hours {
		out.Hours[i].Start = since.Add(time.Duration(i) * time.Hour)
	}
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT (c.created_at - ?) / 3600000000, SUM(1 + c.resends),
		SUM(CASE WHEN c.consumed_at <> 0 THEN 1 ELSE 0 END) `+otpStatsChallenges+` GROUP BY 1`),
		micros(since), orgID, micros(since), micros(until))
	if err != nil {
		return store.OTPStats{}, db.wrap("otp stats", err)
	}
	defer rows.Close()
	for rows.Next() {
		var h int64
		var sent, verified int64
		if err := rows.Scan(&h, &sent, &verified); err != nil {
			return store.OTPStats{}, db.wrap("otp stats", err)
		}
		if h >= 0 && h < int64(n) {
			out.Hours[h].Sent, out.Hours[h].Verified = sent, verified
		}
	}
	if err := rows.Err(); err != nil {
		return store.OTPStats{}, db.wrap("otp stats", err)
	}
	rows.Close()
	receipt := func(cond string) string {
		return `SUM(CASE WHEN EXISTS (SELECT 1 FROM sms_receipts r WHERE r.org_id = c.org_id AND r.event_id = c.event_id
			AND c.event_id <> '' AND ` + cond + `) THEN 1 ELSE 0 END)`
	}
	rows, err = db.r.QueryContext(ctx, db.q(`SELECT c.country_code, SUM(1 + c.resends),
		SUM(CASE WHEN c.consumed_at <> 0 THEN 1 ELSE 0 END), `+receipt(`r.state = 'delivered'`)+`, `+receipt(`r.state <> ''`)+`
		`+otpStatsChallenges+` GROUP BY c.country_code ORDER BY 2 DESC, 1`),
		orgID, micros(since), micros(until))
	if err != nil {
		return store.OTPStats{}, db.wrap("otp stats by country", err)
	}
	defer rows.Close()
	for rows.Next() {
		var cs store.OTPCountryStats
		if err := rows.Scan(&cs.CountryCode, &cs.Sent, &cs.Verified, &cs.Delivered, &cs.Receipts); err != nil {
			return store.OTPStats{}, db.wrap("otp stats by country", err)
		}
		out.Countries = append(out.Countries, cs)
	}
	return out, db.wrap("otp stats by country", rows.Err())
}
