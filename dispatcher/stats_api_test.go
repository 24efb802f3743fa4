package dispatcher_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/google/uuid"

	"github.com/otphub/otphub/store"
)

// TestDeliveryStatsAPI: GET …/deliveries/stats over a real server and
// store sums up the org's deliveries per hour of creation and over the
// window (webhook and SMS outcomes, handset receipts, latency percentiles
// from the store's histograms); it is the org admin's, and bad windows
// are 400 invalid_hours like GET …/sms-otp/stats.
func TestDeliveryStatsAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := time.Date(2026, 3, 4, 7, 40, 0, 0, time.UTC)
	api := newAPIAt(t, e, func() time.Time { return now })
	ctx := context.Background()

	var tasks []store.DeliveryTask
	var atts []store.DeliveryAttempt
	add := func(orgID int64, destType, status string, created time.Time, latencies ...time.Duration) store.DeliveryTask {
		tk := store.DeliveryTask{ID: uuid.NewString(), OrgID: orgID, EventID: uuid.NewString(), DestinationType: destType,
			DestinationID: "sub-1", Event: []byte(`{}`), Status: status, Attempts: len(latencies), CreatedAt: created, UpdatedAt: created}
		if destType != "webhook" {
			tk.DestinationID = store.ProviderPrimary
		}
		for i, d := range latencies {
			atts = append(atts, store.DeliveryAttempt{TaskID: tk.ID, Number: i + 1, StartedAt: created.Add(-d), Duration: d, Outcome: "success"})
		}
		tasks = append(tasks, tk)
		return tk
	}
	h7, h5 := now.Truncate(time.Hour), now.Truncate(time.Hour).Add(-2*time.Hour)
	// 07:00: webhooks delivered in 10, 20 and 300 ms, one dead; an SMS
	// delivered to the handset 3 s after acceptance, one failed.
	add(e.orgID, "webhook", store.DeliveryDelivered, h7.Add(time.Minute), 10*time.Millisecond)
	add(e.orgID, "webhook", store.DeliveryDelivered, h7.Add(2*time.Minute), 20*time.Millisecond)
	add(e.orgID, "webhook", store.DeliveryDelivered, h7.Add(3*time.Minute), 300*time.Millisecond)
	add(e.orgID, "webhook", store.DeliveryDead, h7.Add(4*time.Minute))
	sms := add(e.orgID, "twilio", store.DeliveryDelivered, h7.Add(5*time.Minute))
	add(e.orgID, "twilio", store.DeliveryFailed, h7.Add(6*time.Minute))
	// 05:00: a webhook delivered in 1 s, one pending.
	add(e.orgID, "webhook", store.DeliveryDelivered, h5.Add(time.Minute), time.Second)
	add(e.orgID, "webhook", store.DeliveryPending, h5.Add(2*time.Minute))
	other, err := e.st.CreateOrg(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	add(other.ID, "webhook", store.DeliveryDelivered, h7, time.Minute)
	if _, err := e.st.InsertDeliveryTasks(ctx, tasks, atts); err != nil {
		t.Fatal(err)
	}
	key := store.ReceiptKey{OrgID: e.orgID, EventID: sms.EventID, DestinationType: "twilio", DestinationID: store.ProviderPrimary}
	if err := e.st.RecordSMSAccepted(ctx, store.SMSReceipt{ReceiptKey: key, ProviderMessageID: "SM1", AcceptedAt: sms.CreatedAt, ExpiresAt: sms.CreatedAt.Add(5 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.ApplyReceipt(ctx, store.Receipt{ReceiptKey: key, ProviderMessageID: "SM1", State: store.HandsetDelivered, At: sms.CreatedAt.Add(3 * time.Second), ReceivedAt: sms.CreatedAt.Add(4 * time.Second)}); err != nil {
		t.Fatal(err)
	}

	type latency struct {
		Count               int
		P50ms, P90ms, Maxms float64
	}
	type counts struct {
		Webhooks struct {
			Delivered, Failed, Pending int
			Latency                    latency
		}
		SMS struct {
			Delivered, Failed, Pending int
			Handset                    struct {
				Records, Delivered, Failed, Awaiting int
				Latency                              latency
			}
		}
	}
	var got struct {
		From, Until time.Time
		Hours       []struct {
			Start time.Time
			counts
		}
		Totals counts
	}
	body := api.do(http.MethodGet, "/api/v1/orgs/acme/deliveries/stats?hours=3", "", http.StatusOK, &got)
	// The answer is what docs/openapi.yaml declares.
	doc, err := openapi3.NewLoader().LoadFromFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var raw any
	if err := json.Unmarshal([]byte(body), &raw); err != nil {
		t.Fatal(err)
	}
	if err := doc.Components.Schemas["DeliveryStats"].Value.VisitJSON(raw); err != nil {
		t.Errorf("the answer does not match docs/openapi.yaml's DeliveryStats: %v", err)
	}
	if !got.From.Equal(h5) || !got.Until.Equal(h7.Add(time.Hour)) || len(got.Hours) != 3 {
		t.Fatalf("window %v to %v, %d hours", got.From, got.Until, len(got.Hours))
	}
	for i, h := range got.Hours {
		if !h.Start.Equal(h5.Add(time.Duration(i) * time.Hour)) {
			t.Errorf("hour %d starts %v", i, h.Start)
		}
	}
	h := got.Hours[2]
	if w := h.Webhooks; w.Delivered != 3 || w.Failed != 1 || w.Pending != 0 || w.Latency != (latency{3, 20, 300, 300}) {
		t.Errorf("07:00 webhooks = %+v", w)
	}
	if s := h.SMS; s.Delivered != 1 || s.Failed != 1 || s.Handset.Records != 1 || s.Handset.Delivered != 1 ||
		s.Handset.Latency != (latency{1, 3000, 3000, 3000}) {
		t.Errorf("07:00 SMS = %+v", s)
	}
	if w := got.Hours[1].Webhooks; w.Delivered+w.Failed+w.Pending != 0 || w.Latency != (latency{}) {
		t.Errorf("06:00 webhooks = %+v", w)
	}
	if w := got.Hours[0].Webhooks; w.Delivered != 1 || w.Pending != 1 || w.Latency != (latency{1, 1000, 1000, 1000}) {
		t.Errorf("05:00 webhooks = %+v", w)
	}
	// The window's percentiles are the merged histogram's: 10, 20, 300 ms
	// and 1 s (the other org's minute is not acme's).
	if w := got.Totals.Webhooks; w.Delivered != 4 || w.Failed != 1 || w.Pending != 1 || w.Latency != (latency{4, 300, 1000, 1000}) {
		t.Errorf("totals webhooks = %+v", w)
	}
	if s := got.Totals.SMS; s.Delivered != 1 || s.Failed != 1 || s.Handset.Records != 1 || s.Handset.Latency.Count != 1 {
		t.Errorf("totals SMS = %+v", s)
	}

	// The default window is 24 hours; 168 is the longest.
	api.do(http.MethodGet, "/api/v1/orgs/acme/deliveries/stats", "", http.StatusOK, &got)
	if len(got.Hours) != 24 || !got.Until.Equal(h7.Add(time.Hour)) || got.Totals.Webhooks.Delivered != 4 {
		t.Errorf("default window: %d hours until %v, %d delivered", len(got.Hours), got.Until, got.Totals.Webhooks.Delivered)
	}
	api.do(http.MethodGet, "/api/v1/orgs/acme/deliveries/stats?hours=168", "", http.StatusOK, &got)
	if len(got.Hours) != 168 {
		t.Errorf("hours=168: %d hours", len(got.Hours))
	}
	for _, q := range []string{"0", "169", "-1", "abc", "1.5", "", "24&hours=48"} {
		var eb struct{ Error, Message string }
		api.do(http.MethodGet, "/api/v1/orgs/acme/deliveries/stats?hours="+q, "", http.StatusBadRequest, &eb)
		if eb.Error != "invalid_hours" || eb.Message != "hours must be an integer from 1 to 168" {
			t.Errorf("hours=%s: %+v", q, eb)
		}
	}

	// Org admins only, of their own org.
	c := api.with(t)
	c.tok = ""
	c.wantError(http.MethodGet, "/api/v1/orgs/acme/deliveries/stats", "", http.StatusUnauthorized, "unauthorized")
	c.tok = "otp"
	c.wantError(http.MethodGet, "/api/v1/orgs/acme/deliveries/stats", "", http.StatusForbidden, "forbidden")
	c.tok = "admin"
	c.wantError(http.MethodGet, "/api/v1/orgs/other/deliveries/stats", "", http.StatusForbidden, "forbidden")
	c.tok = "platform"
	c.wantError(http.MethodGet, "/api/v1/orgs/nosuch/deliveries/stats", "", http.StatusNotFound, "org_not_found")
	c.do(http.MethodGet, "/api/v1/orgs/other/deliveries/stats?hours=1", "", http.StatusOK, &got)
	if w := got.Totals.Webhooks; w.Delivered != 1 || w.Latency.P50ms != 60000 {
		t.Errorf("other's stats = %+v", w)
	}
}
