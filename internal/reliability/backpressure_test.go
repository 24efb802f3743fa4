package reliability_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/app/apptest"
)

// TestBackpressurePerOrg: an org whose only endpoint refuses every delivery
// builds a backlog of pending retry tasks; past --max-pending-per-org its
// new events (HTTP publish and OTP challenges) are refused with 503
// delivery_backlog and Retry-After, while another org keeps publishing.
func TestBackpressurePerOrg(t *testing.T) {
	const limit = 5
	s := apptest.Start(t, "--max-pending-per-org", "5", "--log-level", "error")
	c := newClient(s.URL)
	down := newReceiver(t, func(string, int, int64) int { return http.StatusServiceUnavailable })
	up := newReceiver(t, nil)
	slow := setupTenant(t, c, s.AdminClientID, s.AdminClientSecret, "slow", "publish", "subscribe", "otp", "admin")
	fine := setupTenant(t, c, s.AdminClientID, s.AdminClientSecret, "fine", "publish", "subscribe", "admin")
	subscribe(t, c, s.URL, slow, down.URL+"/cb")
	subscribe(t, c, s.URL, fine, up.URL+"/cb")

	slowPub, finePub := newPublisher(s.URL, slow), newPublisher(s.URL, fine)
	for range limit + 3 {
		if !slowPub.publish(context.Background(), c) {
			t.Fatal("publishing below the limit failed")
		}
	}
	// The failed first attempts become pending retry tasks; the gate sees
	// them at its next refresh (every 2 s).
	waitFor(t, 20*time.Second, "the slow org refused", func() bool {
		return !slowPub.publish(context.Background(), c)
	})
	status, retryAfter, code := publishRaw(t, c, slowPub)
	if status != http.StatusServiceUnavailable || retryAfter == "" || code != "delivery_backlog" {
		t.Fatalf("backlogged publish: %d Retry-After=%q error=%q", status, retryAfter, code)
	}
	req, _ := http.NewRequest(http.MethodPost, c.base+"/api/v1/orgs/slow/sms-otp/challenges",
		strings.NewReader(`{"mobile":"+94771234567","userId":"alice","application":"myapp"}`))
	req.Header.Set("Authorization", "Bearer "+slow.token)
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
	// Another tenant is not affected.
	for range 3 {
		if !finePub.publish(context.Background(), c) {
			t.Fatal("an org without a backlog was refused")
		}
	}
	waitDelivered(t, up, finePub.ackedIDs(), 30*time.Second, deliveryDiag(t, c, fine))
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
