package storetest

import (
	"testing"
	"time"

	"github.com/otphub/otphub/store"
)

// testOrgDeliveryStats: per hour (by task creation) outcomes of one org's
// webhook and SMS deliveries, what receipts said of the SMS, and the
// latency histograms (first attempt's start to first success's end for
// webhooks, acceptance to delivery receipt for SMS); other orgs, other
// hours and another org's receipt of the same event are left out; the
// window is bounded.
func testOrgDeliveryStats(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	since := base.Truncate(time.Hour)
	var tasks []store.DeliveryTask
	var atts []store.DeliveryAttempt
	task := func(org store.Org, id, destType, slot, status string, created time.Duration) store.DeliveryTask {
		tk := newTask(org.ID, id, "ev-"+id, since.Add(created))
		tk.DestinationType, tk.DestinationID, tk.Status = destType, slot, status
		tasks = append(tasks, tk)
		return tk
	}
	attempt := func(tk store.DeliveryTask, n int, start, d time.Duration, outcome string) {
		atts = append(atts, store.DeliveryAttempt{TaskID: tk.ID, Number: n, StartedAt: tk.CreatedAt.Add(start), Duration: d, Outcome: outcome})
	}
	// Hour 0, webhooks: delivered at once (30 ms), after a retry 2 s later
	// (2.015 s in all), delivered then replayed and delivered again (its
	// first success counts: 40 ms); one dead, one pending, one delivered
	// with no attempt log (counted, no latency).
	w1 := task(a, "w1", "webhook", "sub-1", store.DeliveryDelivered, 10*time.Minute)
	attempt(w1, 1, -30*time.Millisecond, 30*time.Millisecond, "success")
	w2 := task(a, "w2", "webhook", "sub-1", store.DeliveryDelivered, 20*time.Minute)
	attempt(w2, 1, 0, 5*time.Millisecond, "retry")
	attempt(w2, 2, 2*time.Second, 15*time.Millisecond, "success")
	w3 := task(a, "w3", "webhook", "sub-2", store.DeliveryDelivered, 30*time.Minute)
	attempt(w3, 1, 0, 40*time.Millisecond, "success")
	attempt(w3, 2, 2*time.Hour, time.Millisecond, "success")
	dead := task(a, "w4", "webhook", "sub-1", store.DeliveryDead, 40*time.Minute)
	attempt(dead, 1, 0, time.Millisecond, "retry")
	attempt(dead, 2, time.Minute, time.Millisecond, "permanent")
	task(a, "w5", "webhook", "sub-1", store.DeliveryPending, 50*time.Minute)
	task(a, "w6", "webhook", "sub-1", store.DeliveryDelivered, 55*time.Minute)
	// Hour 0, SMS: two accepted by the provider (delivered tasks), one
	// failed, one expired.
	s1 := task(a, "s1", "twilio", store.ProviderPrimary, store.DeliveryDelivered, time.Minute)
	s2 := task(a, "s2", "twilio", store.ProviderPrimary, store.DeliveryDelivered, 2*time.Minute)
	task(a, "s3", "vonage", store.ProviderPrimary, store.DeliveryFailed, 3*time.Minute)
	s4 := task(a, "s4", "custom", store.ProviderFallback, store.DeliveryExpired, 4*time.Minute)
	// Hour 2: a webhook (1 s) and an SMS by the fallback.
	w7 := task(a, "w7", "webhook", "sub-1", store.DeliveryDelivered, 2*time.Hour+time.Minute)
	attempt(w7, 1, 0, time.Second, "success")
	s5 := task(a, "s5", "twilio", store.ProviderFallback, store.DeliveryDelivered, 2*time.Hour+59*time.Minute)
	// Left out: before and after the window, another org's.
	out1 := task(a, "x1", "webhook", "sub-1", store.DeliveryDelivered, -time.Microsecond)
	attempt(out1, 1, 0, time.Millisecond, "success")
	out2 := task(a, "x2", "webhook", "sub-1", store.DeliveryDelivered, 3*time.Hour)
	attempt(out2, 1, 0, time.Millisecond, "success")
	ob := task(b, "x3", "webhook", "sub-1", store.DeliveryDelivered, time.Minute)
	attempt(ob, 1, 0, time.Millisecond, "success")
	task(b, "x4", "twilio", store.ProviderPrimary, store.DeliveryDelivered, time.Minute)
	_, err := s.InsertDeliveryTasks(c, tasks, atts)
	must(t, err, "InsertDeliveryTasks")

	// Receipts: s1 delivered 4 s after acceptance, s2 undelivered, s4 only
	// accepted, s5 delivered after 800 ms; org b's record of s1's event and
	// slot, and of its own task, are not org a's.
	record := func(org store.Org, tk store.DeliveryTask, state string, after time.Duration) {
		key := store.ReceiptKey{OrgID: org.ID, EventID: tk.EventID, DestinationType: tk.DestinationType, DestinationID: tk.DestinationID}
		rec := accepted(key, "SM-"+tk.ID, tk.CreatedAt)
		must(t, s.RecordSMSAccepted(c, rec), "RecordSMSAccepted")
		if state != "" {
			rc := receipt(key, rec.ProviderMessageID, state, tk.CreatedAt.Add(after))
			apply(t, s, rc)
		}
	}
	record(a, s1, store.HandsetDelivered, 4*time.Second)
	record(a, s2, store.HandsetUndelivered, time.Second)
	record(a, s4, "", 0)
	record(a, s5, store.HandsetDelivered, 800*time.Millisecond)
	record(b, s1, store.HandsetDelivered, time.Second)
	record(b, tasks[len(tasks)-1], store.HandsetDelivered, time.Second)

	st, err := s.OrgDeliveryStats(c, a.ID, since, since.Add(3*time.Hour))
	must(t, err, "OrgDeliveryStats")
	if len(st.Hours) != 3 {
		t.Fatalf("OrgDeliveryStats hours = %+v, want 3", st.Hours)
	}
	for i, h := range st.Hours {
		if !h.Start.Equal(since.Add(time.Duration(i) * time.Hour)) {
			t.Fatalf("hour %d starts at %v", i, h.Start)
		}
	}
	h0, h1, h2 := st.Hours[0], st.Hours[1], st.Hours[2]
	eq(t, h0.Webhook, store.DeliveryOutcomes{Delivered: 4, Failed: 1, Pending: 1}, "hour 0 webhooks")
	eq(t, h0.SMS, store.DeliveryOutcomes{Delivered: 2, Failed: 2}, "hour 0 SMS")
	eq(t, h0.Handset, store.HandsetCounts{Records: 3, Delivered: 1, Failed: 1, Awaiting: 1}, "hour 0 handsets")
	wl := h0.WebhookLatency
	eq(t, len(wl), len(store.LatencyBounds)+1, "buckets of a histogram")
	eq(t, wl.Count(), int64(3), "hour 0 webhook latencies")
	// 30 and 40 ms share the 20–50 ms bucket (index 5); 2.015 s is in 2–5 s.
	eq(t, wl[5], store.LatencyBucket{Count: 2, Min: 30 * time.Millisecond, Max: 40 * time.Millisecond}, "the 20-50 ms bucket")
	eq(t, wl[11], store.LatencyBucket{Count: 1, Min: 2015 * time.Millisecond, Max: 2015 * time.Millisecond}, "the 2-5 s bucket")
	eq(t, wl.Quantile(0.5), 40*time.Millisecond, "hour 0 webhook median")
	eq(t, wl.Quantile(0.9), 2015*time.Millisecond, "hour 0 webhook 90th percentile")
	eq(t, h0.HandsetLatency.Count(), int64(1), "hour 0 handset latencies")
	eq(t, h0.HandsetLatency.Quantile(0.5), 4*time.Second, "hour 0 handset median")

	eq(t, h1.Webhook, store.DeliveryOutcomes{}, "hour 1 webhooks")
	eq(t, h1.SMS, store.DeliveryOutcomes{}, "hour 1 SMS")
	eq(t, h1.Handset, store.HandsetCounts{}, "hour 1 handsets")
	eq(t, h1.WebhookLatency.Count()+h1.HandsetLatency.Count(), int64(0), "hour 1 latencies")
	if h1.WebhookLatency != nil || h1.HandsetLatency != nil {
		t.Errorf("hour 1 histograms = %v, %v; want nil", h1.WebhookLatency, h1.HandsetLatency)
	}

	eq(t, h2.Webhook, store.DeliveryOutcomes{Delivered: 1}, "hour 2 webhooks")
	eq(t, h2.SMS, store.DeliveryOutcomes{Delivered: 1}, "hour 2 SMS")
	eq(t, h2.Handset, store.HandsetCounts{Records: 1, Delivered: 1}, "hour 2 handsets")
	eq(t, h2.WebhookLatency.Quantile(0.5), time.Second, "hour 2 webhook median")
	eq(t, h2.HandsetLatency.Quantile(0.9), 800*time.Millisecond, "hour 2 handset 90th percentile")

	// Merged over the window: 30 ms, 40 ms, 1 s, 2.015 s.
	var all store.LatencyHistogram
	for _, h := range st.Hours {
		all.Add(h.WebhookLatency)
	}
	eq(t, all.Count(), int64(4), "webhook latencies of the window")
	eq(t, all.Quantile(0.5), time.Second, "webhook median of the window")
	eq(t, all.Max(), 2015*time.Millisecond, "greatest webhook latency of the window")

	// A partial last hour is a bucket of its own; another org's window
	// sees only its own.
	st, err = s.OrgDeliveryStats(c, a.ID, since.Add(time.Hour), since.Add(2*time.Hour+30*time.Minute))
	must(t, err, "OrgDeliveryStats(partial)")
	eq(t, len(st.Hours), 2, "hours of a 90-minute window")
	eq(t, st.Hours[1].Webhook.Delivered, int64(1), "webhooks of the partial hour")
	eq(t, st.Hours[1].SMS, store.DeliveryOutcomes{}, "SMS of the partial hour (s5 is after it)")
	st, err = s.OrgDeliveryStats(c, b.ID, since, since.Add(time.Hour))
	must(t, err, "OrgDeliveryStats(org b)")
	eq(t, st.Hours[0].Webhook, store.DeliveryOutcomes{Delivered: 1}, "org b's webhooks")
	eq(t, st.Hours[0].SMS, store.DeliveryOutcomes{Delivered: 1}, "org b's SMS")
	eq(t, st.Hours[0].Handset, store.HandsetCounts{Records: 1, Delivered: 1}, "org b's handsets (not its record of org a's event)")
	eq(t, st.Hours[0].WebhookLatency.Quantile(0.5), time.Millisecond, "org b's webhook latency")

	if _, err := s.OrgDeliveryStats(c, a.ID, since, since.Add(store.MaxStatsWindow+time.Hour)); err == nil {
		t.Fatal("OrgDeliveryStats over more than MaxStatsWindow: no error")
	}
	if _, err := s.OrgDeliveryStats(c, a.ID, since, since); err == nil {
		t.Fatal("OrgDeliveryStats of an empty window: no error")
	}
}
