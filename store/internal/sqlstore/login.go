package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/otphub/otphub/store"
)

// applicationAD binds a sealed client secret to its application, org and
// client id.
func applicationAD(id string, orgID int64, clientID string) string {
	return "applications.client_secret\x00" + id + "\x00" + strconv.FormatInt(orgID, 10) + "\x00" + clientID
}

const appCols = `id, org_id, name, client_id, client_secret, redirect_uris, first_factors, backup_codes, created_at, updated_at`

func (db *DB) scanApp(row interface{ Scan(...any) error }) (store.Application, error) {
	var a store.Application
	var sealed []byte
	var uris, factors string
	var created, updated int64
	if err := row.Scan(&a.ID, &a.OrgID, &a.Name, &a.ClientID, &sealed, &uris, &factors, &a.BackupCodes, &created, &updated); err != nil {
		return store.Application{}, err
	}
	secret, err := db.seal.open(sealed, applicationAD(a.ID, a.OrgID, a.ClientID))
	if err != nil {
		return store.Application{}, fmt.Errorf("application %s: %w", a.ID, err)
	}
	a.ClientSecret = secret
	if err := json.Unmarshal([]byte(uris), &a.RedirectURIs); err != nil {
		return store.Application{}, fmt.Errorf("application %s: redirect uris: %w", a.ID, err)
	}
	if err := json.Unmarshal([]byte(factors), &a.FirstFactors); err != nil {
		return store.Application{}, fmt.Errorf("application %s: first factors: %w", a.ID, err)
	}
	a.CreatedAt, a.UpdatedAt = fromMicros(created), fromMicros(updated)
	return a, nil
}

func jsonList(v []string) string {
	if v == nil {
		v = []string{}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// CreateApplication stores a; a zero CreatedAt/UpdatedAt is stamped now.
func (db *DB) CreateApplication(ctx context.Context, a store.Application) error {
	now := db.nowUTC()
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now
	}
	if a.UpdatedAt.IsZero() {
		a.UpdatedAt = a.CreatedAt
	}
	sealed, err := db.seal.seal(a.ClientSecret, applicationAD(a.ID, a.OrgID, a.ClientID))
	if err != nil {
		return err
	}
	_, err = db.exec(ctx, db.q(`INSERT INTO applications (`+appCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		a.ID, a.OrgID, a.Name, a.ClientID, sealed, jsonList(a.RedirectURIs), jsonList(a.FirstFactors), a.BackupCodes,
		micros(a.CreatedAt), micros(a.UpdatedAt))
	return db.wrap("create application", err)
}

// GetApplication returns the org's application id.
func (db *DB) GetApplication(ctx context.Context, orgID int64, id string) (store.Application, error) {
	a, err := db.scanApp(db.r.QueryRowContext(ctx, db.q(`SELECT `+appCols+` FROM applications WHERE org_id = ? AND id = ?`), orgID, id))
	return a, db.wrap("application", err)
}

// GetApplicationByClientID returns the application of clientID.
func (db *DB) GetApplicationByClientID(ctx context.Context, clientID string) (store.Application, error) {
	a, err := db.scanApp(db.r.QueryRowContext(ctx, db.q(`SELECT `+appCols+` FROM applications WHERE client_id = ?`), clientID))
	return a, db.wrap("application", err)
}

// ListApplications returns the org's applications, oldest first.
func (db *DB) ListApplications(ctx context.Context, orgID int64) ([]store.Application, error) {
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT `+appCols+` FROM applications WHERE org_id = ? ORDER BY created_at, id`), orgID)
	if err != nil {
		return nil, db.wrap("list applications", err)
	}
	defer rows.Close()
	var out []store.Application
	for rows.Next() {
		a, err := db.scanApp(rows)
		if err != nil {
			return nil, db.wrap("list applications", err)
		}
		out = append(out, a)
	}
	return out, db.wrap("list applications", rows.Err())
}

// UpdateApplication replaces the mutable fields of the org's application.
func (db *DB) UpdateApplication(ctx context.Context, a store.Application) error {
	if a.UpdatedAt.IsZero() {
		a.UpdatedAt = db.nowUTC()
	}
	res, err := db.exec(ctx, db.q(`UPDATE applications SET name = ?, redirect_uris = ?, first_factors = ?,
		backup_codes = ?, updated_at = ? WHERE org_id = ? AND id = ?`),
		a.Name, jsonList(a.RedirectURIs), jsonList(a.FirstFactors), a.BackupCodes, micros(a.UpdatedAt), a.OrgID, a.ID)
	if err != nil {
		return db.wrap("update application", err)
	}
	return db.wrap("update application", affected(res, "application"))
}

// SetApplicationSecret seals and stores a new client secret.
func (db *DB) SetApplicationSecret(ctx context.Context, orgID int64, id string, secret []byte, at time.Time) error {
	return db.tx(ctx, func(tx *Tx) error {
		var clientID string
		err := tx.QueryRowContext(ctx, db.q(`SELECT client_id FROM applications WHERE org_id = ? AND id = ?`), orgID, id).Scan(&clientID)
		if err != nil {
			return db.wrap("set application secret", err)
		}
		sealed, err := db.seal.seal(secret, applicationAD(id, orgID, clientID))
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, db.q(`UPDATE applications SET client_secret = ?, updated_at = ? WHERE org_id = ? AND id = ?`),
			sealed, micros(at), orgID, id)
		return db.wrap("set application secret", err)
	})
}

// DeleteApplication deletes the org's application and its login flows.
func (db *DB) DeleteApplication(ctx context.Context, orgID int64, id string) error {
	return db.tx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`DELETE FROM applications WHERE org_id = ? AND id = ?`), orgID, id)
		if err != nil {
			return db.wrap("delete application", err)
		}
		if err := affected(res, "application"); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, db.q(`DELETE FROM login_flows WHERE org_id = ? AND application_id = ?`), orgID, id)
		return db.wrap("delete application", err)
	})
}

// LoginFlowRetention is how long a login flow is kept after its expiry;
// older ones are purged now and then by CreateLoginFlow.
const LoginFlowRetention = time.Hour

const flowCols = `id, org_id, application_id, client_id, browser_hash, redirect_uri, state, nonce, code_challenge,
	user_id, mobile, amr, locale, challenge_id, expires_at, created_at, completed_at, method, code_hash, code_expires_at, code_used_at`

func scanFlow(row interface{ Scan(...any) error }) (store.LoginFlow, error) {
	var f store.LoginFlow
	var amr string
	var expires, created, completed, codeExpires, codeUsed int64
	if err := row.Scan(&f.ID, &f.OrgID, &f.ApplicationID, &f.ClientID, &f.BrowserHash, &f.RedirectURI, &f.State, &f.Nonce,
		&f.CodeChallenge, &f.UserID, &f.Mobile, &amr, &f.Locale, &f.ChallengeID, &expires, &created, &completed, &f.Method,
		&f.CodeHash, &codeExpires, &codeUsed); err != nil {
		return store.LoginFlow{}, err
	}
	if err := json.Unmarshal([]byte(amr), &f.AMR); err != nil {
		return store.LoginFlow{}, fmt.Errorf("login flow %s: amr: %w", f.ID, err)
	}
	f.ExpiresAt, f.CreatedAt, f.CompletedAt = fromMicros(expires), fromMicros(created), fromMicros(completed)
	f.CodeExpiresAt, f.CodeUsedAt = fromMicros(codeExpires), fromMicros(codeUsed)
	return f, nil
}

// CreateLoginFlow stores f, without a code.
func (db *DB) CreateLoginFlow(ctx context.Context, f store.LoginFlow) error {
	if f.CreatedAt.IsZero() {
		f.CreatedAt = db.nowUTC()
	}
	if f.BrowserHash == nil {
		f.BrowserHash = []byte{}
	}
	_, err := db.exec(ctx, db.q(`INSERT INTO login_flows (`+flowCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, '', NULL, 0, 0)`),
		f.ID, f.OrgID, f.ApplicationID, f.ClientID, f.BrowserHash, f.RedirectURI, f.State, f.Nonce, f.CodeChallenge,
		f.UserID, f.Mobile, jsonList(f.AMR), f.Locale, f.ChallengeID, micros(f.ExpiresAt), micros(f.CreatedAt))
	if err != nil {
		return db.wrap("create login flow", err)
	}
	if db.flowPurge.due(f.CreatedAt) {
		// Best effort: a flow past its expiry by LoginFlowRetention can
		// neither continue nor have a redeemable code.
		_, _ = db.exec(ctx, db.q(`DELETE FROM login_flows WHERE expires_at < ?`),
			micros(f.CreatedAt.Add(-LoginFlowRetention)))
	}
	return nil
}

// GetLoginFlow returns the flow id.
func (db *DB) GetLoginFlow(ctx context.Context, id string) (store.LoginFlow, error) {
	f, err := scanFlow(db.r.QueryRowContext(ctx, db.q(`SELECT `+flowCols+` FROM login_flows WHERE id = ?`), id))
	return f, db.wrap("login flow", err)
}

// flowUpdate runs a conditional UPDATE of the flow id: ErrNotFound when
// the flow does not exist, ErrPrecondition when the condition failed.
func (db *DB) flowUpdate(ctx context.Context, what, id, query string, args ...any) error {
	res, err := db.exec(ctx, db.q(query), args...)
	if err != nil {
		return db.wrap(what, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return db.wrap(what, err)
	} else if n == 1 {
		return nil
	}
	var one int
	err = db.writeRow(ctx, db.q(`SELECT 1 FROM login_flows WHERE id = ?`), id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	if err != nil {
		return db.wrap(what, err)
	}
	return fmt.Errorf("%s: %w", what, store.ErrPrecondition)
}

// SetLoginFlowChallenge records the flow's first challenge.
func (db *DB) SetLoginFlowChallenge(ctx context.Context, id, challengeID string) error {
	return db.flowUpdate(ctx, "set login flow challenge", id,
		`UPDATE login_flows SET challenge_id = ? WHERE id = ? AND challenge_id = '' AND completed_at = 0`, challengeID, id)
}

// CompleteLoginFlow completes the flow and installs its code.
func (db *DB) CompleteLoginFlow(ctx context.Context, id, method string, at time.Time, codeHash []byte, codeExpiresAt time.Time) error {
	var hash any // NULL without a code: the unique index ignores NULLs
	if len(codeHash) > 0 {
		hash = codeHash
	}
	return db.flowUpdate(ctx, "complete login flow", id,
		`UPDATE login_flows SET completed_at = ?, method = ?, code_hash = ?, code_expires_at = ? WHERE id = ? AND completed_at = 0`,
		micros(at), method, hash, micros(codeExpiresAt), id)
}

// RedeemAuthorizationCode uses the code of codeHash once.
func (db *DB) RedeemAuthorizationCode(ctx context.Context, codeHash []byte, now time.Time) (store.LoginFlow, error) {
	res, err := db.exec(ctx, db.q(`UPDATE login_flows SET code_used_at = ?
		WHERE code_hash = ? AND code_used_at = 0 AND code_expires_at > ?`), micros(now), codeHash, micros(now))
	if err != nil {
		return store.LoginFlow{}, db.wrap("redeem authorization code", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return store.LoginFlow{}, db.wrap("redeem authorization code", err)
	}
	f, err := scanFlow(db.writeRow(ctx, db.q(`SELECT `+flowCols+` FROM login_flows WHERE code_hash = ?`), codeHash))
	if err != nil {
		return store.LoginFlow{}, db.wrap("redeem authorization code", err)
	}
	if n != 1 {
		return store.LoginFlow{}, fmt.Errorf("redeem authorization code: %w", store.ErrPrecondition)
	}
	return f, nil
}
