package subscriber

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/websub"
)

// TestEndToEndTestEvent: POST …/subscriptions/{id}/test sends one test
// event through the log and the delivery engine to that subscription
// only, in its format and signed with its secret (the SDK verifies both),
// and to no other subscription of the org nor its SMS provider; the
// delivery is on record in the deliveries API. One subscription per
// format, so the test event is proven valid for each.
func TestEndToEndTestEvent(t *testing.T) {
	o := startOtphub(t)
	const org = "testev"
	subID, subSecret, adminTok := o.org(org)
	subTok := o.token(subID, subSecret)

	// An SMS provider that must never be called.
	var smsHits atomic.Int32
	sms := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { smsHits.Add(1) }))
	t.Cleanup(sms.Close)
	o.call(http.MethodPut, "/api/v1/orgs/"+org+"/sms-provider", adminTok, map[string]any{"type": "custom", "url": sms.URL + "/send",
		"contentType": "JSON", "method": "POST", "payloadTemplate": `{"to": {{mobile}}, "text": {{body}}}`}, nil, http.StatusOK)

	type receiver struct {
		hs       *handlerServer
		h        *channelHandler
		callback string
		id       string
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var rs []*receiver
	for i, format := range event.Formats {
		rc := &receiver{hs: newHandlerServer(t), h: &channelHandler{events: make(chan event.SmsOtpNotificationEvent, 10)}}
		rc.callback = fmt.Sprintf("%s/sms/%d", rc.hs.srv.URL, i)
		l, err := New(Config{HubURL: o.srv.URL + "/hub", ClientID: subID, ClientSecret: subSecret, Org: org, CallbackURL: rc.callback, Format: format}, rc.h)
		if err != nil {
			t.Fatal(err)
		}
		rc.hs.listener.Store(l)
		if err := l.Start(ctx); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, rc)
	}
	var subs struct {
		Subscriptions []struct{ ID, Callback, State string }
	}
	waitFor(t, "every subscription to be active", func() bool {
		o.call(http.MethodGet, "/api/v1/orgs/"+org+"/subscriptions", subTok, nil, &subs, http.StatusOK)
		n := 0
		for _, s := range subs.Subscriptions {
			for _, rc := range rs {
				if s.Callback == rc.callback && s.State == "active" {
					rc.id = s.ID
					n++
				}
			}
		}
		return n == len(rs)
	})

	for i, rc := range rs {
		var out websub.TestEventResponse
		o.call(http.MethodPost, "/api/v1/orgs/"+org+"/subscriptions/"+rc.id+"/test", subTok, nil, &out, http.StatusAccepted)
		if out.EventID == "" || out.SubscriptionID != rc.id || out.DeliveryID == "" || out.Status != "delivered" {
			t.Fatalf("%s: answer %+v", event.Formats[i], out)
		}
		ev := receive(t, rc.h.events)
		if ev.ID != out.EventID || ev.SendTo != websub.TestEventSendTo || ev.MessageBody != websub.TestEventMessageBody || ev.OrganizationName != org {
			t.Errorf("%s: the test event %+v", event.Formats[i], ev)
		}
		var d struct {
			ID, EventID, DestinationType, DestinationID, Status string
			AttemptLog                                          []struct{ StatusCode int }
		}
		o.call(http.MethodGet, "/api/v1/orgs/"+org+"/deliveries/"+out.DeliveryID, adminTok, nil, &d, http.StatusOK)
		if d.EventID != out.EventID || d.DestinationType != "webhook" || d.DestinationID != rc.id || d.Status != "delivered" ||
			len(d.AttemptLog) != 1 || d.AttemptLog[0].StatusCode != http.StatusOK {
			t.Errorf("%s: the delivery %+v", event.Formats[i], d)
		}
	}
	time.Sleep(300 * time.Millisecond) // a stray delivery would have arrived by now
	for i, rc := range rs {
		if codes := rc.hs.deliveryCodes(); len(codes) != 1 || codes[0] != http.StatusOK {
			t.Errorf("%s: the receiver answered %v, want one verified delivery [200]", event.Formats[i], codes)
		}
	}
	if n := smsHits.Load(); n != 0 {
		t.Errorf("the SMS provider was called %d times by test events", n)
	}
	var list struct {
		Deliveries []struct{ DestinationType string }
	}
	o.call(http.MethodGet, "/api/v1/orgs/"+org+"/deliveries", adminTok, nil, &list, http.StatusOK)
	if len(list.Deliveries) != len(rs) {
		t.Errorf("%d deliveries on record, want %d (one per test event)", len(list.Deliveries), len(rs))
	}
	for _, d := range list.Deliveries {
		if d.DestinationType != "webhook" {
			t.Errorf("a test event was recorded for destination %q", d.DestinationType)
		}
	}

	// Another org sees no subscription of this one: the same 404 as an
	// unknown id; its token on this org's path is refused like on GET.
	otherID, otherSecret, _ := o.org("testev-other")
	otherTok := o.token(otherID, otherSecret)
	missing := o.raw(http.MethodPost, "/api/v1/orgs/testev-other/subscriptions/no-such-id/test", otherTok)
	foreign := o.raw(http.MethodPost, "/api/v1/orgs/testev-other/subscriptions/"+rs[0].id+"/test", otherTok)
	if missing.code != http.StatusNotFound || foreign.code != missing.code || foreign.body != missing.body {
		t.Errorf("another org's subscription: %d %s; a missing one: %d %s", foreign.code, foreign.body, missing.code, missing.body)
	}
	if r := o.raw(http.MethodPost, "/api/v1/orgs/"+org+"/subscriptions/"+rs[0].id+"/test", otherTok); r.code != http.StatusForbidden {
		t.Errorf("another org's token: %d %s", r.code, r.body)
	}
	if n := len(rs[0].hs.deliveryCodes()); n != 1 {
		t.Errorf("refused tests delivered: %d deliveries", n)
	}
}

type rawResponse struct {
	code int
	body string
}

// raw makes an API call and returns its answer as it is.
func (o *otphub) raw(method, path, token string) rawResponse {
	o.t.Helper()
	req, _ := http.NewRequest(method, o.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rawResponse{resp.StatusCode, string(b)}
}
