package storetest

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/otphub/otphub/store"
)

var deliveryCases = []testCase{
	{"DeliveriesInsert", testDeliveriesInsert},
	{"DeliveriesInsertLargeBatch", testDeliveriesInsertLargeBatch},
	{"DeliveriesScopedByOrg", testDeliveriesScopedByOrg},
	{"DeliveriesList", testDeliveriesList},
	{"DeliveriesLease", testDeliveriesLease},
	{"DeliveriesComplete", testDeliveriesComplete},
	{"DeliveriesCompleteBatch", testDeliveriesCompleteBatch},
	{"DeliveriesDefer", testDeliveriesDefer},
	{"DeliveriesRequeue", testDeliveriesRequeue},
	{"DeliveriesStatsAndPurge", testDeliveriesStatsAndPurge},
	{"DeliveriesPendingByDestination", testDeliveriesPendingByDestination},
	{"OrgDeliveryStats", testOrgDeliveryStats},
	{"DeliveriesScopedByProducer", testDeliveriesScopedByProducer},
	{"InvalidInput", testInvalidInput},
}

// testDeliveriesScopedByProducer: idempotency is per producer. Event IDs
// are free-form, so two producers (iss / ce_source) may both send
// "ext-0001" to the same destination; each gets its own task, a repeat of
// one producer's is still a duplicate.
func testDeliveriesScopedByProducer(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	p1 := newTask(a.ID, "p1", "ext-0001", at(0))
	p1.EventSource = "https://producer-one.example"
	p2 := newTask(a.ID, "p2", "ext-0001", at(time.Second))
	p2.EventSource = "urn:producer:two"
	dup := newTask(a.ID, "p1-dup", "ext-0001", at(2*time.Second))
	dup.EventSource = p1.EventSource
	n, err := s.InsertDeliveryTasks(c, []store.DeliveryTask{p1, p2, dup}, nil)
	must(t, err, "InsertDeliveryTasks")
	eq(t, n, 2, "inserted (two producers, one duplicate)")
	for _, want := range []store.DeliveryTask{p1, p2} {
		got, err := s.FindDelivery(c, a.ID, want.EventSource, "ext-0001", "webhook", "sub-1")
		must(t, err, "FindDelivery(%s)", want.EventSource)
		if got.ID != want.ID || got.EventSource != want.EventSource || got.EventID != "ext-0001" {
			t.Fatalf("FindDelivery(%s) = %+v", want.EventSource, got)
		}
	}
	_, err = s.FindDelivery(c, a.ID, "", "ext-0001", "webhook", "sub-1")
	wantErr(t, err, store.ErrNotFound, "FindDelivery without the producer")
}

func newTask(orgID int64, id, eventID string, created time.Time) store.DeliveryTask {
	return store.DeliveryTask{ID: id, OrgID: orgID, EventID: eventID, DestinationType: "webhook", DestinationID: "sub-1",
		Event: []byte(`{"messageBody":"Your code is 075052"}`), Status: store.DeliveryPending, Attempts: 1,
		NextAttemptAt: created.Add(time.Second), ExpiresAt: created.Add(5 * time.Minute), LastError: "HTTP 503",
		LastStatusCode: 503, CreatedAt: created, UpdatedAt: created}
}

// testDeliveriesInsertLargeBatch: a batch of several statements' worth
// (the recorder writes hundreds at once) keeps every task and attempt, and
// skips the duplicates, wherever they fall, with their attempts.
func testDeliveriesInsertLargeBatch(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	const n = 300
	var tasks []store.DeliveryTask
	var atts []store.DeliveryAttempt
	for i := range n {
		tk := newTask(a.ID, fmt.Sprintf("big-%03d", i), fmt.Sprintf("ev-big-%03d", i%(n-10)), at(time.Duration(i)*time.Millisecond))
		tasks = append(tasks, tk)
		atts = append(atts, store.DeliveryAttempt{TaskID: tk.ID, Number: 1, StartedAt: tk.CreatedAt, StatusCode: 200 + i, Outcome: "retry"})
	}
	inserted, err := s.InsertDeliveryTasks(c, tasks, atts)
	must(t, err, "InsertDeliveryTasks(300, the last 10 duplicates)")
	eq(t, inserted, n-10, "inserted")
	for _, i := range []int{0, 63, 64, 65, 200, n - 11} {
		got, gotAtts, err := s.GetDelivery(c, a.ID, tasks[i].ID)
		must(t, err, "GetDelivery(%s)", tasks[i].ID)
		eq(t, got.EventID, tasks[i].EventID, "event of "+tasks[i].ID)
		if len(gotAtts) != 1 || gotAtts[0].StatusCode != 200+i {
			t.Fatalf("attempts of %s = %+v, want its own one", tasks[i].ID, gotAtts)
		}
	}
	for _, i := range []int{n - 10, n - 1} {
		_, _, err := s.GetDelivery(c, a.ID, tasks[i].ID)
		wantErr(t, err, store.ErrNotFound, "GetDelivery of a duplicate %s", tasks[i].ID)
	}
}

func testDeliveriesInsert(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	t1 := newTask(a.ID, "t1", "ev-1", at(0))
	t2 := newTask(a.ID, "t2", "ev-1", at(0))
	t2.DestinationType, t2.DestinationID = "twilio", store.ProviderPrimary
	att := store.DeliveryAttempt{TaskID: "t1", Number: 1, StartedAt: at(0), Duration: 1500 * time.Microsecond,
		StatusCode: 503, Outcome: "retry", Error: "HTTP 503"}
	n, err := s.InsertDeliveryTasks(c, []store.DeliveryTask{t1, t2}, []store.DeliveryAttempt{att})
	must(t, err, "InsertDeliveryTasks")
	eq(t, n, 2, "inserted")

	got, atts, err := s.GetDelivery(c, a.ID, "t1")
	must(t, err, "GetDelivery")
	if got.ID != "t1" || got.OrgID != a.ID || got.EventID != "ev-1" || got.DestinationType != "webhook" ||
		got.DestinationID != "sub-1" || got.Status != store.DeliveryPending || got.Attempts != 1 ||
		!got.NextAttemptAt.Equal(t1.NextAttemptAt) || !got.ExpiresAt.Equal(t1.ExpiresAt) || got.LeaseOwner != "" ||
		!got.LeaseUntil.IsZero() || got.LastError != "HTTP 503" || got.LastStatusCode != 503 ||
		!got.CreatedAt.Equal(at(0)) || !got.UpdatedAt.Equal(at(0)) {
		t.Fatalf("GetDelivery = %+v, want %+v", got, t1)
	}
	eqBytes(t, got.Event, t1.Event, "Event")
	if len(atts) != 1 || atts[0].TaskID != "t1" || atts[0].Number != 1 || !atts[0].StartedAt.Equal(at(0)) ||
		atts[0].Duration != att.Duration || atts[0].StatusCode != 503 || atts[0].Outcome != "retry" || atts[0].Error != "HTTP 503" {
		t.Fatalf("attempt log = %+v, want [%+v]", atts, att)
	}
	_, atts, err = s.GetDelivery(c, a.ID, "t2")
	must(t, err, "GetDelivery(t2)")
	eq(t, len(atts), 0, "attempts of a task inserted without")

	// Idempotent on (EventID, DestinationType, DestinationID): the
	// duplicate is skipped with its attempts, the new one inserted.
	dup := newTask(a.ID, "t1-dup", "ev-1", at(time.Second))
	t3 := newTask(a.ID, "t3", "ev-2", at(time.Second))
	n, err = s.InsertDeliveryTasks(c, []store.DeliveryTask{dup, t3},
		[]store.DeliveryAttempt{{TaskID: "t1-dup", Number: 1, StartedAt: at(time.Second), Outcome: "retry"}})
	must(t, err, "InsertDeliveryTasks(with a duplicate)")
	eq(t, n, 1, "inserted with a duplicate")
	_, _, err = s.GetDelivery(c, a.ID, "t1-dup")
	wantErr(t, err, store.ErrNotFound, "GetDelivery of a skipped duplicate")
	_, atts, _ = s.GetDelivery(c, a.ID, "t1")
	eq(t, len(atts), 1, "attempts of t1 after a duplicate insert")
	n, err = s.InsertDeliveryTasks(c, nil, nil)
	must(t, err, "InsertDeliveryTasks(none)")
	eq(t, n, 0, "inserted of none")

	found, err := s.FindDelivery(c, a.ID, "", "ev-1", "twilio", store.ProviderPrimary)
	must(t, err, "FindDelivery")
	eq(t, found.ID, "t2", "FindDelivery ID")
	_, err = s.FindDelivery(c, a.ID, "", "ev-1", "twilio", store.ProviderFallback)
	wantErr(t, err, store.ErrNotFound, "FindDelivery(unknown)")
	_, err = s.FindDelivery(c, b.ID, "", "ev-1", "twilio", store.ProviderPrimary)
	wantErr(t, err, store.ErrNotFound, "FindDelivery with another org's ID")

	_, _, err = s.GetDelivery(c, b.ID, "t1")
	wantErr(t, err, store.ErrNotFound, "GetDelivery with another org's ID")
	_, _, err = s.GetDelivery(c, a.ID, "nope")
	wantErr(t, err, store.ErrNotFound, "GetDelivery(unknown)")
}

// testDeliveriesScopedByOrg: idempotency is per org. Two orgs publishing
// the same jti to their own provider slot (the same destination type and ID
// in every org) each get their own task, found separately.
func testDeliveriesScopedByOrg(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	ta := newTask(a.ID, "ta", "ev-shared", at(0))
	ta.DestinationType, ta.DestinationID = "console", store.ProviderPrimary
	tb := newTask(b.ID, "tb", "ev-shared", at(time.Second))
	tb.DestinationType, tb.DestinationID = "console", store.ProviderPrimary
	tb.Status = store.DeliveryDelivered
	n, err := s.InsertDeliveryTasks(c, []store.DeliveryTask{ta}, nil)
	must(t, err, "InsertDeliveryTasks(org A)")
	eq(t, n, 1, "inserted for org A")
	n, err = s.InsertDeliveryTasks(c, []store.DeliveryTask{tb},
		[]store.DeliveryAttempt{{TaskID: "tb", Number: 1, StartedAt: at(time.Second), StatusCode: 200, Outcome: "success"}})
	must(t, err, "InsertDeliveryTasks(org B, same event and destination)")
	eq(t, n, 1, "inserted for org B with org A's event ID and destination")

	for _, want := range []store.DeliveryTask{ta, tb} {
		got, err := s.FindDelivery(c, want.OrgID, "", "ev-shared", "console", store.ProviderPrimary)
		must(t, err, "FindDelivery")
		if got.ID != want.ID || got.OrgID != want.OrgID || got.Status != want.Status {
			t.Fatalf("FindDelivery(org %d) = %s of org %d (%s), want %s of org %d (%s)",
				want.OrgID, got.ID, got.OrgID, got.Status, want.ID, want.OrgID, want.Status)
		}
		list, err := s.ListDeliveries(c, want.OrgID, store.DeliveryFilter{})
		must(t, err, "ListDeliveries")
		if len(list) != 1 || list[0].ID != want.ID {
			t.Fatalf("ListDeliveries(org %d) = %+v, want only %s", want.OrgID, list, want.ID)
		}
	}
	_, atts, err := s.GetDelivery(c, b.ID, "tb")
	must(t, err, "GetDelivery(org B)")
	eq(t, len(atts), 1, "attempts of org B's task")

	// Within one org the key still holds.
	dup := newTask(b.ID, "tb-dup", "ev-shared", at(2*time.Second))
	dup.DestinationType, dup.DestinationID = "console", store.ProviderPrimary
	n, err = s.InsertDeliveryTasks(c, []store.DeliveryTask{dup}, nil)
	must(t, err, "InsertDeliveryTasks(duplicate in org B)")
	eq(t, n, 0, "inserted of a duplicate within one org")
}

func testDeliveriesList(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	var tasks []store.DeliveryTask
	for i := 0; i < 7; i++ {
		// Two tasks per creation time, so the cursor's ID tiebreak matters.
		tk := newTask(a.ID, fmt.Sprintf("task-%d", i), fmt.Sprintf("ev-%d", i), at(time.Duration(i/2)*time.Second))
		if i%3 == 0 {
			tk.Status = store.DeliveryDead
		}
		if i == 1 || i == 4 || i == 5 {
			tk.DestinationID = "sub-2"
		}
		if i == 2 {
			tk.DestinationType, tk.DestinationID = "twilio", store.ProviderPrimary
		}
		tasks = append(tasks, tk)
	}
	tasks = append(tasks, newTask(b.ID, "task-b", "ev-b", at(time.Hour)))
	_, err := s.InsertDeliveryTasks(c, tasks, nil)
	must(t, err, "InsertDeliveryTasks")

	ids := func(ts []store.DeliveryTask) []string {
		var out []string
		for _, t := range ts {
			out = append(out, t.ID)
		}
		return out
	}
	all, err := s.ListDeliveries(c, a.ID, store.DeliveryFilter{})
	must(t, err, "ListDeliveries")
	want := []string{"task-6", "task-5", "task-4", "task-3", "task-2", "task-1", "task-0"}
	if !slices.Equal(ids(all), want) {
		t.Fatalf("ListDeliveries = %v, want %v (newest first, ID desc, org A only)", ids(all), want)
	}

	// Page through three at a time with the cursor.
	var paged []string
	f := store.DeliveryFilter{Limit: 3}
	for page := 0; page < 5; page++ {
		got, err := s.ListDeliveries(c, a.ID, f)
		must(t, err, "ListDeliveries(page %d)", page)
		if len(got) == 0 {
			break
		}
		paged = append(paged, ids(got)...)
		last := got[len(got)-1]
		f.Before, f.BeforeID = last.CreatedAt, last.ID
	}
	if !slices.Equal(paged, want) {
		t.Fatalf("paged ListDeliveries = %v, want %v", paged, want)
	}
	// A cursor without an ID is strictly before its time.
	got, _ := s.ListDeliveries(c, a.ID, store.DeliveryFilter{Before: at(2 * time.Second)})
	if !slices.Equal(ids(got), []string{"task-3", "task-2", "task-1", "task-0"}) {
		t.Fatalf("ListDeliveries(before 2s) = %v", ids(got))
	}

	dead, err := s.ListDeliveries(c, a.ID, store.DeliveryFilter{Status: store.DeliveryDead})
	must(t, err, "ListDeliveries(dead)")
	if !slices.Equal(ids(dead), []string{"task-6", "task-3", "task-0"}) {
		t.Fatalf("ListDeliveries(dead) = %v", ids(dead))
	}
	// One destination's, one destination type's, and since a time.
	for _, tc := range []struct {
		f    store.DeliveryFilter
		want []string
	}{
		{store.DeliveryFilter{DestinationType: "webhook", DestinationID: "sub-2"}, []string{"task-5", "task-4", "task-1"}},
		{store.DeliveryFilter{DestinationType: "webhook", DestinationID: "sub-2", Limit: 1}, []string{"task-5"}},
		{store.DeliveryFilter{DestinationType: "webhook", DestinationID: "sub-2", Status: store.DeliveryDead}, nil},
		{store.DeliveryFilter{DestinationType: "webhook"}, []string{"task-6", "task-5", "task-4", "task-3", "task-1", "task-0"}},
		{store.DeliveryFilter{DestinationType: "twilio"}, []string{"task-2"}},
		{store.DeliveryFilter{Since: at(2 * time.Second)}, []string{"task-6", "task-5", "task-4"}},
		{store.DeliveryFilter{Since: at(time.Second), Before: at(2 * time.Second)}, []string{"task-3", "task-2"}},
		{store.DeliveryFilter{DestinationType: "webhook", DestinationID: "sub-1", Since: at(time.Second)}, []string{"task-6", "task-3"}},
	} {
		got, err := s.ListDeliveries(c, a.ID, tc.f)
		must(t, err, "ListDeliveries(%+v)", tc.f)
		if !slices.Equal(ids(got), tc.want) {
			t.Errorf("ListDeliveries(%+v) = %v, want %v", tc.f, ids(got), tc.want)
		}
	}
	if got, _ := s.ListDeliveries(c, b.ID, store.DeliveryFilter{DestinationType: "webhook", DestinationID: "sub-2"}); len(got) != 0 {
		t.Errorf("org B sees org A's destination: %v", ids(got))
	}
	onlyB, _ := s.ListDeliveries(c, b.ID, store.DeliveryFilter{})
	if !slices.Equal(ids(onlyB), []string{"task-b"}) {
		t.Fatalf("ListDeliveries(org B) = %v", ids(onlyB))
	}
}

func testDeliveriesLease(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	now := at(time.Hour)
	due1 := newTask(a.ID, "due-1", "ev-1", at(0))
	due1.NextAttemptAt = now.Add(-time.Minute)
	due2 := newTask(a.ID, "due-2", "ev-2", at(0))
	due2.NextAttemptAt = now.Add(-2 * time.Minute)
	dueNow := newTask(a.ID, "due-now", "ev-3", at(0))
	dueNow.NextAttemptAt = now
	future := newTask(a.ID, "future", "ev-4", at(0))
	future.NextAttemptAt = now.Add(time.Second)
	done := newTask(a.ID, "done", "ev-5", at(0))
	done.Status, done.NextAttemptAt = store.DeliveryDelivered, now.Add(-time.Hour)
	_, err := s.InsertDeliveryTasks(c, []store.DeliveryTask{due1, due2, dueNow, future, done}, nil)
	must(t, err, "InsertDeliveryTasks")

	got, err := s.LeaseDueTasks(c, "w1", now, time.Minute, 2)
	must(t, err, "LeaseDueTasks")
	if len(got) != 2 || got[0].ID != "due-2" || got[1].ID != "due-1" {
		t.Fatalf("LeaseDueTasks(limit 2) = %v, want due-2, due-1 (oldest due first)", leasedIDs(got))
	}
	for _, tk := range got {
		if tk.LeaseOwner != "w1" || !tk.LeaseUntil.Equal(now.Add(time.Minute)) {
			t.Fatalf("leased task %s: owner %q until %v, want w1 until %v", tk.ID, tk.LeaseOwner, tk.LeaseUntil, now.Add(time.Minute))
		}
		eqBytes(t, tk.Event, due1.Event, "leased task's event")
	}
	got, err = s.LeaseDueTasks(c, "w2", now, time.Minute, 10)
	must(t, err, "LeaseDueTasks(w2)")
	if len(got) != 1 || got[0].ID != "due-now" {
		t.Fatalf("LeaseDueTasks(w2) = %v, want due-now only (others leased, future, or finished)", leasedIDs(got))
	}
	got, err = s.LeaseDueTasks(c, "w1", now.Add(30*time.Second), time.Minute, 10)
	must(t, err, "LeaseDueTasks(again)")
	if len(got) != 1 || got[0].ID != "future" {
		t.Fatalf("LeaseDueTasks(while leases run) = %v, want the newly due task only", leasedIDs(got))
	}
	// Once leases run out the tasks are up for grabs again.
	got, err = s.LeaseDueTasks(c, "w3", now.Add(2*time.Minute), time.Minute, 10)
	must(t, err, "LeaseDueTasks(after leases expired)")
	if !slices.Equal(leasedIDs(got), []string{"due-2", "due-1", "due-now", "future"}) {
		t.Fatalf("LeaseDueTasks(after expiry) = %v", leasedIDs(got))
	}
	got, err = s.LeaseDueTasks(c, "w3", now.Add(2*time.Minute), time.Minute, 0)
	must(t, err, "LeaseDueTasks(limit 0)")
	eq(t, len(got), 0, "tasks leased with limit 0")
}

func leasedIDs(ts []store.DeliveryTask) []string {
	out := []string{}
	for _, t := range ts {
		out = append(out, t.ID)
	}
	return out
}

func testDeliveriesComplete(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	now := at(time.Hour)
	tk := newTask(a.ID, "t1", "ev-1", at(0))
	_, err := s.InsertDeliveryTasks(c, []store.DeliveryTask{tk},
		[]store.DeliveryAttempt{{TaskID: "t1", Number: 1, StartedAt: at(0), Outcome: "retry", StatusCode: 503}})
	must(t, err, "InsertDeliveryTasks")

	att := store.DeliveryAttempt{TaskID: "t1", Number: 2, StartedAt: now, Duration: 20 * time.Millisecond, StatusCode: 500, Outcome: "retry", Error: "HTTP 500"}
	upd := store.TaskUpdate{Status: store.DeliveryPending, NextAttemptAt: now.Add(5 * time.Second), LastError: "HTTP 500", LastStatusCode: 500}
	wantErr(t, s.CompleteAttempt(c, "t1", "w1", att, upd), store.ErrPrecondition, "CompleteAttempt of an unleased task")
	wantErr(t, s.CompleteAttempt(c, "nope", "w1", att, upd), store.ErrNotFound, "CompleteAttempt(unknown)")

	if got, _ := s.LeaseDueTasks(c, "w1", now, time.Minute, 10); len(got) != 1 {
		t.Fatalf("lease: %v", leasedIDs(got))
	}
	wantErr(t, s.CompleteAttempt(c, "t1", "w2", att, upd), store.ErrPrecondition, "CompleteAttempt by another owner")
	must(t, s.CompleteAttempt(c, "t1", "w1", att, upd), "CompleteAttempt")
	wantErr(t, s.CompleteAttempt(c, "t1", "w1", att, upd), store.ErrPrecondition, "CompleteAttempt twice (lease released)")

	got, atts, err := s.GetDelivery(c, a.ID, "t1")
	must(t, err, "GetDelivery")
	if got.Status != store.DeliveryPending || got.Attempts != 2 || !got.NextAttemptAt.Equal(upd.NextAttemptAt) ||
		got.LastError != "HTTP 500" || got.LastStatusCode != 500 || got.LeaseOwner != "" || !got.LeaseUntil.IsZero() ||
		!got.UpdatedAt.Equal(now.Add(20*time.Millisecond)) {
		t.Fatalf("task after CompleteAttempt = %+v", got)
	}
	if len(atts) != 2 || atts[1].Number != 2 || atts[1].StatusCode != 500 || atts[1].Duration != 20*time.Millisecond ||
		!atts[1].StartedAt.Equal(now) || atts[1].Error != "HTTP 500" {
		t.Fatalf("attempt log after CompleteAttempt = %+v", atts)
	}

	// A final attempt: delivered, not due again, numbered by the store when 0.
	later := now.Add(5 * time.Second)
	if got, _ := s.LeaseDueTasks(c, "w2", later, time.Minute, 10); len(got) != 1 {
		t.Fatalf("re-lease: %v", leasedIDs(got))
	}
	must(t, s.CompleteAttempt(c, "t1", "w2", store.DeliveryAttempt{TaskID: "t1", StartedAt: later, StatusCode: 204, Outcome: "success"},
		store.TaskUpdate{Status: store.DeliveryDelivered, LastStatusCode: 204}), "CompleteAttempt(delivered)")
	got, atts, _ = s.GetDelivery(c, a.ID, "t1")
	if got.Status != store.DeliveryDelivered || got.Attempts != 3 || got.LastError != "" || got.LastStatusCode != 204 {
		t.Fatalf("delivered task = %+v", got)
	}
	if len(atts) != 3 || atts[2].Number != 3 || atts[2].Outcome != "success" {
		t.Fatalf("attempt log = %+v, want a third attempt numbered 3", atts)
	}
	if leased, _ := s.LeaseDueTasks(c, "w3", later.Add(time.Hour), time.Minute, 10); len(leased) != 0 {
		t.Fatalf("a delivered task was leased: %v", leasedIDs(leased))
	}
}

// testDeliveriesCompleteBatch: CompleteAttempts applies each item as
// CompleteAttempt would, in one transaction, and an item whose lease is
// gone or whose task is unknown fails alone.
func testDeliveriesCompleteBatch(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	now := at(time.Hour)
	var tasks []store.DeliveryTask
	for i, id := range []string{"b1", "b2", "b3"} {
		tasks = append(tasks, newTask(a.ID, id, fmt.Sprintf("ev-b%d", i), at(0)))
	}
	_, err := s.InsertDeliveryTasks(c, tasks, nil)
	must(t, err, "InsertDeliveryTasks")
	got, err := s.LeaseDueTasks(c, "w1", now, time.Minute, 2) // b1 and b2 (oldest due first), not b3
	must(t, err, "LeaseDueTasks")
	eq(t, len(got), 2, "tasks leased")
	leased := leasedIDs(got)

	done := store.TaskUpdate{Status: store.DeliveryDelivered, LastStatusCode: 200}
	items := []store.AttemptCompletion{
		{TaskID: leased[0], Attempt: store.DeliveryAttempt{StartedAt: now, StatusCode: 200, Outcome: "success"}, Update: done},
		{TaskID: "missing", Attempt: store.DeliveryAttempt{StartedAt: now, Outcome: "success"}, Update: done},
		{TaskID: "b3", Attempt: store.DeliveryAttempt{StartedAt: now, Outcome: "success"}, Update: done},
		{TaskID: leased[1], Attempt: store.DeliveryAttempt{StartedAt: now, StatusCode: 503, Outcome: "retry"},
			Update: store.TaskUpdate{Status: store.DeliveryPending, NextAttemptAt: now.Add(time.Second), LastStatusCode: 503}},
	}
	errs, err := s.CompleteAttempts(c, "w1", items)
	must(t, err, "CompleteAttempts")
	eq(t, len(errs), len(items), "outcomes")
	must(t, errs[0], "CompleteAttempts item 0")
	wantErr(t, errs[1], store.ErrNotFound, "CompleteAttempts of an unknown task")
	wantErr(t, errs[2], store.ErrPrecondition, "CompleteAttempts of an unleased task")
	must(t, errs[3], "CompleteAttempts item 3")

	first, atts, err := s.GetDelivery(c, a.ID, leased[0])
	must(t, err, "GetDelivery")
	if first.Status != store.DeliveryDelivered || first.Attempts != tasks[0].Attempts+1 || first.LeaseOwner != "" ||
		len(atts) != 1 || atts[0].Number != first.Attempts {
		t.Fatalf("completed task = %+v, attempts %+v", first, atts)
	}
	second, _, err := s.GetDelivery(c, a.ID, leased[1])
	must(t, err, "GetDelivery")
	if second.Status != store.DeliveryPending || !second.NextAttemptAt.Equal(now.Add(time.Second)) || second.LastStatusCode != 503 {
		t.Fatalf("retried task = %+v", second)
	}
	untouched, _, err := s.GetDelivery(c, a.ID, "b3")
	must(t, err, "GetDelivery")
	eq(t, untouched.Attempts, tasks[2].Attempts, "attempts of the task not leased")
	_, err = s.CompleteAttempts(c, "", items)
	if err == nil {
		t.Fatal("CompleteAttempts with an empty owner succeeded")
	}
}

func testDeliveriesDefer(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	now := at(time.Hour)
	_, err := s.InsertDeliveryTasks(c, []store.DeliveryTask{newTask(a.ID, "t1", "ev-1", at(0))}, nil)
	must(t, err, "InsertDeliveryTasks")
	wantErr(t, s.DeferDelivery(c, "t1", "w1", now.Add(time.Minute)), store.ErrPrecondition, "DeferDelivery of an unleased task")
	wantErr(t, s.DeferDelivery(c, "nope", "w1", now.Add(time.Minute)), store.ErrNotFound, "DeferDelivery(unknown)")
	if got, _ := s.LeaseDueTasks(c, "w1", now, time.Hour, 10); len(got) != 1 {
		t.Fatalf("lease: %v", leasedIDs(got))
	}
	wantErr(t, s.DeferDelivery(c, "t1", "w2", now.Add(time.Minute)), store.ErrPrecondition, "DeferDelivery by another owner")
	must(t, s.DeferDelivery(c, "t1", "w1", now.Add(time.Minute)), "DeferDelivery")
	got, atts, _ := s.GetDelivery(c, a.ID, "t1")
	if got.Status != store.DeliveryPending || got.Attempts != 1 || len(atts) != 0 || got.LeaseOwner != "" ||
		!got.LeaseUntil.IsZero() || !got.NextAttemptAt.Equal(now.Add(time.Minute)) {
		t.Fatalf("deferred task = %+v (attempts %d)", got, len(atts))
	}
	if leased, _ := s.LeaseDueTasks(c, "w2", now.Add(30*time.Second), time.Minute, 10); len(leased) != 0 {
		t.Fatalf("a deferred task was leased before it was due: %v", leasedIDs(leased))
	}
	if leased, _ := s.LeaseDueTasks(c, "w2", now.Add(time.Minute), time.Minute, 10); len(leased) != 1 {
		t.Fatalf("a deferred task was not leased once due: %v", leasedIDs(leased))
	}
}

func testDeliveriesRequeue(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	var tasks []store.DeliveryTask
	for i, st := range []string{store.DeliveryDead, store.DeliveryFailed, store.DeliveryExpired, store.DeliveryDelivered, store.DeliveryPending, store.DeliveryDead} {
		tk := newTask(a.ID, fmt.Sprintf("t%d", i), fmt.Sprintf("ev-%d", i), at(time.Duration(i)*time.Minute))
		tk.Status = st
		tasks = append(tasks, tk)
	}
	other := newTask(b.ID, "tb", "ev-b", at(0))
	other.Status = store.DeliveryDead
	tasks = append(tasks, other)
	_, err := s.InsertDeliveryTasks(c, tasks, nil)
	must(t, err, "InsertDeliveryTasks")

	now, exp := at(time.Hour), at(time.Hour+5*time.Minute)
	must(t, s.RequeueDelivery(c, a.ID, "t0", now, exp), "RequeueDelivery")
	got, _, _ := s.GetDelivery(c, a.ID, "t0")
	if got.Status != store.DeliveryPending || !got.NextAttemptAt.Equal(now) || !got.ExpiresAt.Equal(exp) || got.Attempts != 1 {
		t.Fatalf("requeued task = %+v", got)
	}
	wantErr(t, s.RequeueDelivery(c, a.ID, "t0", now, exp), store.ErrPrecondition, "RequeueDelivery of a pending task")
	wantErr(t, s.RequeueDelivery(c, b.ID, "t1", now, exp), store.ErrNotFound, "RequeueDelivery through another org")
	wantErr(t, s.RequeueDelivery(c, a.ID, "nope", now, exp), store.ErrNotFound, "RequeueDelivery(unknown)")
	if leased, _ := s.LeaseDueTasks(c, "w1", now, time.Minute, 10); !slices.Equal(leasedIDs(leased), []string{"t4", "t0"}) &&
		!slices.Equal(leasedIDs(leased), []string{"t0", "t4"}) {
		t.Fatalf("leased after requeue = %v, want t0 and t4", leasedIDs(leased))
	}

	// Bulk: dead and failed tasks created at or after minute 1.
	n, err := s.RequeueDeliveries(c, a.ID, []string{store.DeliveryDead, store.DeliveryFailed}, at(time.Minute), now, exp)
	must(t, err, "RequeueDeliveries")
	eq(t, n, 2, "requeued (t1 failed, t5 dead)")
	for id, want := range map[string]string{"t1": store.DeliveryPending, "t5": store.DeliveryPending, "t2": store.DeliveryExpired, "t3": store.DeliveryDelivered} {
		got, _, _ := s.GetDelivery(c, a.ID, id)
		eq(t, got.Status, want, id+" status")
	}
	got, _, _ = s.GetDelivery(c, b.ID, "tb")
	eq(t, got.Status, store.DeliveryDead, "org B's dead task after org A's bulk requeue")
	// One destination type only.
	sms := newTask(a.ID, "sms", "ev-sms", at(0))
	sms.DestinationType, sms.DestinationID, sms.Status = "twilio", "primary", store.DeliveryDelivered
	_, err = s.InsertDeliveryTasks(c, []store.DeliveryTask{sms}, nil)
	must(t, err, "InsertDeliveryTasks(sms)")
	n, err = s.RequeueDeliveriesOfType(c, a.ID, sms.DestinationType, nil, time.Time{}, now, exp)
	must(t, err, "RequeueDeliveriesOfType(twilio)")
	eq(t, n, 1, "requeued of type twilio")
	got, _, _ = s.GetDelivery(c, a.ID, "t3")
	eq(t, got.Status, store.DeliveryDelivered, "another type's task after RequeueDeliveriesOfType")
	// No statuses: every finished task.
	n, err = s.RequeueDeliveries(c, a.ID, nil, time.Time{}, now, exp)
	must(t, err, "RequeueDeliveries(all)")
	eq(t, n, 2, "requeued (t2 expired, t3 delivered)")
}

func testDeliveriesStatsAndPurge(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	st, err := s.DeliveryStats(c)
	must(t, err, "DeliveryStats(empty)")
	if st != (store.DeliveryStats{}) {
		t.Fatalf("DeliveryStats(empty) = %+v", st)
	}
	mk := func(id, status string, created, updated time.Time) store.DeliveryTask {
		tk := newTask(a.ID, id, "ev-"+id, created)
		tk.Status, tk.UpdatedAt = status, updated
		return tk
	}
	tasks := []store.DeliveryTask{
		mk("p-old", store.DeliveryPending, at(0), at(0)),
		mk("p-new", store.DeliveryPending, at(time.Hour), at(time.Hour)),
		mk("d-old", store.DeliveryDelivered, at(0), at(time.Minute)),
		mk("d-new", store.DeliveryDelivered, at(time.Hour), at(2*time.Hour)),
		mk("dead-old", store.DeliveryDead, at(0), at(time.Minute)),
		mk("x-old", store.DeliveryExpired, at(0), at(time.Minute)),
	}
	atts := []store.DeliveryAttempt{{TaskID: "d-old", Number: 1, StartedAt: at(0), Outcome: "success"}}
	_, err = s.InsertDeliveryTasks(c, tasks, atts)
	must(t, err, "InsertDeliveryTasks")

	st, err = s.DeliveryStats(c)
	must(t, err, "DeliveryStats")
	eq(t, st.Pending, int64(2), "DeliveryStats.Pending")
	eq(t, st.Dead, int64(1), "DeliveryStats.Dead")
	eqTime(t, st.OldestPendingAt, at(0), "OldestPendingAt")

	n, err := s.PurgeDeliveries(c, at(time.Hour))
	must(t, err, "PurgeDeliveries")
	eq(t, n, 3, "purged (finished and updated before the cutoff)")
	for _, id := range []string{"d-old", "dead-old", "x-old"} {
		_, _, err := s.GetDelivery(c, a.ID, id)
		wantErr(t, err, store.ErrNotFound, "GetDelivery(%s) after purge", id)
	}
	for _, id := range []string{"p-old", "p-new", "d-new"} {
		if _, _, err := s.GetDelivery(c, a.ID, id); err != nil {
			t.Fatalf("%s purged: %v", id, err)
		}
	}
	// The purged task's attempts went with it: re-inserting its key starts an empty log.
	_, err = s.InsertDeliveryTasks(c, []store.DeliveryTask{mk("d-old", store.DeliveryDelivered, at(0), at(0))}, nil)
	must(t, err, "InsertDeliveryTasks(again)")
	_, log, _ := s.GetDelivery(c, a.ID, "d-old")
	eq(t, len(log), 0, "attempts of a purged then re-inserted task")
}

// testInvalidInput: malformed calls fail with an error, write nothing, and
// never panic.
// testDeliveriesPendingByDestination: pending tasks are counted per (org,
// type, id), never mixing orgs that use the same destination ID or a
// destination's finished tasks, and over keeps only the larger counts.
func testDeliveriesPendingByDestination(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	got, err := s.PendingByDestination(c, 0)
	must(t, err, "PendingByDestination(empty)")
	eq(t, len(got), 0, "destinations with pending tasks (empty store)")

	var tasks []store.DeliveryTask
	add := func(org store.Org, typ, id, status string, n int) {
		for range n {
			tk := newTask(org.ID, fmt.Sprintf("t%d", len(tasks)), fmt.Sprintf("ev-%d", len(tasks)), at(0))
			tk.DestinationType, tk.DestinationID, tk.Status = typ, id, status
			tasks = append(tasks, tk)
		}
	}
	add(a, "webhook", "sub-1", store.DeliveryPending, 3)
	add(a, "webhook", "sub-1", store.DeliveryDelivered, 2)
	add(a, "webhook", "sub-2", store.DeliveryDead, 4)
	add(a, "twilio", "primary", store.DeliveryPending, 1)
	add(a, "vonage", "primary", store.DeliveryPending, 2) // the slot's provider type changed
	add(b, "webhook", "sub-1", store.DeliveryPending, 2)
	_, err = s.InsertDeliveryTasks(c, tasks, nil)
	must(t, err, "InsertDeliveryTasks")

	dest := func(org store.Org, typ, id string) store.Destination {
		return store.Destination{OrgID: org.ID, Type: typ, ID: id}
	}
	for _, tc := range []struct {
		over int64
		want map[store.Destination]int64
	}{
		{0, map[store.Destination]int64{dest(a, "webhook", "sub-1"): 3, dest(a, "twilio", "primary"): 1,
			dest(a, "vonage", "primary"): 2, dest(b, "webhook", "sub-1"): 2}},
		{1, map[store.Destination]int64{dest(a, "webhook", "sub-1"): 3, dest(a, "vonage", "primary"): 2, dest(b, "webhook", "sub-1"): 2}},
		{2, map[store.Destination]int64{dest(a, "webhook", "sub-1"): 3}},
		{3, map[store.Destination]int64{}},
	} {
		got, err := s.PendingByDestination(c, tc.over)
		must(t, err, "PendingByDestination")
		if !maps.Equal(got, tc.want) {
			t.Fatalf("PendingByDestination(over %d) = %v, want %v", tc.over, got, tc.want)
		}
	}
}

func testInvalidInput(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	if err := s.CreateClient(c, store.Client{OrgID: a.ID, Name: "x"}); err == nil {
		t.Errorf("CreateClient without a client ID succeeded")
	}
	if err := s.CreateChallenge(c, store.Challenge{OrgID: a.ID}, store.Lockout{}); err == nil {
		t.Errorf("CreateChallenge without an ID succeeded")
	}
	if err := s.InsertSigningKey(c, store.SigningKey{Algorithm: "ES256"}); err == nil {
		t.Errorf("InsertSigningKey without a KID succeeded")
	}
	if err := s.PutSMSProvider(c, store.SMSProvider{OrgID: a.ID, Type: "twilio"}); err == nil {
		t.Errorf("PutSMSProvider without a slot succeeded")
	}
	if _, err := s.LeaseDueTasks(c, "", base, time.Minute, 10); err == nil {
		t.Errorf("LeaseDueTasks without an owner succeeded")
	}
	if err := s.CompleteAttempt(c, "t", "", store.DeliveryAttempt{}, store.TaskUpdate{}); err == nil {
		t.Errorf("CompleteAttempt without an owner succeeded")
	}
	if err := s.DeferDelivery(c, "t", "", base); err == nil {
		t.Errorf("DeferDelivery without an owner succeeded")
	}
	if got, err := s.LeaseDueTasks(c, "w", base, time.Minute, -1); err != nil || len(got) != 0 {
		t.Errorf("LeaseDueTasks(limit -1) = %v, %v; want nothing", got, err)
	}
	if clients, _ := s.ListClients(c, a.ID); len(clients) != 0 {
		t.Errorf("a refused CreateClient wrote %+v", clients)
	}

	// A failing task in a batch rolls the whole batch back.
	good := newTask(a.ID, "good", "ev-good", at(0))
	clash := newTask(a.ID, "good", "ev-other", at(0)) // same ID, other key: a primary key conflict
	_, err := s.InsertDeliveryTasks(c, []store.DeliveryTask{good, clash}, []store.DeliveryAttempt{{TaskID: "good", Number: 1, Outcome: "retry"}})
	wantErr(t, err, store.ErrConflict, "InsertDeliveryTasks with two tasks of one ID")
	_, _, err = s.GetDelivery(c, a.ID, "good")
	wantErr(t, err, store.ErrNotFound, "a task of a rolled-back batch")

	// List limits: default 100, capped at 1000.
	var many []store.DeliveryTask
	for i := 0; i < 120; i++ {
		many = append(many, newTask(a.ID, fmt.Sprintf("m%03d", i), fmt.Sprintf("ev-m%d", i), at(0)))
	}
	_, err = s.InsertDeliveryTasks(c, many, nil)
	must(t, err, "InsertDeliveryTasks(120)")
	if got, _ := s.ListDeliveries(c, a.ID, store.DeliveryFilter{}); len(got) != 100 {
		t.Errorf("ListDeliveries with no limit returned %d, want the default 100", len(got))
	}
	if got, _ := s.ListDeliveries(c, a.ID, store.DeliveryFilter{Limit: 5000}); len(got) != 120 {
		t.Errorf("ListDeliveries(limit 5000) returned %d, want all 120", len(got))
	}
}
