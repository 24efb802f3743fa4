package reliability_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/otphub/otphub/app/apptest"
)

// Issue 18's tenant-isolation attacks, each reproduced against the whole
// service in-process (loopback only, bounded in count and time).

// publishTo publishes an event with a new jti sending to number, and
// returns the jti.
func publishTo(t *testing.T, c *client, publicURL string, tn tenant, number string) string {
	t.Helper()
	jti := uuid.NewString()
	topic := topicURL(publicURL, tn.name)
	body := fmt.Sprintf(`{"iss":%q,"jti":%q,"iat":%d,"aud":%q,"event":{"urn:ietf:params:notifications:smsOtp":{"organizationId":%d,"organizationName":%q,"sendTo":%q,"messageBody":"Your one-time password is 075052."}}}`,
		publicURL, jti, time.Now().UnixMilli(), topic, tn.orgID, tn.name, number)
	req, _ := http.NewRequest(http.MethodPost, c.base+"/hub?hub.mode=publish&hub.topic="+url.QueryEscape(topic), strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tn.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish to %s: %d %s", tn.name, resp.StatusCode, b)
	}
	return jti
}

// errorOf makes a request expected to fail and returns its status and
// error code.
func errorOf(t *testing.T, c *client, method, path, tok string, in any) (int, string) {
	t.Helper()
	var body io.Reader = http.NoBody
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, body)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var e struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error
}

type deliveryRow struct {
	ID, EventID, DestinationType, Status, LastError string
	Attempts                                        int
}

func deliveries(t *testing.T, c *client, tn tenant) []deliveryRow {
	t.Helper()
	var list struct{ Deliveries []deliveryRow }
	c.mustDo(t, http.MethodGet, "/api/v1/orgs/"+tn.name+"/deliveries", tn.token, nil, &list)
	return list.Deliveries
}

// smsTo counts the console provider's SMS of org to number.
func smsTo(s *apptest.TestServer, org, number string) int {
	return strings.Count(s.Stdout.String(), fmt.Sprintf("org=%s to=%q", strconv.Quote(org), number))
}

// TestCircuitBreakerIsPerTenant: one org's failing endpoint opens its own
// circuit only. Keyed by scheme://host:port, it opened another org's on
// the same host, whose first attempts were refused circuit_open and
// delivered 25-30 s late.
func TestCircuitBreakerIsPerTenant(t *testing.T) {
	s := apptest.Start(t)
	c := newClient(s.URL)
	var bad, good atomic.Int64
	host := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet { // intent verification
			io.WriteString(w, r.URL.Query().Get("hub.challenge"))
			return
		}
		if strings.HasPrefix(r.URL.Path, "/bad") {
			bad.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		good.Add(1)
	}))
	t.Cleanup(host.Close)
	failing := setupTenant(t, c, s.AdminClientID, s.AdminClientSecret, "brk-failing", "publish", "subscribe", "admin")
	healthy := setupTenant(t, c, s.AdminClientID, s.AdminClientSecret, "brk-healthy", "publish", "subscribe", "admin")
	subscribe(t, c, s.URL, failing, host.URL+"/bad")
	subscribe(t, c, s.URL, healthy, host.URL+"/good")

	for range 8 {
		publishTo(t, c, s.URL, failing, "+94771234567")
	}
	waitFor(t, 20*time.Second, "the failing org's circuit to open (5 failures)", func() bool { return bad.Load() >= 5 })
	for range 3 {
		publishTo(t, c, s.URL, healthy, "+94771234567")
	}
	// Well before the failing org's circuit half-opens (30 s).
	waitFor(t, 10*time.Second, "the healthy org's 3 deliveries", func() bool {
		return good.Load() == 3 && len(deliveries(t, c, healthy)) == 3
	})
	for _, d := range deliveries(t, c, healthy) {
		if d.Status != "delivered" || d.Attempts != 1 || strings.Contains(d.LastError, "circuit") {
			t.Errorf("healthy org's delivery %+v: want delivered at its first attempt", d)
		}
	}
}

// TestHubPublishObeysSMSPolicy: a client with only the publish scope
// made the org's provider send 12 SMS to one number (budget 10/h) and one
// to a country the org's allow-list forbids.
func TestHubPublishObeysSMSPolicy(t *testing.T) {
	s := apptest.Start(t)
	c := newClient(s.URL)
	admin := setupTenant(t, c, s.AdminClientID, s.AdminClientSecret, "pub-sms", "admin")
	c.mustDo(t, http.MethodPut, "/api/v1/orgs/pub-sms/sms-provider", admin.token, map[string]any{"type": "console"}, nil)
	c.mustDo(t, http.MethodPut, "/api/v1/orgs/pub-sms/sms-otp/settings", admin.token, map[string]any{"allowedCountryCodes": []int{94}}, nil)
	var cl struct{ ClientID, ClientSecret string }
	c.mustDo(t, http.MethodPost, "/api/v1/orgs/pub-sms/clients", admin.token, map[string]any{"name": "publisher", "scopes": []string{"publish"}}, &cl)
	pub := admin
	pub.token = c.token(t, cl.ClientID, cl.ClientSecret)

	const number = "+94771234567"
	for range 12 {
		publishTo(t, c, s.URL, pub, number)
	}
	publishTo(t, c, s.URL, pub, "+447400123456") // outside the allow-list
	publishTo(t, c, s.URL, pub, "+94112345678")  // a Sri Lankan fixed line: not an allowed type
	waitFor(t, 15*time.Second, "every delivery to finish", func() bool {
		ds := deliveries(t, c, admin)
		if len(ds) != 14 {
			return false
		}
		for _, d := range ds {
			if d.Status == "pending" {
				return false
			}
		}
		return true
	})
	if n := smsTo(s, "pub-sms", number); n != 10 {
		t.Errorf("%d SMS to %s, want the budget's 10", n, number)
	}
	if n := smsTo(s, "pub-sms", "+447400123456") + smsTo(s, "pub-sms", "+94112345678"); n != 0 {
		t.Errorf("%d SMS outside the org's policy", n)
	}
	refused := 0
	for _, d := range deliveries(t, c, admin) {
		if d.Status == "failed" && strings.Contains(d.LastError, "refused") {
			refused++
		}
		if strings.Contains(d.LastError, "+44") && strings.Contains(d.LastError, "7400123456") {
			t.Errorf("an attempt log shows the number: %q", d.LastError)
		}
	}
	if refused != 4 {
		t.Errorf("%d deliveries failed as refused by the SMS policy, want 4 (2 over budget, 2 outside the policy)", refused)
	}
	// The provider's test send is an SMS too.
	var res struct {
		OK     bool
		Reason string
	}
	c.mustDo(t, http.MethodPost, "/api/v1/orgs/pub-sms/sms-provider/test", admin.token, map[string]any{"mobile": "+447400123456"}, &res)
	if res.OK || res.Reason != "policy_refused" || smsTo(s, "pub-sms", "+447400123456") != 0 {
		t.Errorf("a test send outside the allow-list: %+v", res)
	}
}

// TestReplayOfDeliveredSMSNeedsChoiceAndBudget: three bulk replays in 9 s
// took one number from 12 to 48 SMS. Replaying a delivered SMS now needs
// "redeliverDelivered": true, and each replayed SMS is charged.
func TestReplayOfDeliveredSMSNeedsChoiceAndBudget(t *testing.T) {
	s := apptest.Start(t)
	c := newClient(s.URL)
	tn := setupTenant(t, c, s.AdminClientID, s.AdminClientSecret, "replay-sms", "admin", "publish")
	c.mustDo(t, http.MethodPut, "/api/v1/orgs/replay-sms/sms-provider", tn.token, map[string]any{"type": "console"}, nil)
	c.mustDo(t, http.MethodPut, "/api/v1/orgs/replay-sms/sms-otp/settings", tn.token, map[string]any{"maxSendsPerNumber": 3}, nil)
	const number = "+94771234567"
	publishTo(t, c, s.URL, tn, number)
	waitFor(t, 10*time.Second, "the first SMS", func() bool {
		ds := deliveries(t, c, tn)
		return len(ds) == 1 && ds[0].Status == "delivered"
	})
	id := deliveries(t, c, tn)[0].ID

	// Without the explicit choice nothing is re-sent.
	var out map[string]any
	c.mustDo(t, http.MethodPost, "/api/v1/orgs/replay-sms/deliveries/replay", tn.token, map[string]any{"status": "delivered"}, &out)
	if out["requeued"] != 0.0 || out["deliveredSmsSkipped"] != 1.0 {
		t.Fatalf("a bulk replay of delivered SMS without redeliverDelivered: %v", out)
	}
	if code, e := errorOf(t, c, http.MethodPost, "/api/v1/orgs/replay-sms/deliveries/"+id+"/retry", tn.token, nil); code != http.StatusConflict || e != "delivered_sms" {
		t.Fatalf("retrying a delivered SMS without redeliverDelivered: %d %s", code, e)
	}

	// With it, each replay is charged: 1 sent + 2 replays fill the budget of 3.
	for i := range 2 {
		c.mustDo(t, http.MethodPost, "/api/v1/orgs/replay-sms/deliveries/replay", tn.token, map[string]any{"status": "delivered", "redeliverDelivered": true}, &out)
		if out["requeued"] != 1.0 {
			t.Fatalf("replay %d: %v", i+1, out)
		}
		waitFor(t, 10*time.Second, "the replayed SMS", func() bool { return smsTo(s, "replay-sms", number) == i+2 })
		waitFor(t, 10*time.Second, "the replay to finish", func() bool { return deliveries(t, c, tn)[0].Status == "delivered" })
	}
	c.mustDo(t, http.MethodPost, "/api/v1/orgs/replay-sms/deliveries/replay", tn.token, map[string]any{"status": "delivered", "redeliverDelivered": true}, &out)
	if out["requeued"] != 0.0 || out["smsOverBudget"] != 1.0 {
		t.Fatalf("a replay over the budget: %v", out)
	}
	if code, e := errorOf(t, c, http.MethodPost, "/api/v1/orgs/replay-sms/deliveries/"+id+"/retry", tn.token, map[string]any{"redeliverDelivered": true}); code != http.StatusTooManyRequests || e != "rate_limited" {
		t.Fatalf("a retry over the budget: %d %s", code, e)
	}
	if d := deliveries(t, c, tn)[0]; d.Status != "delivered" {
		t.Fatalf("after the refused replays the delivery is %+v, want it left delivered", d)
	}
	if n := smsTo(s, "replay-sms", number); n != 3 {
		t.Fatalf("%d SMS to %s, want 3 (the budget)", n, number)
	}
}

// TestChallengeSMSChargedOnce: a challenge's SMS is charged when it is
// requested; the provider send path must not charge it again (with a
// budget of 3, three challenges send three SMS, the fourth is refused).
func TestChallengeSMSChargedOnce(t *testing.T) {
	s := apptest.Start(t)
	c := newClient(s.URL)
	tn := setupTenant(t, c, s.AdminClientID, s.AdminClientSecret, "once-sms", "admin", "otp")
	c.mustDo(t, http.MethodPut, "/api/v1/orgs/once-sms/sms-provider", tn.token, map[string]any{"type": "console"}, nil)
	c.mustDo(t, http.MethodPut, "/api/v1/orgs/once-sms/sms-otp/settings", tn.token, map[string]any{"maxSendsPerNumber": 3}, nil)
	const number = "+94771234567"
	start := map[string]any{"mobile": number, "userId": "u", "application": "app"}
	for range 3 {
		c.mustDo(t, http.MethodPost, "/api/v1/orgs/once-sms/sms-otp/challenges", tn.token, start, nil)
	}
	waitFor(t, 10*time.Second, "the three SMS", func() bool { return smsTo(s, "once-sms", number) == 3 })
	if code, e := errorOf(t, c, http.MethodPost, "/api/v1/orgs/once-sms/sms-otp/challenges", tn.token, start); code != http.StatusTooManyRequests || e != "rate_limited" {
		t.Fatalf("a fourth challenge: %d %s", code, e)
	}
	for _, d := range deliveries(t, c, tn) {
		if d.Status != "delivered" {
			t.Errorf("challenge delivery %+v, want delivered", d)
		}
	}
}
