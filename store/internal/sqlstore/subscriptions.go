package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/otphub/otphub/store"
)

func providerAD(orgID int64, slot string) string {
	return "sms_providers.config\x00" + strconv.FormatInt(orgID, 10) + "\x00" + slot
}

// GetSMSProvider returns the org's provider in slot, its config decrypted.
func (db *DB) GetSMSProvider(ctx context.Context, orgID int64, slot string) (store.SMSProvider, error) {
	p := store.SMSProvider{OrgID: orgID, Slot: slot}
	var sealed []byte
	var updated int64
	err := db.r.QueryRowContext(ctx, db.q(`SELECT type, config, updated_at FROM sms_providers WHERE org_id = ? AND slot = ?`),
		orgID, slot).Scan(&p.Type, &sealed, &updated)
	if err != nil {
		return store.SMSProvider{}, db.wrap("sms provider", err)
	}
	plain, err := db.seal.open(sealed, providerAD(orgID, slot))
	if err != nil {
		return store.SMSProvider{}, fmt.Errorf("sms provider of org %d (%s): %w", orgID, slot, err)
	}
	p.Config = plain
	p.UpdatedAt = fromMicros(updated)
	return p, nil
}

// PutSMSProvider creates or replaces the org's provider in p.Slot, its
// config sealed. A zero UpdatedAt is stamped with the current time.
func (db *DB) PutSMSProvider(ctx context.Context, p store.SMSProvider) error {
	if p.Slot == "" {
		return fmt.Errorf("store: put sms provider: empty slot")
	}
	if p.UpdatedAt.IsZero() {
		p.UpdatedAt = db.nowUTC()
	}
	sealed, err := db.seal.seal(p.Config, providerAD(p.OrgID, p.Slot))
	if err != nil {
		return err
	}
	_, err = db.exec(ctx, db.q(`INSERT INTO sms_providers (org_id, slot, type, config, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (org_id, slot) DO UPDATE SET type = excluded.type, config = excluded.config, updated_at = excluded.updated_at`),
		p.OrgID, p.Slot, p.Type, sealed, micros(p.UpdatedAt))
	return db.wrap("put sms provider", err)
}

// DeleteSMSProvider deletes the org's provider in slot; ErrNotFound when none.
func (db *DB) DeleteSMSProvider(ctx context.Context, orgID int64, slot string) error {
	res, err := db.exec(ctx, db.q(`DELETE FROM sms_providers WHERE org_id = ? AND slot = ?`), orgID, slot)
	if err != nil {
		return db.wrap("delete sms provider", err)
	}
	return db.wrap("delete sms provider", affected(res, "sms provider"))
}

// subscriptionAD binds a sealed secret to the subscription's natural key,
// which (unlike its ID before an upsert resolves it) is known up front.
func subscriptionAD(orgID int64, topic, callback string) string {
	return "subscriptions.secret\x00" + strconv.FormatInt(orgID, 10) + "\x00" + topic + "\x00" + callback
}

// previousSecretAD binds a replaced secret like subscriptionAD, under
// its own column name.
func previousSecretAD(orgID int64, topic, callback string) string {
	return "subscriptions.previous_secret\x00" + strconv.FormatInt(orgID, 10) + "\x00" + topic + "\x00" + callback
}

const subCols = `id, org_id, topic, callback, secret, state, lease_seconds, expires_at, format, signature_alg, auto_renew, created_at, updated_at,
	previous_secret, previous_secret_until`

func (db *DB) scanSub(row interface{ Scan(...any) error }) (store.Subscription, error) {
	var s store.Subscription
	var sealed, sealedPrev []byte
	var expires, created, updated, prevUntil int64
	if err := row.Scan(&s.ID, &s.OrgID, &s.Topic, &s.Callback, &sealed, &s.State, &s.LeaseSeconds, &expires,
		&s.Format, &s.SignatureAlg, &s.AutoRenew, &created, &updated, &sealedPrev, &prevUntil); err != nil {
		return store.Subscription{}, err
	}
	secret, err := db.seal.open(sealed, subscriptionAD(s.OrgID, s.Topic, s.Callback))
	if err != nil {
		return store.Subscription{}, fmt.Errorf("subscription %s: %w", s.ID, err)
	}
	prev, err := db.seal.open(sealedPrev, previousSecretAD(s.OrgID, s.Topic, s.Callback))
	if err != nil {
		return store.Subscription{}, fmt.Errorf("subscription %s: previous secret: %w", s.ID, err)
	}
	s.Secret, s.PreviousSecret = secret, prev
	s.ExpiresAt, s.CreatedAt, s.UpdatedAt = fromMicros(expires), fromMicros(created), fromMicros(updated)
	s.PreviousSecretUntil = fromMicros(prevUntil)
	return s, nil
}

// UpsertSubscription creates the subscription of (OrgID, Topic, Callback) or
// updates it in place (keeping its ID and CreatedAt) in one atomic upsert,
// and returns the stored record. An empty ID is generated; a zero
// CreatedAt/UpdatedAt is stamped with the current time.
func (db *DB) UpsertSubscription(ctx context.Context, s store.Subscription) (store.Subscription, error) {
	return db.upsertSub(ctx, db.w, s)
}

// UpsertSubscriptionWithin upserts s unless that creates the org's
// subscription number max+1 (ErrLimit). It runs in one transaction that
// first locks the org's row (PostgreSQL: SELECT … FOR UPDATE; SQLite's one
// writer connection serialises transactions anyway), so concurrent
// creations for one org count one after another. Subscriptions whose lease
// ended before now (not yet swept) do not count.
func (db *DB) UpsertSubscriptionWithin(ctx context.Context, s store.Subscription, max int, now time.Time) (store.Subscription, error) {
	var out store.Subscription
	err := db.tx(ctx, func(tx *Tx) error {
		var id int64
		if err := tx.QueryRowContext(ctx, db.q(`SELECT id FROM orgs WHERE id = ?`+db.d.ForUpdate), s.OrgID).Scan(&id); err != nil {
			return db.wrap("lock org", err)
		}
		var exists, count int
		if err := tx.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM subscriptions WHERE org_id = ? AND topic = ? AND callback = ?`),
			s.OrgID, s.Topic, s.Callback).Scan(&exists); err != nil {
			return db.wrap("count subscriptions", err)
		}
		if exists == 0 {
			if err := tx.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM subscriptions
				WHERE org_id = ? AND (expires_at = 0 OR expires_at >= ?)`), s.OrgID, micros(now)).Scan(&count); err != nil {
				return db.wrap("count subscriptions", err)
			}
			if count >= max {
				return fmt.Errorf("subscriptions of org %d: %d of %d: %w", s.OrgID, count, max, store.ErrLimit)
			}
		}
		var err error
		out, err = db.upsertSub(ctx, tx, s)
		return err
	})
	return out, err
}

// queryRower is a *sql.DB or a *Tx.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (db *DB) upsertSub(ctx context.Context, q queryRower, s store.Subscription) (store.Subscription, error) {
	if s.ID == "" {
		s.ID = uuid.NewString()
	}
	now := db.nowUTC()
	if s.CreatedAt.IsZero() {
		s.CreatedAt = now
	}
	if s.UpdatedAt.IsZero() {
		s.UpdatedAt = now
	}
	sealed, err := db.seal.seal(s.Secret, subscriptionAD(s.OrgID, s.Topic, s.Callback))
	if err != nil {
		return store.Subscription{}, err
	}
	sealedPrev, err := db.seal.seal(s.PreviousSecret, previousSecretAD(s.OrgID, s.Topic, s.Callback))
	if err != nil {
		return store.Subscription{}, err
	}
	out, err := db.scanSub(q.QueryRowContext(ctx, db.q(`INSERT INTO subscriptions (`+subCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (org_id, topic, callback) DO UPDATE SET secret = excluded.secret, state = excluded.state,
		lease_seconds = excluded.lease_seconds, expires_at = excluded.expires_at, format = excluded.format,
		signature_alg = excluded.signature_alg, auto_renew = excluded.auto_renew, updated_at = excluded.updated_at,
		previous_secret = excluded.previous_secret, previous_secret_until = excluded.previous_secret_until
		RETURNING `+subCols),
		s.ID, s.OrgID, s.Topic, s.Callback, sealed, s.State, s.LeaseSeconds, micros(s.ExpiresAt),
		s.Format, s.SignatureAlg, s.AutoRenew, micros(s.CreatedAt), micros(s.UpdatedAt), sealedPrev, micros(s.PreviousSecretUntil)))
	return out, db.wrap("upsert subscription", err)
}

// GetSubscription returns the org's subscription id.
func (db *DB) GetSubscription(ctx context.Context, orgID int64, id string) (store.Subscription, error) {
	s, err := db.scanSub(db.r.QueryRowContext(ctx, db.q(`SELECT `+subCols+` FROM subscriptions WHERE org_id = ? AND id = ?`), orgID, id))
	return s, db.wrap("subscription", err)
}

// FindSubscription returns the org's subscription of (topic, callback).
func (db *DB) FindSubscription(ctx context.Context, orgID int64, topic, callback string) (store.Subscription, error) {
	s, err := db.scanSub(db.r.QueryRowContext(ctx, db.q(`SELECT `+subCols+` FROM subscriptions
		WHERE org_id = ? AND topic = ? AND callback = ?`), orgID, topic, callback))
	return s, db.wrap("subscription", err)
}

func (db *DB) listSubs(ctx context.Context, query string, args ...any) ([]store.Subscription, error) {
	rows, err := db.r.QueryContext(ctx, db.q(query), args...)
	if err != nil {
		return nil, db.wrap("list subscriptions", err)
	}
	defer rows.Close()
	var out []store.Subscription
	for rows.Next() {
		s, err := db.scanSub(rows)
		if err != nil {
			return nil, db.wrap("list subscriptions", err)
		}
		out = append(out, s)
	}
	return out, db.wrap("list subscriptions", rows.Err())
}

// ListSubscriptions returns the org's subscriptions, oldest first.
func (db *DB) ListSubscriptions(ctx context.Context, orgID int64) ([]store.Subscription, error) {
	return db.listSubs(ctx, `SELECT `+subCols+` FROM subscriptions WHERE org_id = ? ORDER BY created_at, id`, orgID)
}

// ActiveSubscriptions returns the org's active subscriptions of topic whose
// lease ends after now (an active subscription with a zero ExpiresAt never
// expires).
func (db *DB) ActiveSubscriptions(ctx context.Context, orgID int64, topic string, now time.Time) ([]store.Subscription, error) {
	return db.listSubs(ctx, `SELECT `+subCols+` FROM subscriptions
		WHERE org_id = ? AND topic = ? AND state = ? AND (expires_at = 0 OR expires_at > ?) ORDER BY created_at, id`,
		orgID, topic, store.SubActive, micros(now))
}

// SetSubscriptionState sets the state of the org's subscription id.
func (db *DB) SetSubscriptionState(ctx context.Context, orgID int64, id, state string) error {
	res, err := db.exec(ctx, db.q(`UPDATE subscriptions SET state = ?, updated_at = ? WHERE org_id = ? AND id = ?`),
		state, micros(db.nowUTC()), orgID, id)
	if err != nil {
		return db.wrap("set subscription state", err)
	}
	return db.wrap("set subscription state", affected(res, "subscription"))
}

// DeleteSubscription deletes the org's subscription id; ErrNotFound when none.
func (db *DB) DeleteSubscription(ctx context.Context, orgID int64, id string) error {
	res, err := db.exec(ctx, db.q(`DELETE FROM subscriptions WHERE org_id = ? AND id = ?`), orgID, id)
	if err != nil {
		return db.wrap("delete subscription", err)
	}
	return db.wrap("delete subscription", affected(res, "subscription"))
}

// ExpireSubscriptions deletes the subscriptions (of every org) whose lease
// ended before now; those without a lease end (pending) stay.
func (db *DB) ExpireSubscriptions(ctx context.Context, now time.Time) (int, error) {
	res, err := db.exec(ctx, db.q(`DELETE FROM subscriptions WHERE expires_at <> 0 AND expires_at < ?`), micros(now))
	if err != nil {
		return 0, db.wrap("expire subscriptions", err)
	}
	n, err := res.RowsAffected()
	return int(n), db.wrap("expire subscriptions", err)
}

// GetPayloadSettings returns the org's payload encryption settings; the
// zero settings for an org that never set them.
func (db *DB) GetPayloadSettings(ctx context.Context, orgID int64) (store.PayloadSettings, error) {
	var ps store.PayloadSettings
	var updated int64
	err := db.r.QueryRowContext(ctx, db.q(`SELECT enabled, key_generation, updated_at FROM payload_encryption WHERE org_id = ?`), orgID).
		Scan(&ps.Enabled, &ps.KeyGeneration, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return store.PayloadSettings{}, nil
	}
	ps.UpdatedAt = fromMicros(updated)
	return ps, db.wrap("payload encryption", err)
}

// SetPayloadEncryption turns the org's payload encryption on or off.
func (db *DB) SetPayloadEncryption(ctx context.Context, orgID int64, enabled bool) error {
	_, err := db.exec(ctx, db.q(`INSERT INTO payload_encryption (org_id, enabled, key_generation, updated_at) VALUES (?, ?, 0, ?)
		ON CONFLICT (org_id) DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at`),
		orgID, enabled, micros(db.nowUTC()))
	return db.wrap("set payload encryption", err)
}

// RotatePayloadKey moves the org's key generation one step, in one upsert.
func (db *DB) RotatePayloadKey(ctx context.Context, orgID int64) (store.PayloadSettings, error) {
	var ps store.PayloadSettings
	var updated int64
	err := db.writeRow(ctx, db.q(`INSERT INTO payload_encryption (org_id, enabled, key_generation, updated_at) VALUES (?, FALSE, 1, ?)
		ON CONFLICT (org_id) DO UPDATE SET key_generation = payload_encryption.key_generation + 1, updated_at = excluded.updated_at
		RETURNING enabled, key_generation, updated_at`), orgID, micros(db.nowUTC())).Scan(&ps.Enabled, &ps.KeyGeneration, &updated)
	ps.UpdatedAt = fromMicros(updated)
	return ps, db.wrap("rotate payload key", err)
}
