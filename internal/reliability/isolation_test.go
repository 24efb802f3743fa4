package reliability_test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/otphub/otphub/app/apptest"
)

// TestSameJTIInTwoOrgs publishes one jti in two orgs, each with the console
// SMS provider (destination console/primary in both). Delivery idempotency
// is per org: both SMS are sent and each org's deliveries list shows its own
// delivered task. Keyed by jti alone, the second org's event was taken for a
// duplicate of the first's: acknowledged, never sent.
func TestSameJTIInTwoOrgs(t *testing.T) {
	s := apptest.Start(t)
	c := newClient(s.URL)
	jti := uuid.NewString()
	orgs := []string{"jti-a", "jti-b"}
	tenants := map[string]tenant{}
	for _, name := range orgs {
		tn := setupTenant(t, c, s.AdminClientID, s.AdminClientSecret, name, "publish", "admin")
		c.mustDo(t, http.MethodPut, "/api/v1/orgs/"+name+"/sms-provider", tn.token, map[string]any{"type": "console"}, nil)
		tenants[name] = tn
	}
	for _, name := range orgs {
		publishJTI(t, c, s.URL, tenants[name], jti)
		// One at a time, so the second org's event meets the first's record.
		waitFor(t, 10*time.Second, name+"'s SMS on the console", func() bool {
			return strings.Contains(s.Stdout.String(), consoleLine(name, jti))
		})
	}
	for _, name := range orgs {
		// The task is marked delivered just after the SMS is sent: poll.
		var list struct {
			Deliveries []struct {
				EventID, DestinationType, DestinationID, Status string
			}
		}
		ok := func() bool {
			c.mustDo(t, http.MethodGet, "/api/v1/orgs/"+name+"/deliveries", tenants[name].token, nil, &list)
			return len(list.Deliveries) == 1 && list.Deliveries[0].EventID == jti && list.Deliveries[0].DestinationType == "console" &&
				list.Deliveries[0].DestinationID == "primary" && list.Deliveries[0].Status == "delivered"
		}
		deadline := time.Now().Add(10 * time.Second)
		for !ok() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !ok() {
			t.Errorf("%s's deliveries = %+v, want its own delivered console task of %s", name, list.Deliveries, jti)
		}
	}
	if n := strings.Count(s.Stdout.String(), "id="+strconv.Quote(jti)); n != 2 {
		t.Errorf("%d SMS of jti %s on the console, want 2 (one per org):\n%s", n, jti, s.Stdout.String())
	}
}

// consoleLine is the start of the console provider's line for org and jti.
func consoleLine(org, jti string) string {
	return fmt.Sprintf(`org=%s to="+94771234567" id=%s`, strconv.Quote(org), strconv.Quote(jti))
}

// publishJTI publishes an event with jti to tn's topic by POST /hub and
// fails unless the hub acknowledges it.
func publishJTI(t *testing.T, c *client, publicURL string, tn tenant, jti string) {
	t.Helper()
	topic := topicURL(publicURL, tn.name)
	body := fmt.Sprintf(`{"iss":%q,"jti":%q,"iat":%d,"aud":%q,"event":{"urn:ietf:params:notifications:smsOtp":{"organizationId":%d,"organizationName":%q,"sendTo":"+94771234567","messageBody":"Your one-time password is 075052. This expires in 5 minutes."}}}`,
		publicURL, jti, time.Now().UnixMilli(), topic, tn.orgID, tn.name)
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
		t.Fatalf("publish %s to %s: %d %s", jti, tn.name, resp.StatusCode, b)
	}
}
