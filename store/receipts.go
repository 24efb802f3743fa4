package store

import "time"

// HandsetRank orders handset states for merging out-of-order receipts: 0
// for an unknown state, queued 1, sent 2, undelivered and failed 3,
// delivered 4.
func HandsetRank(state string) int {
	switch state {
	case HandsetQueued:
		return 1
	case HandsetSent:
		return 2
	case HandsetUndelivered, HandsetFailed:
		return 3
	case HandsetDelivered:
		return 4
	}
	return 0
}

// HandsetFinal tells whether state ends an SMS's story.
func HandsetFinal(state string) bool { return HandsetRank(state) >= 3 }

// MergeReceipt applies rc to r and reports whether anything changed.
// The state moves only up in rank (a repeated or stale receipt changes
// nothing; of undelivered and failed, the first reported stays), and each
// state's time is the earliest reported for it, so receipts may arrive in
// any order and any number of times with the same result. Both adapters
// merge with it; it is exported for them and for tests.
func MergeReceipt(r *SMSReceipt, rc Receipt) bool {
	at := rc.At
	if at.IsZero() {
		at = rc.ReceivedAt
	}
	at = at.UTC().Truncate(time.Microsecond)
	changed := false
	stamp := func(t *time.Time) {
		if t.IsZero() || at.Before(*t) {
			*t = at
			changed = true
		}
	}
	switch rc.State {
	case HandsetQueued:
		stamp(&r.QueuedAt)
	case HandsetSent:
		stamp(&r.SentAt)
	case HandsetDelivered:
		stamp(&r.DeliveredAt)
	case HandsetUndelivered, HandsetFailed:
		stamp(&r.FailedAt)
	}
	if HandsetRank(rc.State) > HandsetRank(r.State) {
		r.State = rc.State
		changed = true
		if rc.State == HandsetDelivered {
			r.ErrorCode = ""
		} else if rc.ErrorCode != "" {
			r.ErrorCode = rc.ErrorCode
		}
	} else if rc.State == r.State && r.ErrorCode == "" && rc.ErrorCode != "" && rc.State != HandsetDelivered {
		r.ErrorCode = rc.ErrorCode
		changed = true
	}
	if !changed {
		return false
	}
	if r.ProviderMessageID == "" {
		r.ProviderMessageID = rc.ProviderMessageID
	}
	if r.CountryCode == 0 {
		r.CountryCode = rc.CountryCode
	}
	received := rc.ReceivedAt.UTC().Truncate(time.Microsecond)
	if received.After(r.LastReceiptAt) {
		r.LastReceiptAt = received
	}
	r.Receipts++
	return true
}
