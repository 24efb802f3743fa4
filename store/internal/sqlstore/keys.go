package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/otphub/otphub/store"
)

func dataKeyAD(name string) string { return "data_keys.sealed\x00" + name }

// DataKey returns the data key stored under name, storing initial()'s
// first. ON CONFLICT DO NOTHING lets concurrent first calls race safely:
// each reads back the one row that won.
func (db *DB) DataKey(ctx context.Context, name string, initial func() ([]byte, error)) ([]byte, error) {
	get := func() ([]byte, error) {
		var sealed []byte
		if err := db.writeRow(ctx, db.q(`SELECT sealed FROM data_keys WHERE name = ?`), name).Scan(&sealed); err != nil {
			return nil, err
		}
		key, err := db.seal.open(sealed, dataKeyAD(name))
		if err != nil {
			return nil, fmt.Errorf("store: data key %q: %w", name, err)
		}
		return key, nil
	}
	key, err := get()
	if !errors.Is(err, sql.ErrNoRows) {
		return key, db.wrap("data key", err)
	}
	key, err = initial()
	if err != nil {
		return nil, fmt.Errorf("store: data key %q: %w", name, err)
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("store: data key %q: empty", name)
	}
	sealed, err := db.seal.seal(key, dataKeyAD(name))
	if err != nil {
		return nil, err
	}
	if _, err := db.exec(ctx, db.q(`INSERT INTO data_keys (name, sealed, created_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO NOTHING`), name, sealed, micros(db.now())); err != nil {
		return nil, db.wrap("data key", err)
	}
	key, err = get()
	return key, db.wrap("data key", err)
}

// sealedColumn is one column of sealed values and what its rows' additional
// data is made of.
type sealedColumn struct {
	table, column string
	key           []string // identifies a row: ORDER BY and UPDATE … WHERE
	extra         []string // further columns the additional data needs
	ad            func(v []string) string
}

// sealedColumns lists every sealed value in the schema; a new sealed
// column must be added here or rotation leaves it behind (the storetest
// rotation check writes one of each kind).
var sealedColumns = []sealedColumn{
	{table: "signing_keys", column: "private_key", key: []string{"kid"},
		ad: func(v []string) string { return signingKeyAD(v[0]) }},
	{table: "sms_providers", column: "config", key: []string{"org_id", "slot"},
		ad: func(v []string) string { return providerAD(mustInt(v[0]), v[1]) }},
	{table: "subscriptions", column: "secret", key: []string{"id"}, extra: []string{"org_id", "topic", "callback"},
		ad: func(v []string) string { return subscriptionAD(mustInt(v[1]), v[2], v[3]) }},
	{table: "subscriptions", column: "previous_secret", key: []string{"id"}, extra: []string{"org_id", "topic", "callback"},
		ad: func(v []string) string { return previousSecretAD(mustInt(v[1]), v[2], v[3]) }},
	{table: "data_keys", column: "sealed", key: []string{"name"},
		ad: func(v []string) string { return dataKeyAD(v[0]) }},
	{table: "delivery_tasks", column: "event", key: []string{"id"},
		ad: func(v []string) string { return eventAD(v[0]) }},
	{table: "applications", column: "client_secret", key: []string{"id"}, extra: []string{"org_id", "client_id"},
		ad: func(v []string) string { return applicationAD(v[0], mustInt(v[1]), v[2]) }},
}

func mustInt(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// resealBatch is how many values one transaction re-encrypts.
const resealBatch = 200

// Reseal re-encrypts, under the current key, every sealed value that is
// not under it yet. Values under the current key start with its prefix
// (format and key id), so the database finds the others itself; the pass
// pages through them in key order (keyset pagination: each batch starts
// after the last key seen, so a large table costs one scan, and values it
// cannot or may not reseal are simply passed). Each update is conditional
// on the value being unchanged, so a concurrent write (or another replica
// resealing) is never overwritten; a value changed meanwhile is left for
// the next pass and counted in Remaining.
func (db *DB) Reseal(ctx context.Context) (store.ResealResult, error) {
	var res store.ResealResult
	if db.seal.hasNext {
		// Values already sealed under the next key (by processes that
		// made it current) must not be moved back to this one.
		return res, errors.New("store: reseal: a next encryption key is configured; nothing is resealed until it is the current key")
	}
	prefix := db.seal.currentPrefix()
	for _, c := range sealedColumns {
		stale := fmt.Sprintf(`length(%[1]s) > 0 AND substr(%[1]s, 1, %[2]d) <> ?`, c.column, len(prefix))
		cols := strings.Join(append(append(append([]string(nil), c.key...), c.extra...), c.column), ", ")
		keys := strings.Join(c.key, ", ")
		first := db.q(fmt.Sprintf(`SELECT %s FROM %s WHERE %s ORDER BY %s LIMIT ?`, cols, c.table, stale, keys))
		next := db.q(fmt.Sprintf(`SELECT %s FROM %s WHERE %s AND (%s) > (%s) ORDER BY %s LIMIT ?`,
			cols, c.table, stale, keys, strings.TrimSuffix(strings.Repeat("?, ", len(c.key)), ", "), keys))
		where := make([]string, len(c.key))
		for i, k := range c.key {
			where[i] = k + " = ?"
		}
		upd := db.q(fmt.Sprintf(`UPDATE %s SET %s = ? WHERE %s AND %s = ?`, c.table, c.column, strings.Join(where, " AND "), c.column))
		var after []string // key of the last row of the previous batch
		for {
			args := []any{prefix}
			query := first
			if after != nil {
				query = next
				for _, v := range after {
					args = append(args, v)
				}
			}
			rows, err := db.batch(ctx, query, len(c.key)+len(c.extra), append(args, resealBatch)...)
			if err != nil {
				return res, fmt.Errorf("store: reseal %s.%s: %w", c.table, c.column, err)
			}
			if len(rows) == 0 {
				break
			}
			after = rows[len(rows)-1].vals[:len(c.key)]
			// Counted inside the transaction, which may run more than once.
			var resealed, failed int64
			err = db.tx(ctx, func(tx *Tx) error {
				resealed, failed = 0, 0
				for _, r := range rows {
					out, ok, err := db.seal.reseal(r.sealed, c.ad(r.vals))
					if err != nil {
						failed++
						continue
					}
					if !ok {
						continue
					}
					args := []any{out}
					for _, v := range r.vals[:len(c.key)] {
						args = append(args, v)
					}
					n, err := tx.ExecContext(ctx, upd, append(args, r.sealed)...)
					if err != nil {
						return err
					}
					if k, _ := n.RowsAffected(); k == 1 {
						resealed++
					}
				}
				return nil
			})
			if err != nil {
				return res, fmt.Errorf("store: reseal %s.%s: %w", c.table, c.column, db.wrap("update", err))
			}
			res.Resealed += resealed
			res.Unreadable += failed
		}
		var left int64
		if err := db.r.QueryRowContext(ctx, db.q(`SELECT COUNT(*) FROM `+c.table+` WHERE `+stale), prefix).Scan(&left); err != nil {
			return res, fmt.Errorf("store: reseal %s.%s: %w", c.table, c.column, db.wrap("count", err))
		}
		res.Remaining += left
	}
	return res, nil
}

type sealedRow struct {
	vals   []string
	sealed []byte
}

func (db *DB) batch(ctx context.Context, query string, nvals int, args ...any) ([]sealedRow, error) {
	rows, err := db.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []sealedRow
	for rows.Next() {
		r := sealedRow{vals: make([]string, nvals)}
		dest := make([]any, nvals+1)
		for i := range r.vals {
			dest[i] = &r.vals[i]
		}
		dest[nvals] = &r.sealed
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
