package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/otphub/otphub/store"
)

// CreateOrg stores a new org; ErrConflict on a duplicate name.
func (db *DB) CreateOrg(ctx context.Context, name string) (store.Org, error) {
	o := store.Org{Name: name, CreatedAt: db.nowUTC()}
	err := db.writeRow(ctx, db.q(`INSERT INTO orgs (name, created_at) VALUES (?, ?) RETURNING id`),
		name, micros(o.CreatedAt)).Scan(&o.ID)
	if err != nil {
		return store.Org{}, db.wrap("create org "+name, err)
	}
	return o, nil
}

const orgCols = `id, name, created_at`

func scanOrg(row interface{ Scan(...any) error }) (store.Org, error) {
	var o store.Org
	var created int64
	if err := row.Scan(&o.ID, &o.Name, &created); err != nil {
		return store.Org{}, err
	}
	o.CreatedAt = fromMicros(created)
	return o, nil
}

// GetOrg returns the org named name.
func (db *DB) GetOrg(ctx context.Context, name string) (store.Org, error) {
	o, err := scanOrg(db.r.QueryRowContext(ctx, db.q(`SELECT `+orgCols+` FROM orgs WHERE name = ?`), name))
	return o, db.wrap("org "+name, err)
}

// GetOrgByID returns the org with id.
func (db *DB) GetOrgByID(ctx context.Context, id int64) (store.Org, error) {
	o, err := scanOrg(db.r.QueryRowContext(ctx, db.q(`SELECT `+orgCols+` FROM orgs WHERE id = ?`), id))
	return o, db.wrap(fmt.Sprintf("org %d", id), err)
}

// ListOrgs returns every org, by ID.
func (db *DB) ListOrgs(ctx context.Context) ([]store.Org, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+orgCols+` FROM orgs ORDER BY id`)
	if err != nil {
		return nil, db.wrap("list orgs", err)
	}
	defer rows.Close()
	var out []store.Org
	for rows.Next() {
		o, err := scanOrg(rows)
		if err != nil {
			return nil, db.wrap("list orgs", err)
		}
		out = append(out, o)
	}
	return out, db.wrap("list orgs", rows.Err())
}

// CreateClient stores an OAuth client; ErrConflict on a duplicate ClientID.
func (db *DB) CreateClient(ctx context.Context, c store.Client) error {
	if c.ClientID == "" {
		return fmt.Errorf("store: create client: empty client ID")
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = db.nowUTC()
	}
	scopes := c.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	js, err := json.Marshal(scopes)
	if err != nil {
		return fmt.Errorf("store: create client: %w", err)
	}
	hash := c.SecretHash
	if hash == nil {
		hash = []byte{}
	}
	_, err = db.exec(ctx, db.q(`INSERT INTO clients (client_id, org_id, name, secret_hash, scopes, platform_admin, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`),
		c.ClientID, c.OrgID, c.Name, hash, string(js), c.PlatformAdmin, micros(c.CreatedAt))
	return db.wrap("create client", err)
}

const clientCols = `client_id, org_id, name, secret_hash, scopes, platform_admin, created_at`

func scanClient(row interface{ Scan(...any) error }) (store.Client, error) {
	var c store.Client
	var scopes string
	var created int64
	if err := row.Scan(&c.ClientID, &c.OrgID, &c.Name, &c.SecretHash, &scopes, &c.PlatformAdmin, &created); err != nil {
		return store.Client{}, err
	}
	if err := json.Unmarshal([]byte(scopes), &c.Scopes); err != nil {
		return store.Client{}, fmt.Errorf("client %s scopes: %w", c.ClientID, err)
	}
	c.CreatedAt = fromMicros(created)
	return c, nil
}

// GetClient returns the client with clientID (of any org: the token
// endpoint looks clients up before it knows their org).
func (db *DB) GetClient(ctx context.Context, clientID string) (store.Client, error) {
	c, err := scanClient(db.r.QueryRowContext(ctx, db.q(`SELECT `+clientCols+` FROM clients WHERE client_id = ?`), clientID))
	return c, db.wrap("client", err)
}

// ListClients returns the org's clients (orgID 0: the platform clients).
func (db *DB) ListClients(ctx context.Context, orgID int64) ([]store.Client, error) {
	rows, err := db.r.QueryContext(ctx, db.q(`SELECT `+clientCols+` FROM clients WHERE org_id = ? ORDER BY created_at, client_id`), orgID)
	if err != nil {
		return nil, db.wrap("list clients", err)
	}
	defer rows.Close()
	var out []store.Client
	for rows.Next() {
		c, err := scanClient(rows)
		if err != nil {
			return nil, db.wrap("list clients", err)
		}
		out = append(out, c)
	}
	return out, db.wrap("list clients", rows.Err())
}

// DeleteClient deletes the org's client; ErrNotFound when it has none so named.
func (db *DB) DeleteClient(ctx context.Context, orgID int64, clientID string) error {
	res, err := db.exec(ctx, db.q(`DELETE FROM clients WHERE org_id = ? AND client_id = ?`), orgID, clientID)
	if err != nil {
		return db.wrap("delete client", err)
	}
	return db.wrap("delete client", affected(res, "client"))
}

// CountPlatformAdmins counts platform admin clients.
func (db *DB) CountPlatformAdmins(ctx context.Context) (int, error) {
	var n int
	err := db.r.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM clients WHERE platform_admin = ?`), true).Scan(&n)
	return n, db.wrap("count platform admins", err)
}

// InsertSigningKey stores a signing key, its private key sealed;
// ErrConflict on a duplicate KID.
func (db *DB) InsertSigningKey(ctx context.Context, k store.SigningKey) error {
	if k.KID == "" {
		return fmt.Errorf("store: insert signing key: empty kid")
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = db.nowUTC()
	}
	sealed, err := db.seal.seal(k.PrivateKey, signingKeyAD(k.KID))
	if err != nil {
		return err
	}
	_, err = db.exec(ctx, db.q(`INSERT INTO signing_keys (kid, algorithm, private_key, created_at, retired_at) VALUES (?, ?, ?, ?, ?)`),
		k.KID, k.Algorithm, sealed, micros(k.CreatedAt), micros(k.RetiredAt))
	return db.wrap("insert signing key", err)
}

func signingKeyAD(kid string) string { return "signing_keys.private_key\x00" + kid }

// ListSigningKeys returns every signing key, newest first.
func (db *DB) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT kid, algorithm, private_key, created_at, retired_at FROM signing_keys`)
	if err != nil {
		return nil, db.wrap("list signing keys", err)
	}
	defer rows.Close()
	var out []store.SigningKey
	for rows.Next() {
		var k store.SigningKey
		var sealed []byte
		var created, retired int64
		if err := rows.Scan(&k.KID, &k.Algorithm, &sealed, &created, &retired); err != nil {
			return nil, db.wrap("list signing keys", err)
		}
		if k.PrivateKey, err = db.seal.open(sealed, signingKeyAD(k.KID)); err != nil {
			return nil, fmt.Errorf("signing key %s: %w", k.KID, err)
		}
		k.CreatedAt, k.RetiredAt = fromMicros(created), fromMicros(retired)
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, db.wrap("list signing keys", err)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].KID > out[j].KID
	})
	return out, nil
}

// RetireSigningKey stamps the key retired at at.
func (db *DB) RetireSigningKey(ctx context.Context, kid string, at time.Time) error {
	res, err := db.exec(ctx, db.q(`UPDATE signing_keys SET retired_at = ? WHERE kid = ?`), micros(at), kid)
	if err != nil {
		return db.wrap("retire signing key", err)
	}
	return db.wrap("retire signing key", affected(res, "signing key "+kid))
}

// DeleteSigningKey deletes the key; ErrNotFound when there is none.
func (db *DB) DeleteSigningKey(ctx context.Context, kid string) error {
	res, err := db.exec(ctx, db.q(`DELETE FROM signing_keys WHERE kid = ?`), kid)
	if err != nil {
		return db.wrap("delete signing key", err)
	}
	return db.wrap("delete signing key", affected(res, "signing key "+kid))
}
