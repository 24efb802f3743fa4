package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/otphub/otphub/store"
)

var receiptCases = []testCase{
	{"ReceiptsInOrder", testReceiptsInOrder},
	{"ReceiptsOutOfOrderAndRepeated", testReceiptsOutOfOrder},
	{"ReceiptsBeforeAcceptance", testReceiptsBeforeAcceptance},
	{"ReceiptsScopedByOrg", testReceiptsScopedByOrg},
	{"ReceiptsDueFailovers", testReceiptsDueFailovers},
	{"ReceiptsFailOverOnce", testReceiptsFailOverOnce},
	{"ReceiptsPurged", testReceiptsPurged},
	{"ReceiptsConcurrent", testReceiptsConcurrent},
}

func smsKey(orgID int64, ev string) store.ReceiptKey {
	return store.ReceiptKey{OrgID: orgID, EventID: ev, DestinationType: "twilio", DestinationID: store.ProviderPrimary}
}

func accepted(key store.ReceiptKey, sid string, acceptedAt time.Time) store.SMSReceipt {
	return store.SMSReceipt{ReceiptKey: key, ProviderMessageID: sid, CountryCode: 94, AcceptedAt: acceptedAt,
		ExpiresAt: acceptedAt.Add(5 * time.Minute), ReceiptDueAt: acceptedAt.Add(time.Minute)}
}

func receipt(key store.ReceiptKey, sid, state string, when time.Time) store.Receipt {
	return store.Receipt{ReceiptKey: key, ProviderMessageID: sid, State: state, At: when, ReceivedAt: when.Add(time.Second)}
}

func apply(t *testing.T, s store.Store, rc store.Receipt) store.ReceiptResult {
	t.Helper()
	res, err := s.ApplyReceipt(ctx(t), rc)
	must(t, err, "ApplyReceipt(%s %s)", rc.State, rc.At)
	return res
}

// smsTask inserts the delivered primary task of key, as the dispatcher
// records a provider's acceptance.
func smsTask(t *testing.T, s store.Store, key store.ReceiptKey, id string, created time.Time) store.DeliveryTask {
	t.Helper()
	task := newTask(key.OrgID, id, key.EventID, created)
	task.DestinationType, task.DestinationID, task.Status = key.DestinationType, key.DestinationID, store.DeliveryDelivered
	task.Event = []byte(`{"messageBody":"Your code is 075052","sendTo":"+94771234567","id":"` + key.EventID + `"}`)
	_, err := s.InsertDeliveryTasks(ctx(t), []store.DeliveryTask{task}, nil)
	must(t, err, "InsertDeliveryTasks(%s)", id)
	return task
}

func testReceiptsInOrder(t *testing.T, s store.Store) {
	c := ctx(t)
	o := mustOrg(t, s, "org-a")
	key := smsKey(o.ID, "ev-1")
	smsTask(t, s, key, "t1", at(0))
	must(t, s.RecordSMSAccepted(c, accepted(key, "SM1", at(0))), "RecordSMSAccepted")

	res := apply(t, s, receipt(key, "SM1", store.HandsetQueued, at(time.Second)))
	eq(t, res.Changed, true, "queued changed")
	eq(t, res.Previous, "", "previous of the first receipt")
	apply(t, s, receipt(key, "SM1", store.HandsetSent, at(2*time.Second)))
	res = apply(t, s, receipt(key, "SM1", store.HandsetDelivered, at(5*time.Second)))
	eq(t, res.Previous, store.HandsetSent, "previous of delivered")

	r, err := s.GetSMSReceipt(c, key)
	must(t, err, "GetSMSReceipt")
	eq(t, r.State, store.HandsetDelivered, "state")
	eq(t, r.ProviderMessageID, "SM1", "provider message ID")
	eq(t, r.CountryCode, 94, "country code")
	eq(t, r.Receipts, 3, "receipts")
	eqTime(t, r.AcceptedAt, at(0), "AcceptedAt")
	eqTime(t, r.ExpiresAt, at(5*time.Minute), "ExpiresAt")
	eqTime(t, r.ReceiptDueAt, at(time.Minute), "ReceiptDueAt")
	eqTime(t, r.QueuedAt, at(time.Second), "QueuedAt")
	eqTime(t, r.SentAt, at(2*time.Second), "SentAt")
	eqTime(t, r.DeliveredAt, at(5*time.Second), "DeliveredAt")
	eqTime(t, r.LastReceiptAt, at(6*time.Second), "LastReceiptAt")
	if !r.FailedAt.IsZero() || r.FailoverStatus != "" {
		t.Fatalf("record = %+v, want no failure and no failover", r)
	}

	// The deliveries API reads the record with its task.
	got, _, err := s.GetDelivery(c, o.ID, "t1")
	must(t, err, "GetDelivery")
	if got.Handset == nil || got.Handset.State != store.HandsetDelivered || !got.Handset.DeliveredAt.Equal(at(5*time.Second)) {
		t.Fatalf("GetDelivery().Handset = %+v, want the delivered record", got.Handset)
	}
	list, err := s.ListDeliveries(c, o.ID, store.DeliveryFilter{})
	must(t, err, "ListDeliveries")
	if len(list) != 1 || list[0].Handset == nil || list[0].Handset.State != store.HandsetDelivered {
		t.Fatalf("ListDeliveries = %+v, want t1 with its record", list)
	}
	recs, err := s.SMSReceiptsOfEvent(c, o.ID, "ev-1")
	must(t, err, "SMSReceiptsOfEvent")
	eq(t, len(recs), 1, "records of ev-1")

	// A webhook task has no record.
	wh := newTask(o.ID, "t2", "ev-2", at(time.Second))
	_, err = s.InsertDeliveryTasks(c, []store.DeliveryTask{wh}, nil)
	must(t, err, "InsertDeliveryTasks(webhook)")
	got, _, err = s.GetDelivery(c, o.ID, "t2")
	must(t, err, "GetDelivery(webhook)")
	if got.Handset != nil {
		t.Fatalf("webhook task has Handset %+v", got.Handset)
	}
}

func testReceiptsOutOfOrder(t *testing.T, s store.Store) {
	c := ctx(t)
	o := mustOrg(t, s, "org-a")
	key := smsKey(o.ID, "ev-1")
	must(t, s.RecordSMSAccepted(c, accepted(key, "SM1", at(0))), "RecordSMSAccepted")

	apply(t, s, receipt(key, "SM1", store.HandsetDelivered, at(5*time.Second)))
	// Repeated (a provider's retry): nothing changes.
	res := apply(t, s, receipt(key, "SM1", store.HandsetDelivered, at(5*time.Second)))
	eq(t, res.Changed, false, "a repeated receipt changed the record")
	// Stale, lower-ranked ones stamp their time but never move the state back.
	res = apply(t, s, receipt(key, "SM1", store.HandsetSent, at(2*time.Second)))
	eq(t, res.Changed, true, "a late sent stamps SentAt")
	eq(t, res.Receipt.State, store.HandsetDelivered, "state after a late sent")
	res = apply(t, s, receipt(key, "SM1", store.HandsetQueued, at(time.Second)))
	eq(t, res.Receipt.State, store.HandsetDelivered, "state after a late queued")
	res = apply(t, s, receipt(key, "SM1", store.HandsetSent, at(2*time.Second)))
	eq(t, res.Changed, false, "a repeated late sent changed the record")

	r, err := s.GetSMSReceipt(c, key)
	must(t, err, "GetSMSReceipt")
	eq(t, r.State, store.HandsetDelivered, "state")
	eq(t, r.Receipts, 3, "receipts (duplicates not counted)")
	eqTime(t, r.SentAt, at(2*time.Second), "SentAt")
	eqTime(t, r.QueuedAt, at(time.Second), "QueuedAt")

	// A failure then a late delivered: the handset got it after all.
	k2 := smsKey(o.ID, "ev-2")
	fail := receipt(k2, "SM2", store.HandsetUndelivered, at(3*time.Second))
	fail.ErrorCode = "30003"
	apply(t, s, fail)
	res = apply(t, s, receipt(k2, "SM2", store.HandsetFailed, at(4*time.Second)))
	eq(t, res.Receipt.State, store.HandsetUndelivered, "the first of undelivered and failed stays")
	eq(t, res.Receipt.ErrorCode, "30003", "error code")
	res = apply(t, s, receipt(k2, "SM2", store.HandsetDelivered, at(9*time.Second)))
	eq(t, res.Receipt.State, store.HandsetDelivered, "a late delivered overrides a failure")
	eq(t, res.Receipt.ErrorCode, "", "error code after delivered")
	eqTime(t, res.Receipt.FailedAt, at(3*time.Second), "FailedAt kept")

	// Another message's receipt for this key is refused.
	_, err = s.ApplyReceipt(c, receipt(key, "SM-other", store.HandsetFailed, at(time.Minute)))
	wantErr(t, err, store.ErrPrecondition, "ApplyReceipt of another message")
	_, err = s.ApplyReceipt(c, receipt(key, "SM1", "bogus", at(time.Minute)))
	if err == nil {
		t.Fatal("ApplyReceipt accepted an unknown state")
	}
}

func testReceiptsBeforeAcceptance(t *testing.T, s store.Store) {
	c := ctx(t)
	o := mustOrg(t, s, "org-a")
	key := smsKey(o.ID, "ev-1")
	// The callback raced the dispatcher's write of the provider's answer.
	apply(t, s, receipt(key, "SM1", store.HandsetSent, at(time.Second)))
	must(t, s.RecordSMSAccepted(c, accepted(key, "SM1", at(0))), "RecordSMSAccepted")
	r, err := s.GetSMSReceipt(c, key)
	must(t, err, "GetSMSReceipt")
	eq(t, r.State, store.HandsetSent, "state kept")
	eqTime(t, r.SentAt, at(time.Second), "SentAt kept")
	eqTime(t, r.AcceptedAt, at(0), "AcceptedAt")
	eqTime(t, r.ReceiptDueAt, at(time.Minute), "ReceiptDueAt")

	// Receipts recorded under another message ID are dropped when the
	// provider's answer names this one.
	k2 := smsKey(o.ID, "ev-2")
	apply(t, s, receipt(k2, "SM-forged", store.HandsetDelivered, at(time.Second)))
	must(t, s.RecordSMSAccepted(c, accepted(k2, "SM2", at(0))), "RecordSMSAccepted(ev-2)")
	r, err = s.GetSMSReceipt(c, k2)
	must(t, err, "GetSMSReceipt(ev-2)")
	if r.State != "" || r.ProviderMessageID != "SM2" || !r.DeliveredAt.IsZero() {
		t.Fatalf("record = %+v, want SM2 without the other message's state", r)
	}
}

func testReceiptsScopedByOrg(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	apply(t, s, receipt(smsKey(a.ID, "ev-1"), "SM1", store.HandsetDelivered, at(time.Second)))
	_, err := s.GetSMSReceipt(c, smsKey(b.ID, "ev-1"))
	wantErr(t, err, store.ErrNotFound, "GetSMSReceipt of another org")
	recs, err := s.SMSReceiptsOfEvent(c, b.ID, "ev-1")
	must(t, err, "SMSReceiptsOfEvent(org-b)")
	eq(t, len(recs), 0, "org-b's records of org-a's event")
	err = s.FailOver(c, smsKey(b.ID, "ev-1"), store.Failover{Status: store.FailoverNoFallback, Reason: "failed", At: at(time.Minute)})
	wantErr(t, err, store.ErrNotFound, "FailOver of another org's record")
}

func testReceiptsDueFailovers(t *testing.T, s store.Store) {
	c := ctx(t)
	o := mustOrg(t, s, "org-a")
	now := at(2 * time.Minute)
	mk := func(ev string, due time.Time, expires time.Time) store.ReceiptKey {
		k := smsKey(o.ID, ev)
		r := accepted(k, "SM-"+ev, at(0))
		r.ReceiptDueAt, r.ExpiresAt = due, expires
		must(t, s.RecordSMSAccepted(c, r), "RecordSMSAccepted(%s)", ev)
		return k
	}
	undelivered := mk("undelivered", time.Time{}, at(5*time.Minute))
	apply(t, s, receipt(undelivered, "SM-undelivered", store.HandsetUndelivered, at(time.Second)))
	silent := mk("silent", at(time.Minute), at(5*time.Minute))
	apply(t, s, receipt(silent, "SM-silent", store.HandsetSent, at(time.Second))) // not final: still due
	mk("not-yet-due", at(3*time.Minute), at(5*time.Minute))
	mk("no-receipts-expected", time.Time{}, at(5*time.Minute))
	delivered := mk("delivered", at(time.Minute), at(5*time.Minute))
	apply(t, s, receipt(delivered, "SM-delivered", store.HandsetDelivered, at(time.Second)))
	expired := mk("expired", at(time.Minute), at(90*time.Second))
	apply(t, s, receipt(expired, "SM-expired", store.HandsetFailed, at(time.Second)))
	fb := store.ReceiptKey{OrgID: o.ID, EventID: "fallback", DestinationType: "vonage", DestinationID: store.ProviderFallback}
	apply(t, s, receipt(fb, "V1", store.HandsetFailed, at(time.Second)))

	due, err := s.DueFailovers(c, now, 100)
	must(t, err, "DueFailovers")
	got := map[string]bool{}
	for _, r := range due {
		got[r.EventID] = true
	}
	if len(due) != 2 || !got["undelivered"] || !got["silent"] {
		t.Fatalf("DueFailovers = %v, want undelivered and silent", got)
	}
	due, err = s.DueFailovers(c, now, 1)
	must(t, err, "DueFailovers(limit 1)")
	eq(t, len(due), 1, "DueFailovers with limit 1")

	must(t, s.FailOver(c, undelivered, store.Failover{Status: store.FailoverNoFallback, Reason: "undelivered", At: now}), "FailOver")
	due, err = s.DueFailovers(c, now, 100)
	must(t, err, "DueFailovers after FailOver")
	if len(due) != 1 || due[0].EventID != "silent" {
		t.Fatalf("DueFailovers after FailOver = %+v, want silent only", due)
	}
}

func testReceiptsFailOverOnce(t *testing.T, s store.Store) {
	c := ctx(t)
	o := mustOrg(t, s, "org-a")
	key := smsKey(o.ID, "ev-1")
	primary := smsTask(t, s, key, "t-primary", at(0))
	must(t, s.RecordSMSAccepted(c, accepted(key, "SM1", at(0))), "RecordSMSAccepted")
	apply(t, s, receipt(key, "SM1", store.HandsetUndelivered, at(time.Second)))

	const n = 8
	errs := parallel(n, func(i int) error {
		task := &store.DeliveryTask{ID: fmt.Sprintf("t-fallback-%d", i), DestinationType: "vonage", DestinationID: store.ProviderFallback,
			NextAttemptAt: at(2 * time.Second), ExpiresAt: primary.ExpiresAt}
		return s.FailOver(c, key, store.Failover{Status: store.FailoverSent, Reason: "undelivered", At: at(2 * time.Second), Task: task})
	})
	eq(t, countOutcomes(t, errs, "FailOver"), 1, "successful concurrent FailOvers")

	fbTask, err := s.FindDelivery(c, o.ID, "", "ev-1", "vonage", store.ProviderFallback)
	must(t, err, "FindDelivery(fallback)")
	eq(t, fbTask.Status, store.DeliveryPending, "fallback task status")
	eq(t, fbTask.Attempts, 0, "fallback task attempts")
	eqTime(t, fbTask.NextAttemptAt, at(2*time.Second), "fallback NextAttemptAt")
	eqTime(t, fbTask.ExpiresAt, primary.ExpiresAt, "fallback ExpiresAt")
	eqBytes(t, fbTask.Event, primary.Event, "fallback event (copied from the primary)")

	r, err := s.GetSMSReceipt(c, key)
	must(t, err, "GetSMSReceipt")
	eq(t, r.FailoverStatus, store.FailoverSent, "FailoverStatus")
	eq(t, r.FailoverReason, "undelivered", "FailoverReason")
	eqTime(t, r.FailoverAt, at(2*time.Second), "FailoverAt")

	// Without the primary's task there is no event to send.
	k2 := smsKey(o.ID, "ev-2")
	apply(t, s, receipt(k2, "SM2", store.HandsetFailed, at(time.Second)))
	err = s.FailOver(c, k2, store.Failover{Status: store.FailoverSent, Reason: "failed", At: at(time.Minute),
		Task: &store.DeliveryTask{ID: "t-x", DestinationType: "vonage", DestinationID: store.ProviderFallback}})
	wantErr(t, err, store.ErrNotFound, "FailOver without the primary's task")
	r, err = s.GetSMSReceipt(c, k2)
	must(t, err, "GetSMSReceipt(ev-2)")
	eq(t, r.FailoverStatus, "", "FailoverStatus after a failed FailOver (rolled back)")
}

func testReceiptsPurged(t *testing.T, s store.Store) {
	c := ctx(t)
	o := mustOrg(t, s, "org-a")
	key := smsKey(o.ID, "ev-1")
	apply(t, s, receipt(key, "SM1", store.HandsetDelivered, at(time.Second)))
	_, err := s.PurgeDeliveries(c, time.Now().Add(time.Hour))
	must(t, err, "PurgeDeliveries")
	_, err = s.GetSMSReceipt(c, key)
	wantErr(t, err, store.ErrNotFound, "GetSMSReceipt after purge")
}

// testReceiptsConcurrent: receipts of one SMS arriving at once on several
// replicas (and repeated) merge as if applied one by one.
func testReceiptsConcurrent(t *testing.T, s store.Store) {
	c := ctx(t)
	o := mustOrg(t, s, "org-a")
	for _, accept := range []bool{true, false} { // with a record, and with receipts racing to create it
		key := smsKey(o.ID, fmt.Sprintf("ev-%v", accept))
		if accept {
			must(t, s.RecordSMSAccepted(c, accepted(key, "SM1", at(0))), "RecordSMSAccepted")
		}
		concurrentReceipts(t, s, key)
	}
}

func concurrentReceipts(t *testing.T, s store.Store, key store.ReceiptKey) {
	c := ctx(t)
	states := []string{store.HandsetDelivered, store.HandsetSent, store.HandsetQueued, store.HandsetUndelivered}
	errs := parallel(4*len(states), func(i int) error {
		st := states[i%len(states)]
		_, err := s.ApplyReceipt(c, receipt(key, "SM1", st, at(time.Duration(i%len(states)+1)*time.Second)))
		return err
	})
	for i, err := range errs {
		must(t, err, "ApplyReceipt #%d", i)
	}
	r, err := s.GetSMSReceipt(c, key)
	must(t, err, "GetSMSReceipt")
	eq(t, r.State, store.HandsetDelivered, "state")
	eq(t, r.Receipts, len(states), "receipts (each state once)")
	eqTime(t, r.DeliveredAt, at(time.Second), "DeliveredAt")
	eqTime(t, r.SentAt, at(2*time.Second), "SentAt")
	eqTime(t, r.QueuedAt, at(3*time.Second), "QueuedAt")
	eqTime(t, r.FailedAt, at(4*time.Second), "FailedAt")
}
