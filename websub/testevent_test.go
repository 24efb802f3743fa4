package websub_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/egress"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/websub"
)

// TestTestEventRoute: the test route appends one test event restricted to
// the subscription (ce_otphubdest) to the log, like a publish; it refuses
// a disabled subscription (409), a deleted one (404) and more than
// TestEventsPerMinute per org (429 with Retry-After).
func TestTestEventRoute(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *websub.Config, _ *egress.Config) { c.TestEventsPerMinute, c.TestEventWait = 2, -1 })
	org := e.org("tests")
	tok := e.token(org, access.ScopeSubscribe)
	sub := newSubscriber(t)
	e.subscribe(tok, e.topic(org.Name), sub.URL+"/cb", nil)
	e.waitVerifications("verified", 1)
	s, ok := e.findSub(org, sub.URL+"/cb")
	if !ok {
		t.Fatal("no subscription")
	}
	path := "/api/v1/orgs/tests/subscriptions/" + s.ID + "/test"

	r := e.do(http.MethodPost, path, tok, "", nil)
	if r.code != http.StatusAccepted {
		t.Fatalf("test event: %d %s", r.code, r.body)
	}
	var out websub.TestEventResponse
	if err := json.Unmarshal(r.body, &out); err != nil || out.EventID == "" || out.SubscriptionID != s.ID || out.Topic != e.topic(org.Name) {
		t.Fatalf("answer %s (%v)", r.body, err)
	}
	if got := e.metric("otphub_events_published_total", "source", "test"); got != 1 {
		t.Errorf("published{test} = %v", got)
	}
	m := e.firstLogRecord()
	ev, err := event.DecodeBinary(m.Key, m.Headers, m.Value)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != out.EventID || ev.Destination != "webhook:"+s.ID || ev.SendTo != websub.TestEventSendTo ||
		ev.MessageBody != websub.TestEventMessageBody || ev.OrganizationID != org.ID || ev.Audience != e.topic(org.Name) {
		t.Errorf("the log holds %+v", ev)
	}

	r = e.do(http.MethodPost, path, tok, "", nil) // the second of two per minute
	if r.code != http.StatusAccepted {
		t.Fatalf("second test event: %d %s", r.code, r.body)
	}
	r = e.do(http.MethodPost, path, tok, "", nil)
	if r.code != http.StatusTooManyRequests || r.errorCode() != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Errorf("third test event in a minute: %d %v %s", r.code, r.header, r.body)
	}

	// Disabled (as a 410 Gone does): nothing would be delivered.
	if err := e.st.SetSubscriptionState(e.ctx, org.ID, s.ID, store.SubDisabled); err != nil {
		t.Fatal(err)
	}
	r = e.do(http.MethodPost, path, tok, "", nil)
	if r.code != http.StatusConflict || r.errorCode() != "subscription_not_active" || !strings.Contains(string(r.body), "disabled") {
		t.Errorf("disabled subscription: %d %s", r.code, r.body)
	}
	if r := e.do(http.MethodDelete, "/api/v1/orgs/tests/subscriptions/"+s.ID, tok, "", nil); r.code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.code, r.body)
	}
	r = e.do(http.MethodPost, path, tok, "", nil)
	if r.code != http.StatusNotFound || r.errorCode() != "subscription_not_found" {
		t.Errorf("deleted subscription: %d %s", r.code, r.body)
	}
	if r := e.do(http.MethodPost, path, "", "", nil); r.code != http.StatusUnauthorized {
		t.Errorf("no token: %d %s", r.code, r.body)
	}
}

// TestPublishCannotRestrictDestination: ce-otphubdest on a published
// binary-mode CloudEvent is dropped, so a publisher's event goes to every
// destination of its org; only the hub's test event is restricted.
func TestPublishCannotRestrictDestination(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("restrict")
	tok := e.token(org, access.ScopePublish)
	ev, _ := eventFor(t, org)
	body, _ := json.Marshal(map[string]any{"organizationId": org.ID, "organizationName": org.Name, "sendTo": ev.SendTo, "messageBody": ev.MessageBody})
	q := url.Values{"hub.mode": {"publish"}, "hub.topic": {e.topic(org.Name)}}
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodPost, e.base+"/hub?"+q.Encode(), strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range map[string]string{"specversion": "1.0", "id": uuid.NewString(), "source": "https://auth.example",
		"type": event.SmsOtpEventURI, "otphubdest": "webhook:someone"} {
		req.Header.Set("Ce-"+k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish: %d", resp.StatusCode)
	}
	if v, ok := e.firstLogRecord().Headers[event.HeaderDestination]; ok {
		t.Errorf("the published record is restricted to %q", v)
	}
}
