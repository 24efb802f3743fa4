package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/otphub/otphub/store"
)

// sessionRetention is how long after its absolute end a console session
// row may linger before a CreateConsoleSession purges it.
const sessionRetention = 24 * time.Hour

// CreateInvitation stores inv.
func (db *DB) CreateInvitation(ctx context.Context, inv store.Invitation) (store.Invitation, error) {
	if len(inv.TokenHash) == 0 {
		return store.Invitation{}, errors.New("store: create invitation: empty token hash")
	}
	if inv.CreatedAt.IsZero() {
		inv.CreatedAt = db.nowUTC()
	}
	err := db.writeRow(ctx, db.q(`INSERT INTO console_invitations (token_hash, email, org_id, created_by, expires_at, used_at, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		inv.TokenHash, inv.Email, inv.OrgID, inv.CreatedBy, micros(inv.ExpiresAt), micros(inv.UsedAt), micros(inv.CreatedAt)).Scan(&inv.ID)
	if err != nil {
		return store.Invitation{}, db.wrap("create invitation", err)
	}
	return inv, nil
}

const invitationCols = `id, token_hash, email, org_id, created_by, expires_at, used_at, created_at`

func scanInvitation(row interface{ Scan(...any) error }) (store.Invitation, error) {
	var inv store.Invitation
	var exp, used, created int64
	if err := row.Scan(&inv.ID, &inv.TokenHash, &inv.Email, &inv.OrgID, &inv.CreatedBy, &exp, &used, &created); err != nil {
		return store.Invitation{}, err
	}
	inv.ExpiresAt, inv.UsedAt, inv.CreatedAt = fromMicros(exp), fromMicros(used), fromMicros(created)
	return inv, nil
}

// GetInvitation returns the invitation with tokenHash.
func (db *DB) GetInvitation(ctx context.Context, tokenHash []byte) (store.Invitation, error) {
	inv, err := scanInvitation(db.r.QueryRowContext(ctx, db.q(`SELECT `+invitationCols+` FROM console_invitations WHERE token_hash = ?`), tokenHash))
	return inv, db.wrap("invitation", err)
}

// ListInvitations returns the open invitations at now, newest first.
func (db *DB) ListInvitations(ctx context.Context, now time.Time) ([]store.Invitation, error) {
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT `+invitationCols+` FROM console_invitations
		WHERE used_at = 0 AND expires_at > ? ORDER BY id DESC`), micros(now))
	if err != nil {
		return nil, db.wrap("list invitations", err)
	}
	defer rows.Close()
	var out []store.Invitation
	for rows.Next() {
		inv, err := scanInvitation(rows)
		if err != nil {
			return nil, db.wrap("list invitations", err)
		}
		out = append(out, inv)
	}
	return out, db.wrap("list invitations", rows.Err())
}

// AcceptInvitation consumes the invitation and creates its user atomically.
func (db *DB) AcceptInvitation(ctx context.Context, tokenHash []byte, now time.Time, u store.ConsoleUser) (store.ConsoleUser, error) {
	err := db.tx(ctx, func(tx *Tx) error {
		inv, err := scanInvitation(tx.QueryRowContext(ctx, db.q(`SELECT `+invitationCols+` FROM console_invitations WHERE token_hash = ?`), tokenHash))
		if err != nil {
			return db.wrap("invitation", err)
		}
		res, err := tx.ExecContext(ctx, db.q(`UPDATE console_invitations SET used_at = ? WHERE id = ? AND used_at = 0 AND expires_at > ?`),
			micros(now), inv.ID, micros(now))
		if err != nil {
			return db.wrap("accept invitation", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return db.wrap("accept invitation", err)
		} else if n == 0 {
			return fmt.Errorf("invitation used or expired: %w", store.ErrPrecondition)
		}
		if inv.Email != "" {
			u.Email = inv.Email
		} else {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM console_users WHERE org_id = 0`).Scan(&n); err != nil {
				return db.wrap("accept invitation", err)
			}
			if n > 0 {
				return fmt.Errorf("setup invitation after the first platform admin: %w", store.ErrPrecondition)
			}
		}
		if u.Email == "" {
			return errors.New("store: accept invitation: no email")
		}
		u.OrgID = inv.OrgID
		if u.CreatedAt.IsZero() {
			u.CreatedAt = now.UTC().Truncate(time.Microsecond)
		}
		err = tx.QueryRowContext(ctx, db.q(`INSERT INTO console_users (email, org_id, name, password_hash, mobile, created_at)
			VALUES (?, ?, ?, ?, ?, ?) RETURNING id`),
			u.Email, u.OrgID, u.Name, u.PasswordHash, u.Mobile, micros(u.CreatedAt)).Scan(&u.ID)
		return db.wrap("create console user", err)
	})
	if err != nil {
		return store.ConsoleUser{}, err
	}
	return u, nil
}

const consoleUserCols = `id, email, org_id, name, password_hash, mobile, created_at`

func scanConsoleUser(row interface{ Scan(...any) error }) (store.ConsoleUser, error) {
	var u store.ConsoleUser
	var created int64
	if err := row.Scan(&u.ID, &u.Email, &u.OrgID, &u.Name, &u.PasswordHash, &u.Mobile, &created); err != nil {
		return store.ConsoleUser{}, err
	}
	u.CreatedAt = fromMicros(created)
	return u, nil
}

// GetConsoleUser returns the user with id.
func (db *DB) GetConsoleUser(ctx context.Context, id int64) (store.ConsoleUser, error) {
	u, err := scanConsoleUser(db.r.QueryRowContext(ctx, db.q(`SELECT `+consoleUserCols+` FROM console_users WHERE id = ?`), id))
	return u, db.wrap("console user", err)
}

// GetConsoleUserByEmail returns the user with email.
func (db *DB) GetConsoleUserByEmail(ctx context.Context, email string) (store.ConsoleUser, error) {
	u, err := scanConsoleUser(db.r.QueryRowContext(ctx, db.q(`SELECT `+consoleUserCols+` FROM console_users WHERE email = ?`), email))
	return u, db.wrap("console user", err)
}

// ListConsoleUsers returns every console user, by ID.
func (db *DB) ListConsoleUsers(ctx context.Context) ([]store.ConsoleUser, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+consoleUserCols+` FROM console_users ORDER BY id`)
	if err != nil {
		return nil, db.wrap("list console users", err)
	}
	defer rows.Close()
	var out []store.ConsoleUser
	for rows.Next() {
		u, err := scanConsoleUser(rows)
		if err != nil {
			return nil, db.wrap("list console users", err)
		}
		out = append(out, u)
	}
	return out, db.wrap("list console users", rows.Err())
}

// CountConsolePlatformAdmins counts console users of no org.
func (db *DB) CountConsolePlatformAdmins(ctx context.Context) (int, error) {
	var n int
	err := db.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM console_users WHERE org_id = 0`).Scan(&n)
	return n, db.wrap("count console platform admins", err)
}

// SetConsolePassword replaces the hash and ends the user's other sessions.
func (db *DB) SetConsolePassword(ctx context.Context, userID int64, hash string, keepSession []byte) error {
	return db.tx(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, db.q(`UPDATE console_users SET password_hash = ? WHERE id = ?`), hash, userID)
		if err != nil {
			return db.wrap("set console password", err)
		}
		if err := affected(res, "console user"); err != nil {
			return err
		}
		if keepSession == nil {
			keepSession = []byte{}
		}
		_, err = tx.ExecContext(ctx, db.q(`DELETE FROM console_sessions WHERE user_id = ? AND id_hash <> ?`), userID, keepSession)
		return db.wrap("end console sessions", err)
	})
}

// DeleteConsoleUser removes the user and their sessions.
func (db *DB) DeleteConsoleUser(ctx context.Context, userID int64) error {
	return db.tx(ctx, func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, db.q(`DELETE FROM console_sessions WHERE user_id = ?`), userID); err != nil {
			return db.wrap("delete console sessions", err)
		}
		res, err := tx.ExecContext(ctx, db.q(`DELETE FROM console_users WHERE id = ?`), userID)
		if err != nil {
			return db.wrap("delete console user", err)
		}
		return affected(res, "console user")
	})
}

// CreateConsoleSession stores s, purging long-ended sessions now and then.
func (db *DB) CreateConsoleSession(ctx context.Context, s store.ConsoleSession) error {
	if db.sessionPurge.due(s.CreatedAt) {
		// Best effort: a failed purge is simply done again next time.
		_, _ = db.exec(ctx, db.q(`DELETE FROM console_sessions WHERE expires_at < ?`), micros(s.CreatedAt.Add(-sessionRetention)))
	}
	_, err := db.exec(ctx, db.q(`INSERT INTO console_sessions (id_hash, user_id, created_at, last_seen_at, expires_at, ip)
		VALUES (?, ?, ?, ?, ?, ?)`), s.IDHash, s.UserID, micros(s.CreatedAt), micros(s.LastSeenAt), micros(s.ExpiresAt), s.IP)
	return db.wrap("create console session", err)
}

// GetConsoleSession returns the session with idHash.
func (db *DB) GetConsoleSession(ctx context.Context, idHash []byte) (store.ConsoleSession, error) {
	var s store.ConsoleSession
	var created, seen, exp int64
	err := db.r.QueryRowContext(ctx, db.q(`SELECT id_hash, user_id, created_at, last_seen_at, expires_at, ip FROM console_sessions WHERE id_hash = ?`), idHash).
		Scan(&s.IDHash, &s.UserID, &created, &seen, &exp, &s.IP)
	if err != nil {
		return store.ConsoleSession{}, db.wrap("console session", err)
	}
	s.CreatedAt, s.LastSeenAt, s.ExpiresAt = fromMicros(created), fromMicros(seen), fromMicros(exp)
	return s, nil
}

// TouchConsoleSession records activity at now.
func (db *DB) TouchConsoleSession(ctx context.Context, idHash []byte, now time.Time) error {
	res, err := db.exec(ctx, db.q(`UPDATE console_sessions SET last_seen_at = ? WHERE id_hash = ?`), micros(now), idHash)
	if err != nil {
		return db.wrap("touch console session", err)
	}
	return affected(res, "console session")
}

// DeleteConsoleSession ends one session.
func (db *DB) DeleteConsoleSession(ctx context.Context, idHash []byte) error {
	res, err := db.exec(ctx, db.q(`DELETE FROM console_sessions WHERE id_hash = ?`), idHash)
	if err != nil {
		return db.wrap("delete console session", err)
	}
	return affected(res, "console session")
}

// DeleteConsoleSessions ends every session of the user.
func (db *DB) DeleteConsoleSessions(ctx context.Context, userID int64) (int, error) {
	res, err := db.exec(ctx, db.q(`DELETE FROM console_sessions WHERE user_id = ?`), userID)
	if err != nil {
		return 0, db.wrap("delete console sessions", err)
	}
	n, err := res.RowsAffected()
	return int(n), db.wrap("delete console sessions", err)
}

// AppendAudit appends e to the audit log.
func (db *DB) AppendAudit(ctx context.Context, e store.AuditEntry) error {
	if e.At.IsZero() {
		e.At = db.nowUTC()
	}
	_, err := db.exec(ctx, db.q(`INSERT INTO audit_log (at, org, actor, action, target, status, ip, request_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`), micros(e.At), e.Org, e.Actor, e.Action, e.Target, e.Status, e.IP, e.RequestID)
	return db.wrap("append audit entry", err)
}

// ListAudit returns audit entries, newest first.
func (db *DB) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	query := `SELECT id, at, org, actor, action, target, status, ip, request_id FROM audit_log WHERE 1 = 1`
	var args []any
	if !f.AllOrgs {
		query += ` AND org = ?`
		args = append(args, f.Org)
	}
	if f.BeforeID > 0 {
		query += ` AND id < ?`
		args = append(args, f.BeforeID)
	}
	query += ` ORDER BY id DESC LIMIT ?`
	args = append(args, limit)
	rows, err := db.r.QueryContext(ctx, db.q(query), args...)
	if err != nil {
		return nil, db.wrap("list audit log", err)
	}
	defer rows.Close()
	var out []store.AuditEntry
	for rows.Next() {
		var e store.AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.Org, &e.Actor, &e.Action, &e.Target, &e.Status, &e.IP, &e.RequestID); err != nil {
			return nil, db.wrap("list audit log", err)
		}
		e.At = fromMicros(at)
		out = append(out, e)
	}
	return out, db.wrap("list audit log", rows.Err())
}

// CreatePortalLink stores l.
func (db *DB) CreatePortalLink(ctx context.Context, l store.PortalLink) (store.PortalLink, error) {
	if len(l.TokenHash) == 0 {
		return store.PortalLink{}, errors.New("store: create portal link: empty token hash")
	}
	if l.CreatedAt.IsZero() {
		l.CreatedAt = db.nowUTC()
	}
	secs, err := json.Marshal(nonNil(l.Sections))
	if err != nil {
		return store.PortalLink{}, err
	}
	fas, err := json.Marshal(nonNil(l.FrameAncestors))
	if err != nil {
		return store.PortalLink{}, err
	}
	err = db.writeRow(ctx, db.q(`INSERT INTO console_portal_links (token_hash, org_id, sections, frame_ancestors, created_by, expires_at, used_at, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		l.TokenHash, l.OrgID, string(secs), string(fas), l.CreatedBy, micros(l.ExpiresAt), micros(l.UsedAt), micros(l.CreatedAt)).Scan(&l.ID)
	if err != nil {
		return store.PortalLink{}, db.wrap("create portal link", err)
	}
	return l, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

const portalLinkCols = `id, token_hash, org_id, sections, frame_ancestors, created_by, expires_at, used_at, created_at`

func scanPortalLink(row interface{ Scan(...any) error }) (store.PortalLink, error) {
	var l store.PortalLink
	var secs, fas string
	var exp, used, created int64
	if err := row.Scan(&l.ID, &l.TokenHash, &l.OrgID, &secs, &fas, &l.CreatedBy, &exp, &used, &created); err != nil {
		return store.PortalLink{}, err
	}
	if err := json.Unmarshal([]byte(secs), &l.Sections); err != nil {
		return store.PortalLink{}, fmt.Errorf("portal link %d sections: %w", l.ID, err)
	}
	if err := json.Unmarshal([]byte(fas), &l.FrameAncestors); err != nil {
		return store.PortalLink{}, fmt.Errorf("portal link %d frame ancestors: %w", l.ID, err)
	}
	l.ExpiresAt, l.UsedAt, l.CreatedAt = fromMicros(exp), fromMicros(used), fromMicros(created)
	return l, nil
}

// UsePortalLink consumes the link once.
func (db *DB) UsePortalLink(ctx context.Context, tokenHash []byte, now time.Time) (store.PortalLink, error) {
	var l store.PortalLink
	err := db.tx(ctx, func(tx *Tx) error {
		var err error
		l, err = scanPortalLink(tx.QueryRowContext(ctx, db.q(`SELECT `+portalLinkCols+` FROM console_portal_links WHERE token_hash = ?`), tokenHash))
		if err != nil {
			return db.wrap("portal link", err)
		}
		res, err := tx.ExecContext(ctx, db.q(`UPDATE console_portal_links SET used_at = ? WHERE id = ? AND used_at = 0 AND expires_at > ?`),
			micros(now), l.ID, micros(now))
		if err != nil {
			return db.wrap("use portal link", err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return db.wrap("use portal link", err)
		} else if n == 0 {
			return fmt.Errorf("portal link used or expired: %w", store.ErrPrecondition)
		}
		l.UsedAt = now.UTC().Truncate(time.Microsecond)
		return nil
	})
	if err != nil {
		return store.PortalLink{}, err
	}
	return l, nil
}

// GetPortalLink returns the org's link with id.
func (db *DB) GetPortalLink(ctx context.Context, orgID, id int64) (store.PortalLink, error) {
	l, err := scanPortalLink(db.r.QueryRowContext(ctx, db.q(`SELECT `+portalLinkCols+` FROM console_portal_links WHERE org_id = ? AND id = ?`), orgID, id))
	return l, db.wrap("portal link", err)
}
