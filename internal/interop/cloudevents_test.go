package interop

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/otphub/otphub/event"
)

// TestCloudEventsPublishedOverHTTP: an outside producer publishes with the
// official CloudEvents SDK for JavaScript (npm cloudevents, run with
// node), structured and binary mode, ids that are not UUIDs, with and
// without time; each event is accepted and delivered, and two producers
// reusing one id both get their SMS out.
func TestCloudEventsPublishedOverHTTP(t *testing.T) {
	o := start(t)
	const org = "ceorg"
	orgID, c, admin := o.org(org, "subscribe", "publish")
	tok := o.token(c.ClientID, c.ClientSecret)
	rcv := newReceiver(t)
	o.subscribe(tok, url.Values{"hub.mode": {"subscribe"}, "hub.topic": {org + "-NOTIFICATIONS"}, "hub.callback": {rcv.URL + "/hook"},
		"otphub.format": {"cloudevents"}})
	o.waitActive(org, admin, 1)

	publishURL := o.srv.URL + "/hub?" + url.Values{"hub.mode": {"publish"}, "hub.topic": {org + "-NOTIFICATIONS"}}.Encode()
	data := func(mobile string) map[string]any {
		return map[string]any{"organizationId": orgID, "organizationName": org, "sendTo": mobile,
			"messageBody": "Your one-time password for the myapp is 075052. This expires in 5 minutes."}
	}
	cases := []struct {
		mode, id, source, mobile string
		omitTime                 bool
	}{
		{"structured", "ext-0001", "https://auth-one.example", "+94770000001", false},
		{"binary", "ext-0001", "urn:producer:two", "+94770000002", false}, // same id, another producer
		{"binary", "urn:uuid:9f1c2f4e-7d3a-4b8e-9a61-0c5d2e7f8a90", "https://auth-one.example", "+94770000003", true},
		{"structured", "9f1c2f4e7d3a4b8e9a610c5d2e7f8a91", "https://auth-one.example", "+94770000004", true},
	}
	for _, tc := range cases {
		in, _ := json.Marshal(map[string]any{"url": publishURL, "token": tok, "mode": tc.mode, "omitTime": tc.omitTime,
			"attributes": map[string]any{"specversion": "1.0", "id": tc.id, "source": tc.source, "type": event.SmsOtpEventURI},
			"data":       data(tc.mobile)})
		before := time.Now().Add(-time.Second)
		var res struct {
			Status int
			Body   string
		}
		if err := json.Unmarshal(runNode(t, "publish-cloudevent.mjs", in), &res); err != nil {
			t.Fatal(err)
		}
		if res.Status != http.StatusAccepted {
			t.Fatalf("%s %s: %d %s", tc.mode, tc.id, res.Status, res.Body)
		}
		d := rcv.next(t)
		ev, err := event.UnmarshalCloudEvent(d.body)
		if err != nil {
			t.Fatalf("%s %s: delivered %s: %v", tc.mode, tc.id, d.body, err)
		}
		if ev.ID != tc.id || ev.Issuer != tc.source || ev.SendTo != tc.mobile || d.header.Get("webhook-id") != tc.id {
			t.Errorf("%s %s: delivered %+v (webhook-id %q)", tc.mode, tc.id, ev, d.header.Get("webhook-id"))
		}
		if tc.omitTime && (ev.IssuedAt.Before(before) || ev.IssuedAt.After(time.Now().Add(time.Second))) {
			t.Errorf("%s %s without time: issued %v, want the time of receipt", tc.mode, tc.id, ev.IssuedAt)
		}
	}

	// Refusals are clear: the wrong type, a batch.
	in, _ := json.Marshal(map[string]any{"url": publishURL, "token": tok, "mode": "binary",
		"attributes": map[string]any{"specversion": "1.0", "id": "x", "source": "s", "type": "com.example.other"}, "data": data("+94770000005")})
	var res struct {
		Status int
		Body   string
	}
	if err := json.Unmarshal(runNode(t, "publish-cloudevent.mjs", in), &res); err != nil {
		t.Fatal(err)
	}
	if res.Status != http.StatusBadRequest {
		t.Errorf("a CloudEvent of another type: %d %s", res.Status, res.Body)
	}
}
