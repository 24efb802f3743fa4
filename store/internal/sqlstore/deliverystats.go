package sqlstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/otphub/otphub/store"
)

// statsTasks selects the tasks OrgDeliveryStats counts (org, window of
// creation), through the index delivery_tasks_org (org_id, created_at, id);
// its three arguments follow the hour's one (statsHour).
const statsTasks = ` t.org_id = ? AND t.created_at >= ? AND t.created_at < ?`

// statsHour is the hour of the window a task counts in; its argument is
// the window's start.
const statsHour = `(t.created_at - ?) / 3600000000`

// receiptOfTask joins a task's receipt record by its primary key.
const receiptOfTask = ` JOIN sms_receipts r ON r.org_id = t.org_id AND r.event_id = t.event_id
	AND r.destination_type = t.destination_type AND r.destination_id = t.destination_id`

// latencyBucket is the SQL of the LatencyBounds bucket of lat (microseconds).
var latencyBucket = func() string {
	var b strings.Builder
	b.WriteString("CASE")
	for i, bound := range store.LatencyBounds {
		fmt.Fprintf(&b, " WHEN lat < %d THEN %d", bound.Microseconds(), i)
	}
	b.WriteString(" ELSE " + strconv.Itoa(len(store.LatencyBounds)) + " END")
	return b.String()
}()

// OrgDeliveryStats is four GROUP BYs over one org's tasks of a bounded
// window (by hour, and by status, handset state or latency bucket), each
// returning at most a few rows per hour: the attempt log is read through
// delivery_attempts_task and receipt records by their primary key, and
// latencies are bucketed in SQL, never loaded one per task.
func (db *DB) OrgDeliveryStats(ctx context.Context, orgID int64, since, until time.Time) (store.OrgDeliveryStats, error) {
	if !until.After(since) || until.Sub(since) > store.MaxStatsWindow {
		return store.OrgDeliveryStats{}, fmt.Errorf("store: delivery stats: window %v to %v: want a positive one of at most %v", since, until, store.MaxStatsWindow)
	}
	since = since.UTC().Truncate(time.Microsecond)
	n := int((until.Sub(since) + time.Hour - 1) / time.Hour)
	out := store.OrgDeliveryStats{Hours: make([]store.DeliveryHourStats, n)}
	for i := range out.Hours {
		out.Hours[i].Start = since.Add(time.Duration(i) * time.Hour)
	}
	hour := func(h int64) *store.DeliveryHourStats {
		if h < 0 || h >= int64(n) {
			return nil
		}
		return &out.Hours[h]
	}
	window := []any{micros(since), orgID, micros(since), micros(until)}

	// Outcomes, by destination kind and status.
	err := db.statsRows(ctx, "delivery stats", `SELECT `+statsHour+`, CASE WHEN t.destination_type = 'webhook' THEN 1 ELSE 0 END,
		t.status, COUNT(*) FROM delivery_tasks t WHERE`+statsTasks+` GROUP BY 1, 2, 3`, window,
		func(scan func(...any) error) error {
			var h, webhook, count int64
			var status string
			if err := scan(&h, &webhook, &status, &count); err != nil {
				return err
			}
			if hs := hour(h); hs != nil {
				o := &hs.SMS
				if webhook == 1 {
					o = &hs.Webhook
				}
				switch status {
				case store.DeliveryDelivered:
					o.Delivered += count
				case store.DeliveryPending:
					o.Pending += count
				default:
					o.Failed += count
				}
			}
			return nil
		})
	if err != nil {
		return store.OrgDeliveryStats{}, err
	}

	// What receipts said of the SMS deliveries.
	err = db.statsRows(ctx, "delivery stats by handset", `SELECT `+statsHour+`, r.state, COUNT(*)
		FROM delivery_tasks t`+receiptOfTask+` WHERE`+statsTasks+` AND t.destination_type <> 'webhook' GROUP BY 1, 2`, window,
		func(scan func(...any) error) error {
			var h, count int64
			var state string
			if err := scan(&h, &state, &count); err != nil {
				return err
			}
			if hs := hour(h); hs != nil {
				hs.Handset.Records += count
				switch state {
				case store.HandsetDelivered:
					hs.Handset.Delivered += count
				case store.HandsetUndelivered, store.HandsetFailed:
					hs.Handset.Failed += count
				default:
					hs.Handset.Awaiting += count
				}
			}
			return nil
		})
	if err != nil {
		return store.OrgDeliveryStats{}, err
	}

	// Webhook latency: the first attempt's start to the end of the first
	// successful one, per delivered task (its attempts by task_id).
	err = db.latencyRows(ctx, "webhook latency", `SELECT `+statsHour+` AS h,
		MIN(CASE WHEN a.outcome = 'success' THEN a.started_at + a.duration_us END) - MIN(a.started_at) AS lat
		FROM delivery_tasks t JOIN delivery_attempts a ON a.task_id = t.id
		WHERE`+statsTasks+` AND t.destination_type = 'webhook' AND t.status = 'delivered'
		GROUP BY t.id, t.created_at`, window, func(h int64) *store.LatencyHistogram {
		if hs := hour(h); hs != nil {
			return &hs.WebhookLatency
		}
		return nil
	})
	if err != nil {
		return store.OrgDeliveryStats{}, err
	}

	// Handset latency: the provider's acceptance to the handset's receipt.
	err = db.latencyRows(ctx, "handset latency", `SELECT `+statsHour+` AS h, r.delivered_at - r.accepted_at AS lat
		FROM delivery_tasks t`+receiptOfTask+` WHERE`+statsTasks+` AND t.destination_type <> 'webhook'
		AND r.state = 'delivered' AND r.accepted_at <> 0 AND r.delivered_at <> 0`, window, func(h int64) *store.LatencyHistogram {
		if hs := hour(h); hs != nil {
			return &hs.HandsetLatency
		}
		return nil
	})
	if err != nil {
		return store.OrgDeliveryStats{}, err
	}
	return out, nil
}

// statsRows runs query and hands each row's Scan to row.
func (db *DB) statsRows(ctx context.Context, op, query string, args []any, row func(scan func(...any) error) error) error {
	rows, err := db.r.QueryContext(ctx, db.q(query), args...)
	if err != nil {
		return db.wrap(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows.Scan); err != nil {
			return db.wrap(op, err)
		}
	}
	return db.wrap(op, rows.Err())
}

// latencyRows buckets the latencies of inner (columns h, the hour, and
// lat, microseconds; NULL lat is left out) by hour and LatencyBounds
// bucket into the histogram of each hour that hist returns.
func (db *DB) latencyRows(ctx context.Context, op, inner string, args []any, hist func(h int64) *store.LatencyHistogram) error {
	return db.statsRows(ctx, op, `SELECT h, `+latencyBucket+`, COUNT(*), MIN(lat), MAX(lat) FROM (`+inner+`) d
		WHERE lat IS NOT NULL GROUP BY 1, 2`, args, func(scan func(...any) error) error {
		var h, bucket, count, lo, hi int64
		if err := scan(&h, &bucket, &count, &lo, &hi); err != nil {
			return err
		}
		hh := hist(h)
		if hh == nil || bucket < 0 || bucket > int64(len(store.LatencyBounds)) {
			return nil
		}
		if *hh == nil {
			*hh = make(store.LatencyHistogram, len(store.LatencyBounds)+1)
		}
		(*hh)[bucket].AddBucket(store.LatencyBucket{Count: count,
			Min: max(0, time.Duration(lo)*time.Microsecond), Max: max(0, time.Duration(hi)*time.Microsecond)})
		return nil
	})
}
