package reliability_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/app/apptest"
)

// TestBackpressurePerDestination: back-pressure counts pending deliveries
// per destination and refuses an org only when every destination it has
// is backed up. An org whose only webhook hangs builds a backlog of
// pending retry tasks and, past --max-pending-per-destination, gets its
// new events (HTTP publish and OTP challenges) refused with 503
// delivery_backlog and Retry-After; an org with the same backlog on one
// hanging webhook beside a healthy one is never refused and keeps
// delivering to the healthy one; another org is unaffected.
func TestBackpressurePerDestination(t *testing.T) {
	const limit = 5
	// A short attempt timeout turns held deliveries into retry tasks fast;
	// a short gate interval lets the gate see them fast.
	s := apptest.StartWith(t, apptest.Options{BacklogInterval: 50 * time.Millisecond},
		"--max-pending-per-destination", strconv.Itoa(limit), "--delivery-timeout", "200ms", "--log-level", "error")
	c := newClient(s.URL)
	stuckHook, mixedHook := newHanger(t), newHanger(t)
	up := newReceiver(t, nil)
	stuck := setupTenant(t, c, s.AdminClientID, s.AdminClientSecret, "stuck", "publish", "subscribe", "otp", "admin")
	mixed := setupTenant(t, c, s.AdminClientID, s.AdminClientSecret, "mixed", "publish", "subscribe", "admin")
	fine := setupTenant(t, c, s.AdminClientID, s.AdminClientSecret, "fine", "publish", "subscribe", "admin")
	subscribe(t, c, s.URL, stuck, stuckHook.URL+"/cb")
	subscribe(t, c, s.URL, mixed, mixedHook.URL+"/cb", up.URL+"/cb")
	subscribe(t, c, s.URL, fine, up.URL+"/fine")

	// The mixed org's hanging webhook goes over the limit first, so that
	// when the gate refuses the stuck org it has seen both backlogs.
	stuckPub, mixedPub, finePub := newPublisher(s.URL, stuck), newPublisher(s.URL, mixed), newPublisher(s.URL, fine)
	for range limit + 3 {
		if !mixedPub.publish(context.Background(), c) {
			t.Fatal("the mixed org was refused below the limit")
		}
	}
	waitFor(t, 20*time.Second, "the mixed org's hanging webhook over the limit", func() bool {
		return pendingTo(t, c, mixed, mixedHook.URL) > limit
	})
	for range limit + 3 {
		if !stuckPub.publish(context.Background(), c) {
			t.Fatal("the stuck org was refused below the limit")
		}
	}
	waitFor(t, 20*time.Second, "the stuck org refused", func() bool {
		return !stuckPub.publish(context.Background(), c)
	})
	status, retryAfter, code := publishRaw(t, c, stuckPub)
	if status != http.StatusServiceUnavailable || retryAfter == "" || code != "delivery_backlog" {
		t.Fatalf("backlogged publish: %d Retry-After=%q error=%q", status, retryAfter, code)
	}
	req, _ := http.NewRequest(http.MethodPost, c.base+"/api/v1/orgs/stuck/sms-otp/challenges",
		strings.NewReader(`{"mobile":"+94771234567","userId":"alice","application":"myapp"}`))
	req.Header.Set("Authorization", "Bearer "+stuck.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var challenge struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&challenge)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || challenge.Error != "delivery_backlog" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("backlogged challenge: %d %q Retry-After=%q", resp.StatusCode, challenge.Error, resp.Header.Get("Retry-After"))
	}

	// The mixed org's hanging webhook is as backed up as the stuck org's,
	// but its healthy webhook takes new events: never refused.
	if n := pendingTo(t, c, mixed, mixedHook.URL); n <= limit {
		t.Fatalf("the mixed org's hanging webhook has %d pending tasks; the test needs more than %d", n, limit)
	}
	for range 3 {
		if !mixedPub.publish(context.Background(), c) {
			t.Fatal("an org with one healthy webhook beside a backed-up one was refused")
		}
	}
	// Another tenant is not affected.
	for range 3 {
		if !finePub.publish(context.Background(), c) {
			t.Fatal("an org without a backlog was refused")
		}
	}
	waitDelivered(t, up, append(mixedPub.ackedIDs(), finePub.ackedIDs()...), 30*time.Second, deliveryDiag(t, c, mixed))
	if mixedPub.failed.Load() != 0 || finePub.failed.Load() != 0 {
		t.Fatalf("refused publishes: mixed %d, fine %d; want none", mixedPub.failed.Load(), finePub.failed.Load())
	}
}

// pendingTo counts the org's pending deliveries to its subscription whose
// callback is on base.
func pendingTo(t *testing.T, c *client, tn tenant, base string) int {
	t.Helper()
	var subs struct {
		Subscriptions []struct {
			ID       string `json:"id"`
			Callback string `json:"callback"`
		} `json:"subscriptions"`
	}
	c.mustDo(t, http.MethodGet, "/api/v1/orgs/"+tn.name+"/subscriptions", tn.token, nil, &subs)
	id := ""
	for _, s := range subs.Subscriptions {
		if strings.HasPrefix(s.Callback, base+"/") {
			id = s.ID
		}
	}
	if id == "" {
		t.Fatalf("no subscription of %s on %s", tn.name, base)
	}
	var list struct {
		Deliveries []struct {
			DestinationID string `json:"destinationId"`
		} `json:"deliveries"`
	}
	c.mustDo(t, http.MethodGet, "/api/v1/orgs/"+tn.name+"/deliveries?status=pending&limit=1000", tn.token, nil, &list)
	n := 0
	for _, d := range list.Deliveries {
		if d.DestinationID == id {
			n++
		}
	}
	return n
}

// publishRaw publishes one event and returns the status, Retry-After and
// error code of the answer.
func publishRaw(t *testing.T, c *client, p *publisher) (int, string, string) {
	t.Helper()
	topic := topicURL(p.publicURL, p.tn.name)
	body := `{"iss":"` + p.publicURL + `","jti":"5b0c7b3e-2f7a-4d2e-9d3b-7c1e0a9f4b21","iat":1659732032884,"aud":"` + topic +
		`","event":{"urn:ietf:params:notifications:smsOtp":{"organizationId":` + itoa(p.tn.orgID) + `,"organizationName":"` + p.tn.name +
		`","sendTo":"+94771234567","messageBody":"Your one-time password is 075052."}}}`
	req, _ := http.NewRequest(http.MethodPost, c.base+"/hub?hub.mode=publish&hub.topic="+topic, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+p.tn.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, resp.Header.Get("Retry-After"), e.Error
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
