package websub_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/authcore"
	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/egress"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/websub"
	"github.com/otphub/otphub/websub/webhook"
)

func TestSubscribeErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("myorg")
	other := e.org("other")
	tok := e.token(org, access.ScopeSubscribe)
	pubOnly := e.token(org, access.ScopePublish)
	admin := e.adminToken()
	sub := newSubscriber(t)
	cb := sub.URL + "/cb"
	topic := e.topic(org.Name)

	form := func(kv ...string) url.Values {
		v := url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topic}, "hub.callback": {cb}}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<delete>" {
				v.Del(kv[i])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return v
	}
	cases := []struct {
		name  string
		token string
		form  url.Values
		code  int
		error string
	}{
		{"no token", "", form(), 401, "unauthorized"},
		{"bad token", "not-a-jwt", form(), 401, "invalid_token"},
		{"missing mode", tok, form("hub.mode", "<delete>"), 400, "invalid_mode"},
		{"bad mode", tok, form("hub.mode", "subscribe-please"), 400, "invalid_mode"},
		{"publish as a form", tok, form("hub.mode", "publish"), 400, "invalid_mode"},
		{"missing topic", tok, form("hub.topic", "<delete>"), 400, "invalid_topic"},
		{"topic of another hub", tok, form("hub.topic", "https://elsewhere.example/topics/myorg/NOTIFICATIONS"), 400, "unknown_topic"},
		{"topic not NOTIFICATIONS", tok, form("hub.topic", e.base+"/topics/myorg/OTHER"), 400, "unknown_topic"},
		{"topic with a path after", tok, form("hub.topic", topic+"/more"), 400, "unknown_topic"},
		{"topic with an invalid org", tok, form("hub.topic", e.base+"/topics/My_Org/NOTIFICATIONS"), 400, "unknown_topic"},
		{"alias of another kind", tok, form("hub.topic", "myorg-EVENTS"), 400, "unknown_topic"},
		{"another org's topic", tok, form("hub.topic", e.topic(other.Name)), 403, "forbidden"},
		{"another org's alias", tok, form("hub.topic", "other-NOTIFICATIONS"), 403, "forbidden"},
		{"publish scope only", pubOnly, form(), 403, "forbidden"},
		{"unknown org", admin, form("hub.topic", e.topic("nosuchorg")), 400, "unknown_topic"},
		{"missing callback", tok, form("hub.callback", "<delete>"), 400, "invalid_callback"},
		{"relative callback", tok, form("hub.callback", "/cb"), 400, "invalid_callback"},
		{"ftp callback", tok, form("hub.callback", "ftp://127.0.0.1/cb"), 400, "invalid_callback"},
		{"callback with userinfo", tok, form("hub.callback", strings.Replace(cb, "http://", "http://u:p@", 1)), 400, "invalid_callback"},
		{"callback with a fragment", tok, form("hub.callback", cb+"#frag"), 400, "invalid_callback"},
		{"callback too long", tok, form("hub.callback", cb+"?"+strings.Repeat("a", 2100)), 400, "invalid_callback"},
		{"private callback", tok, form("hub.callback", "http://10.0.0.1/cb"), 400, "invalid_callback"},
		{"metadata callback", tok, form("hub.callback", "http://169.254.169.254/latest/meta-data/"), 400, "invalid_callback"},
		{"IPv6 loopback callback (only 127/8 allowed)", tok, form("hub.callback", "http://[::1]:8080/cb"), 400, "invalid_callback"},
		{"secret of 200 bytes", tok, form("hub.secret", strings.Repeat("s", 200)), 400, "invalid_secret"},
		{"lease not a number", tok, form("hub.lease_seconds", "ten days"), 400, "invalid_lease"},
		{"lease zero", tok, form("hub.lease_seconds", "0"), 400, "invalid_lease"},
		{"lease negative", tok, form("hub.lease_seconds", "-60"), 400, "invalid_lease"},
		{"lease fractional", tok, form("hub.lease_seconds", "1.5"), 400, "invalid_lease"},
		{"unknown format", tok, form("otphub.format", "xml"), 400, "invalid_format"},
		{"unknown signature alg", tok, form("otphub.signature_alg", "md5"), 400, "invalid_signature_alg"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.hubForm(tc.token, tc.form)
			if r.code != tc.code || r.errorCode() != tc.error {
				t.Errorf("got %d %s, want %d %s", r.code, r.body, tc.code, tc.error)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want a JSON error", ct)
			}
		})
	}

	t.Run("not a form", func(t *testing.T) {
		r := e.do(http.MethodPost, "/hub", tok, "text/plain", strings.NewReader("hub.mode=subscribe"))
		if r.code != 415 {
			t.Errorf("got %d %s", r.code, r.body)
		}
		r = e.do(http.MethodPost, "/hub", tok, "application/json", strings.NewReader(`{}`))
		if r.code != 400 || r.errorCode() != "invalid_mode" {
			t.Errorf("JSON without hub.mode=publish: %d %s", r.code, r.body)
		}
	})
	t.Run("oversized form", func(t *testing.T) {
		f := form("padding", strings.Repeat("x", 20<<10))
		if r := e.hubForm(tok, f); r.code != 413 {
			t.Errorf("got %d %s", r.code, r.body)
		}
	})

	if n := len(sub.verifications()); n != 0 {
		t.Errorf("refused requests caused %d verification requests", n)
	}
	if subs, _ := e.st.ListSubscriptions(e.ctx, org.ID); len(subs) != 0 {
		t.Errorf("refused requests stored %d subscriptions", len(subs))
	}
	if got := e.metric("otphub_egress_refused_total", "stage", "subscribe"); got < 3 {
		t.Errorf("egress refusals at subscribe = %v, want at least 3", got)
	}

	// The boundary: a 199-byte secret is accepted, and the alias topic
	// and query-string parameters work.
	e.subscribe(tok, "myorg-NOTIFICATIONS", cb, url.Values{"hub.secret": {strings.Repeat("s", 199)}})
	e.waitVerifications("verified", 1)
	if s, ok := e.findSub(org, cb); !ok || len(s.Secret) != 199 || s.Topic != topic {
		t.Fatalf("subscription %+v (found %v)", s, ok)
	}
}

func TestLeaseBounds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("leases")
	tok := e.token(org, access.ScopeSubscribe)
	sub := newSubscriber(t)
	cases := []struct{ asked, granted string }{
		{"1", "300"},
		{"999999999999", "2592000"},
		{"3600", "3600"},
	}
	for i, tc := range cases {
		e.subscribe(tok, e.topic(org.Name), fmt.Sprintf("%s/cb%d", sub.URL, i), url.Values{"hub.lease_seconds": {tc.asked}})
		e.waitVerifications("verified", float64(i+1))
		if got := sub.verifications()[i].Get("hub.lease_seconds"); got != tc.granted {
			t.Errorf("asked %s: granted %s, want %s", tc.asked, got, tc.granted)
		}
		s, _ := e.findSub(org, fmt.Sprintf("%s/cb%d", sub.URL, i))
		if fmt.Sprint(s.LeaseSeconds) != tc.granted {
			t.Errorf("stored lease %d, want %s", s.LeaseSeconds, tc.granted)
		}
	}
}

func TestVerificationNotConfirmed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("refusals")
	tok := e.token(org, access.ScopeSubscribe)
	answers := []struct {
		name   string
		answer func(q url.Values) (int, string)
	}{
		{"404", func(url.Values) (int, string) { return 404, "" }},
		{"wrong challenge", func(url.Values) (int, string) { return 200, "not-the-challenge" }},
		{"challenge plus newline", func(q url.Values) (int, string) { return 200, q.Get("hub.challenge") + "\n" }},
		{"empty 200", func(url.Values) (int, string) { return 200, "" }},
		{"500 echoing", func(q url.Values) (int, string) { return 500, q.Get("hub.challenge") }},
		{"redirect", func(url.Values) (int, string) { return 302, "" }},
	}
	for i, a := range answers {
		sub := newSubscriber(t)
		sub.setAnswer(a.answer)
		e.subscribe(tok, e.topic(org.Name), sub.URL+"/cb", nil)
		e.waitVerifications("rejected", float64(i+1))
		if _, ok := e.findSub(org, sub.URL+"/cb"); ok {
			t.Errorf("%s: subscription activated", a.name)
		}
	}

	// A callback that does not answer at all.
	gone := newSubscriber(t)
	gone.Close()
	e.subscribe(tok, e.topic(org.Name), gone.URL+"/cb", nil)
	e.waitVerifications("failed", 1)
	if _, ok := e.findSub(org, gone.URL+"/cb"); ok {
		t.Error("unreachable callback: subscription activated")
	}
	if e.metric("otphub_websub_intent_verifications_total", "outcome", "verified") != 0 {
		t.Error("a verification counted as verified")
	}
}

// TestFailedRenewalLeavesStateUnchanged: WebSub §5.1 — a re-subscription
// or unsubscription the subscriber does not confirm changes nothing.
func TestFailedRenewalLeavesStateUnchanged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("renewals")
	tok := e.token(org, access.ScopeSubscribe)
	sub := newSubscriber(t)
	cb := sub.URL + "/cb"

	e.subscribe(tok, e.topic(org.Name), cb, url.Values{"hub.secret": {"original"}, "hub.lease_seconds": {"3600"}})
	e.waitVerifications("verified", 1)
	before, _ := e.findSub(org, cb)

	sub.setAnswer(func(url.Values) (int, string) { return 404, "" })
	e.subscribe(tok, e.topic(org.Name), cb, url.Values{"hub.secret": {"replacement"}, "hub.lease_seconds": {"7200"}})
	e.waitVerifications("rejected", 1)
	r := e.hubForm(tok, url.Values{"hub.mode": {"unsubscribe"}, "hub.topic": {e.topic(org.Name)}, "hub.callback": {cb}})
	if r.code != 202 {
		t.Fatalf("unsubscribe: %d %s", r.code, r.body)
	}
	e.waitVerifications("rejected", 2)

	after, ok := e.findSub(org, cb)
	if !ok || string(after.Secret) != "original" || after.LeaseSeconds != 3600 || !after.ExpiresAt.Equal(before.ExpiresAt) || after.State != store.SubActive {
		t.Fatalf("state changed by unconfirmed requests: %+v (found %v)", after, ok)
	}
}

func TestDenialAtOrgLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *websub.Config, _ *egress.Config) { c.MaxSubscriptionsPerOrg = 1 })
	org := e.org("limited")
	tok := e.token(org, access.ScopeSubscribe)
	first, second := newSubscriber(t), newSubscriber(t)

	e.subscribe(tok, e.topic(org.Name), first.URL+"/cb", nil)
	e.waitVerifications("verified", 1)

	e.subscribe(tok, e.topic(org.Name), second.URL+"/cb", nil)
	e.waitVerifications("denied", 1)
	eventually(t, "the denial request", func() bool { return len(second.verifications()) == 1 })
	q := second.verifications()[0]
	if q.Get("hub.mode") != "denied" || q.Get("hub.topic") != e.topic(org.Name) || !strings.Contains(q.Get("hub.reason"), "limit") || q.Get("hub.challenge") != "" {
		t.Errorf("denial query %v", q)
	}
	if _, ok := e.findSub(org, second.URL+"/cb"); ok {
		t.Error("denied subscription stored")
	}

	// Renewing the existing subscription is never denied.
	e.subscribe(tok, e.topic(org.Name), first.URL+"/cb", nil)
	e.waitVerifications("verified", 2)
}

func TestPendingVerificationLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *websub.Config, _ *egress.Config) { c.MaxPendingVerifications = 1 })
	org := e.org("pending")
	tok := e.token(org, access.ScopeSubscribe)
	sub := newSubscriber(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs before the env's cleanup
	sub.setAnswer(func(q url.Values) (int, string) {
		<-release
		return 200, q.Get("hub.challenge")
	})

	e.subscribe(tok, e.topic(org.Name), sub.URL+"/a", nil)
	eventually(t, "the verification to start", func() bool { return len(sub.verifications()) == 1 })
	if got := e.metric("otphub_websub_subscriptions", "state", "pending"); got != 1 {
		t.Errorf("pending gauge %v, want 1", got)
	}
	r := e.hubForm(tok, url.Values{"hub.mode": {"subscribe"}, "hub.topic": {e.topic(org.Name)}, "hub.callback": {sub.URL + "/b"}})
	if r.code != 503 || r.errorCode() != "too_many_pending" || r.header.Get("Retry-After") == "" {
		t.Errorf("beyond the pending limit: %d %s", r.code, r.body)
	}
}

func TestPublish(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("pubs")
	other := e.org("elsewhere")
	tok := e.token(org, access.ScopePublish)
	subOnly := e.token(org, access.ScopeSubscribe)

	ev, body := eventFor(t, org)
	r := e.publish(tok, "pubs-NOTIFICATIONS", body)
	if r.code != http.StatusAccepted {
		t.Fatalf("publish: %d %s", r.code, r.body)
	}
	if got := e.metric("otphub_events_published_total", "source", "http"); got != 1 {
		t.Errorf("published{http} = %v", got)
	}

	// It is durably in the log, as a binary-mode CloudEvent keyed by org.
	m := e.firstLogRecord()
	if string(m.Key) != org.Name || m.Headers["ce_id"] != ev.ID || m.Headers["ce_type"] != event.SmsOtpEventURI {
		t.Errorf("record key %q headers %v", m.Key, m.Headers)
	}
	got, err := event.DecodeBinary(m.Key, m.Headers, m.Value)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != ev.ID || got.SendTo != ev.SendTo || got.MessageBody != ev.MessageBody || got.OrganizationID != org.ID {
		t.Errorf("log holds %+v", got)
	}

	_, otherBody := eventFor(t, other)
	wrongID, _ := eventFor(t, org)
	wrongID.OrganizationID = org.ID + 100
	wrongIDBody, _ := event.MarshalAsgardeo(wrongID)
	bad, _ := eventFor(t, org)
	bad.SendTo = "not-a-number"
	badBody, _ := event.MarshalAsgardeo(bad)
	huge := `{"iss":"x","pad":"` + strings.Repeat("x", 70<<10) + `"}`

	cases := []struct {
		name, token, topic, contentType, body string
		code                                  int
		error                                 string
	}{
		{"no token", "", e.topic(org.Name), "application/json", string(body), 401, "unauthorized"},
		{"subscribe scope only", subOnly, e.topic(org.Name), "application/json", string(body), 403, "forbidden"},
		{"another org's topic", tok, e.topic(other.Name), "application/json", string(otherBody), 403, "forbidden"},
		{"missing topic", tok, "", "application/json", string(body), 400, "invalid_topic"},
		{"unknown topic", tok, "https://elsewhere.example/feed", "application/json", string(body), 400, "unknown_topic"},
		{"event of another org", tok, e.topic(org.Name), "application/json", string(otherBody), 400, "organization_mismatch"},
		{"wrong organizationId", tok, e.topic(org.Name), "application/json", string(wrongIDBody), 400, "organization_mismatch"},
		{"malformed JSON", tok, e.topic(org.Name), "application/json", `{"iss":`, 400, "invalid_event"},
		{"not an object", tok, e.topic(org.Name), "application/json", `[1,2]`, 400, "invalid_event"},
		{"missing fields", tok, e.topic(org.Name), "application/json", `{"iss":"https://a.example"}`, 400, "invalid_event"},
		{"invalid field", tok, e.topic(org.Name), "application/json", string(badBody), 400, "invalid_event"},
		{"empty body", tok, e.topic(org.Name), "application/json", "", 400, "invalid_event"},
		{"duplicate key", tok, e.topic(org.Name), "application/json", strings.Replace(string(body), `"sendTo":`, `"sendTo":"+94770000000","sendTo":`, 1), 400, "invalid_event"},
		{"oversized body", tok, e.topic(org.Name), "application/json", huge, 413, "body_too_large"},
		{"not JSON", tok, e.topic(org.Name), "text/plain", string(body), 415, "unsupported_media_type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := url.Values{"hub.mode": {"publish"}, "hub.topic": {tc.topic}}
			r := e.do(http.MethodPost, "/hub?"+q.Encode(), tc.token, tc.contentType, strings.NewReader(tc.body))
			if r.code != tc.code || r.errorCode() != tc.error {
				t.Errorf("got %d %s, want %d %s", r.code, r.body, tc.code, tc.error)
			}
		})
	}
	if got := e.metric("otphub_events_published_total", "source", "http"); got != 1 {
		t.Errorf("refused publishes were counted: published{http} = %v", got)
	}
}

func TestPublishLogUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("down")
	tok := e.token(org, access.ScopePublish)
	if err := e.log.Close(); err != nil {
		t.Fatal(err)
	}
	_, body := eventFor(t, org)
	r := e.publish(tok, e.topic(org.Name), body)
	if r.code != http.StatusServiceUnavailable || r.errorCode() != "unavailable" {
		t.Fatalf("got %d %s", r.code, r.body)
	}
}

func TestSubscriptionsAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("apiorg")
	other := e.org("apiother")
	tok := e.token(org, access.ScopeSubscribe)
	adminOfOrg := e.token(org, access.ScopeAdmin)
	otpOnly := e.token(org, access.ScopeOTP)
	otherTok := e.token(other, access.ScopeSubscribe)
	sub := newSubscriber(t)
	const secret = "never-shown-secret"

	e.subscribe(tok, e.topic(org.Name), sub.URL+"/cb", url.Values{"hub.secret": {secret}, "otphub.format": {"cloudevents"}})
	e.waitVerifications("verified", 1)

	for _, tk := range []string{tok, adminOfOrg} {
		r := e.do(http.MethodGet, "/api/v1/orgs/apiorg/subscriptions", tk, "", nil)
		if r.code != 200 {
			t.Fatalf("list: %d %s", r.code, r.body)
		}
		if strings.Contains(string(r.body), secret) {
			t.Fatalf("the list shows the secret: %s", r.body)
		}
		for _, want := range []string{`"state":"active"`, `"format":"cloudevents"`, `"signatureAlg":"sha256"`, `"hasSecret":true`, `"expiresAt":`, `"leaseSeconds":864000`} {
			if !strings.Contains(string(r.body), want) {
				t.Errorf("list lacks %s: %s", want, r.body)
			}
		}
	}
	for _, tk := range []string{otpOnly, otherTok} {
		if r := e.do(http.MethodGet, "/api/v1/orgs/apiorg/subscriptions", tk, "", nil); r.code != 403 {
			t.Errorf("list without the scope: %d", r.code)
		}
	}
	if r := e.do(http.MethodGet, "/api/v1/orgs/apiorg/subscriptions", "", "", nil); r.code != 401 {
		t.Errorf("list without a token: %d", r.code)
	}

	s, _ := e.findSub(org, sub.URL+"/cb")
	if r := e.do(http.MethodGet, "/api/v1/orgs/apiorg/subscriptions/"+s.ID, tok, "", nil); r.code != 200 || strings.Contains(string(r.body), secret) {
		t.Errorf("get: %d %s", r.code, r.body)
	}
	if r := e.do(http.MethodDelete, "/api/v1/orgs/apiorg/subscriptions/"+s.ID, otherTok, "", nil); r.code != 403 {
		t.Errorf("delete by another org: %d", r.code)
	}
	// Another org's id under one's own org is not found.
	if r := e.do(http.MethodDelete, "/api/v1/orgs/apiother/subscriptions/"+s.ID, otherTok, "", nil); r.code != 404 {
		t.Errorf("delete of another org's subscription: %d", r.code)
	}
	if r := e.do(http.MethodDelete, "/api/v1/orgs/apiorg/subscriptions/"+s.ID, tok, "", nil); r.code != 204 {
		t.Fatalf("delete: %d %s", r.code, r.body)
	}
	if r := e.do(http.MethodGet, "/api/v1/orgs/apiorg/subscriptions/"+s.ID, tok, "", nil); r.code != 404 || r.errorCode() != "subscription_not_found" {
		t.Errorf("get after delete: %d %s", r.code, r.body)
	}
	if r := e.do(http.MethodDelete, "/api/v1/orgs/apiorg/subscriptions/"+s.ID, tok, "", nil); r.code != 404 {
		t.Errorf("second delete: %d", r.code)
	}
	ev, _ := eventFor(t, org)
	if ts, _ := e.hub.Resolver().Resolve(e.ctx, ev); len(ts) != 0 {
		t.Error("a deleted subscription still resolves")
	}
	// The code every API answers an unknown org with (tenants.WithOrg).
	for _, req := range [][2]string{
		{http.MethodGet, "/api/v1/orgs/nosuch/subscriptions"},
		{http.MethodGet, "/api/v1/orgs/nosuch/subscriptions/" + s.ID},
		{http.MethodDelete, "/api/v1/orgs/nosuch/subscriptions/" + s.ID},
	} {
		if r := e.do(req[0], req[1], e.adminToken(), "", nil); r.code != 404 || r.errorCode() != "org_not_found" {
			t.Errorf("unknown org, %s %s: %d %s", req[0], req[1], r.code, r.body)
		}
	}
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.do(http.MethodGet, "/topics/myorg/NOTIFICATIONS", "", "", nil)
	want := `<` + e.base + `/hub>; rel="hub", <` + e.base + `/topics/myorg/NOTIFICATIONS>; rel="self"`
	if r.code != 200 || r.header.Get("Link") != want {
		t.Errorf("discovery: %d Link %q", r.code, r.header.Get("Link"))
	}
	for _, org := range []string{"Not_Valid", "BAD"} {
		r := e.do(http.MethodGet, "/topics/"+org+"/NOTIFICATIONS", "", "", nil)
		if r.code != 404 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") || r.errorCode() != "unknown_topic" {
			t.Errorf("invalid org %s: %d %s %s", org, r.code, r.header.Get("Content-Type"), r.body)
		}
	}
}

func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("expiring")
	tok := e.token(org, access.ScopeSubscribe)
	sub := newSubscriber(t)
	e.subscribe(tok, e.topic(org.Name), sub.URL+"/cb", url.Values{"hub.lease_seconds": {"300"}})
	e.waitVerifications("verified", 1)
	eventually(t, "the active gauge", func() bool { return e.metric("otphub_websub_subscriptions", "state", "active") == 1 })

	ev, _ := eventFor(t, org)
	if ts, err := e.hub.Resolver().Resolve(e.ctx, ev); err != nil || len(ts) != 1 {
		t.Fatalf("before expiry: %d targets, %v", len(ts), err)
	}
	e.clock.Advance(301 * time.Second)
	if ts, err := e.hub.Resolver().Resolve(e.ctx, ev); err != nil || len(ts) != 0 {
		t.Fatalf("after expiry: %d targets, %v", len(ts), err)
	}
	eventually(t, "the lapsed subscription to be deleted", func() bool {
		_, ok := e.findSub(org, sub.URL+"/cb")
		return !ok
	})
	eventually(t, "the active gauge", func() bool { return e.metric("otphub_websub_subscriptions", "state", "active") == 0 })
}

func TestResolverLookupAndGone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("gone")
	tok := e.token(org, access.ScopeSubscribe)
	sub := newSubscriber(t)
	e.subscribe(tok, e.topic(org.Name), sub.URL+"/cb?k=v", url.Values{"hub.secret": {"k"}})
	e.waitVerifications("verified", 1)
	s, _ := e.findSub(org, sub.URL+"/cb?k=v")

	res := e.hub.Resolver()
	ev, _ := eventFor(t, org)
	ts, err := res.Resolve(e.ctx, ev)
	if err != nil || len(ts) != 1 {
		t.Fatalf("Resolve: %d, %v", len(ts), err)
	}
	tg := ts[0]
	if tg.Type != webhook.Type || tg.ID != s.ID || tg.Endpoint != "http://"+strings.TrimPrefix(sub.URL, "http://") || tg.OnGone == nil {
		t.Errorf("target %+v", tg)
	}
	if types := res.Types(); len(types) != 1 || types[0] != webhook.Type {
		t.Errorf("the hub resolves %v", types)
	}
	lt, err := res.Lookup(e.ctx, org.ID, webhook.Type, s.ID)
	if err != nil || lt.ID != s.ID {
		t.Fatalf("Lookup: %+v %v", lt, err)
	}
	if _, err := res.Lookup(e.ctx, org.ID+1, webhook.Type, s.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Lookup under another org: %v", err)
	}

	// The callback answers 410: the sender says gone, OnGone disables.
	sub.mu.Lock()
	sub.postCode = http.StatusGone
	sub.mu.Unlock()
	r := lt.Sender.Send(e.ctx, ev)
	if r.Reason != delivery.ReasonGone || r.Retry {
		t.Fatalf("Send: %+v", r)
	}
	if err := lt.OnGone(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.findSub(org, sub.URL+"/cb?k=v"); got.State != store.SubDisabled {
		t.Errorf("state %q after 410", got.State)
	}
	if ts, _ := res.Resolve(e.ctx, ev); len(ts) != 0 {
		t.Error("a disabled subscription still resolves")
	}
	if _, err := res.Lookup(e.ctx, org.ID, webhook.Type, s.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Lookup of a disabled subscription: %v", err)
	}

	// Subscribing again reactivates it.
	e.subscribe(tok, e.topic(org.Name), sub.URL+"/cb?k=v", nil)
	e.waitVerifications("verified", 2)
	if ts, _ := res.Resolve(e.ctx, ev); len(ts) != 1 {
		t.Error("a renewed subscription does not resolve")
	}

	// An event whose organizationId is not its org's resolves to nothing.
	ev.OrganizationID = org.ID + 42
	if ts, err := res.Resolve(e.ctx, ev); err != nil || len(ts) != 0 {
		t.Errorf("mismatched organizationId: %d targets, %v", len(ts), err)
	}
	ev.OrganizationName = "nosuchorg"
	if ts, err := res.Resolve(e.ctx, ev); err != nil || len(ts) != 0 {
		t.Errorf("unknown org: %d targets, %v", len(ts), err)
	}
}

// TestDistributionFromLog drives content distribution by hand: publish
// over HTTP, read the record back from the log, resolve and send.
func TestDistributionFromLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("bylog")
	tok := e.token(org, access.ScopeSubscribe, access.ScopePublish)
	sub := newSubscriber(t)
	const secret = "from-the-log"
	e.subscribe(tok, e.topic(org.Name), sub.URL+"/cb", url.Values{"hub.secret": {secret}, "otphub.format": {"set"}})
	e.waitVerifications("verified", 1)
	ev := e.publishOK(tok, org)

	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	c, err := e.log.Subscribe(ctx, bus.NotificationsTopic, "by-hand")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := <-c.Messages()
	got, err := event.DecodeBinary(m.Key, m.Headers, m.Value)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := e.hub.Resolver().Resolve(ctx, got)
	if err != nil || len(ts) != 1 {
		t.Fatalf("Resolve: %d %v", len(ts), err)
	}
	if r := ts[0].Sender.Send(ctx, got); !r.OK {
		t.Fatalf("Send: %+v", r)
	}
	m.Ack()
	d := sub.waitPost(t)
	if sig := d.header.Get("X-Hub-Signature"); sig != hubSignature(secret, d.body) {
		t.Errorf("X-Hub-Signature %q", sig)
	}
	back, err := event.UnmarshalSET(d.body)
	if err != nil || back.ID != ev.ID {
		t.Fatalf("SET body: %v %+v", err, back)
	}
}

// TestSignedSETDistribution: set-jwt deliveries verify against the
// issuer's published JWKS.
func TestSignedSETDistribution(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDispatcher()
	org := e.org("signed")
	tok := e.token(org, access.ScopeSubscribe, access.ScopePublish)
	sub := newSubscriber(t)
	e.subscribe(tok, e.topic(org.Name), sub.URL+"/cb", url.Values{"otphub.format": {"set-jwt"}})
	e.waitVerifications("verified", 1)
	ev := e.publishOK(tok, org)
	d := sub.waitPost(t)
	if ct := d.header.Get("Content-Type"); ct != event.SETContentType {
		t.Errorf("Content-Type %q", ct)
	}
	jwks := e.do(http.MethodGet, "/.well-known/jwks.json", "", "", nil)
	set, err := event.ParseJWKS(jwks.body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := event.VerifySET(string(d.body), set.Keyfunc())
	if err != nil || got.ID != ev.ID {
		t.Fatalf("VerifySET: %v %+v", err, got)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	bad := []websub.Config{
		{},
		{PublicURL: "not a url"},
		{PublicURL: "ftp://hub.example"},
		{PublicURL: "https://hub.example", MinLeaseSeconds: 600, MaxLeaseSeconds: 300},
		{PublicURL: "https://hub.example", DefaultLeaseSeconds: 10},
		{PublicURL: "https://hub.example", VerifyTimeout: -1},
	}
	for _, cfg := range bad {
		if _, err := websub.New(cfg, e.st, e.log, e.eg, nil, nil, nil); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	if _, err := websub.New(websub.Config{PublicURL: "https://hub.example"}, nil, e.log, e.eg, nil, nil, nil); err == nil {
		t.Error("nil store accepted")
	}
	// A hub without a signer (no set-jwt) and without metrics is fine.
	if _, err := websub.New(websub.Config{PublicURL: e.base}, e.st, e.log, e.eg, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkResolve(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b)
	org, err := e.st.CreateOrg(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	for i := range 10 {
		_, err := e.st.UpsertSubscription(ctx, store.Subscription{
			OrgID: org.ID, Topic: event.TopicURL(e.base, org.Name), Callback: fmt.Sprintf("https://cb%d.example/hook", i),
			State: store.SubActive, LeaseSeconds: 3600, ExpiresAt: time.Now().Add(time.Hour), Format: "asgardeo", SignatureAlg: "sha256",
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	ev := &event.SmsOtpNotificationEvent{OrganizationID: org.ID, OrganizationName: org.Name}
	res := e.hub.Resolver()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ts, err := res.Resolve(ctx, ev)
			if err != nil || len(ts) != 10 {
				b.Fatal(len(ts), err)
			}
		}
	})
}

// TestPublishedMetricSharedWithAuthcore: the auth core and the hub count
// otphub_events_published_total in one family, whichever registers first.
func TestPublishedMetricSharedWithAuthcore(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	if _, err := authcore.New(authcore.Config{PublicURL: e.base, HMACKey: make([]byte, 32)}, e.st, e.log, nil, reg); err != nil {
		t.Fatalf("authcore.New: %v", err)
	}
	if _, err := websub.New(websub.Config{PublicURL: e.base}, e.st, e.log, e.eg, nil, nil, reg); err != nil {
		t.Fatalf("websub.New after authcore on one registry: %v", err)
	}
	reg2 := prometheus.NewRegistry()
	if _, err := websub.New(websub.Config{PublicURL: e.base}, e.st, e.log, e.eg, nil, nil, reg2); err != nil {
		t.Fatal(err)
	}
	if _, err := authcore.New(authcore.Config{PublicURL: e.base, HMACKey: make([]byte, 32)}, e.st, e.log, nil, reg2); err != nil {
		t.Fatalf("authcore.New after websub on one registry: %v", err)
	}
}

// TestLoopbackCallbackWithoutAllowList: with no --egress-allow-cidrs, a
// callback on this machine is refused at subscribe time.
func TestLoopbackCallbackWithoutAllowList(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(_ *websub.Config, ec *egress.Config) { ec.AllowCIDRs = nil })
	org := e.org("strict")
	tok := e.token(org, access.ScopeSubscribe)
	sub := newSubscriber(t)
	for _, cb := range []string{sub.URL + "/cb", strings.Replace(sub.URL, "127.0.0.1", "localhost", 1) + "/cb"} {
		r := e.hubForm(tok, url.Values{"hub.mode": {"subscribe"}, "hub.topic": {e.topic(org.Name)}, "hub.callback": {cb}})
		if r.code != 400 || r.errorCode() != "invalid_callback" || !strings.Contains(r.errorCode()+string(r.body), "loopback") {
			t.Errorf("%s: %d %s", cb, r.code, r.body)
		}
	}
	if len(sub.verifications()) != 0 {
		t.Error("the refused callback was called")
	}
}

// TestGaugesFollowChanges: the subscription gauges are recounted after each
// change, not only every ExpiryInterval.
func TestGaugesFollowChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *websub.Config, _ *egress.Config) { c.ExpiryInterval = time.Hour })
	org := e.org("gauges")
	tok := e.token(org, access.ScopeSubscribe)
	sub := newSubscriber(t)
	gauge := func(state string) float64 { return e.metric("otphub_websub_subscriptions", "state", state) }

	e.subscribe(tok, e.topic(org.Name), sub.URL+"/cb", nil)
	eventually(t, "active=1", func() bool { return gauge("active") == 1 })

	s, _ := e.findSub(org, sub.URL+"/cb")
	tg, err := e.hub.Resolver().Lookup(e.ctx, org.ID, webhook.Type, s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.OnGone(e.ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "disabled=1, active=0", func() bool { return gauge("disabled") == 1 && gauge("active") == 0 })

	if r := e.do(http.MethodDelete, "/api/v1/orgs/gauges/subscriptions/"+s.ID, tok, "", nil); r.code != 204 {
		t.Fatalf("delete: %d", r.code)
	}
	eventually(t, "disabled=0", func() bool { return gauge("disabled") == 0 })
}

// TestStoreUnavailable: store failures are 503 JSON errors, never panics
// or half-written state.
func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("storedown")
	tok := e.token(org, access.ScopeSubscribe, access.ScopePublish)
	sub := newSubscriber(t)
	_, body := eventFor(t, org)
	// One authenticated request first, so the issuer has the client cached.
	if r := e.do(http.MethodGet, "/api/v1/orgs/storedown/subscriptions", tok, "", nil); r.code != 200 {
		t.Fatalf("list: %d", r.code)
	}
	if err := e.st.Close(); err != nil {
		t.Fatal(err)
	}
	checks := []response{
		e.hubForm(tok, url.Values{"hub.mode": {"subscribe"}, "hub.topic": {e.topic(org.Name)}, "hub.callback": {sub.URL + "/cb"}}),
		e.publish(tok, e.topic(org.Name), body),
		e.do(http.MethodGet, "/api/v1/orgs/storedown/subscriptions", tok, "", nil),
		e.do(http.MethodGet, "/api/v1/orgs/storedown/subscriptions/x", tok, "", nil),
		e.do(http.MethodDelete, "/api/v1/orgs/storedown/subscriptions/x", tok, "", nil),
	}
	for i, r := range checks {
		if r.code != http.StatusServiceUnavailable || r.errorCode() != "unavailable" {
			t.Errorf("request %d: %d %s", i, r.code, r.body)
		}
	}
	ev, _ := eventFor(t, org)
	if _, err := e.hub.Resolver().Resolve(e.ctx, ev); err == nil {
		t.Error("Resolve with the store down returned no error")
	}
}

// BenchmarkPublish measures POST /hub publish over loopback HTTP into the
// embedded log (each 202 waits for the record to be durable).
func BenchmarkPublish(b *testing.B) {
	e := newEnv(b)
	org := e.org("benchpub")
	tok := e.token(org, access.ScopePublish)
	q := url.Values{"hub.mode": {"publish"}, "hub.topic": {e.topic(org.Name)}}
	target := e.base + "/hub?" + q.Encode()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.Cleanup(client.CloseIdleConnections)
	b.SetParallelism(16) // concurrent publishers share the log's fsyncs
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, body := eventFor(b, org)
			req, _ := http.NewRequest(http.MethodPost, target, strings.NewReader(string(body)))
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

// TestResolverRefreshesInTheBackground: an org's subscriptions, once
// cached for longer than ResolveCacheTTL, are reloaded in the background
// while Resolve goes on answering with the list it has (publishes and
// routed records never wait for a busy store), and the reload shows soon
// after. The subscription is deleted in the store directly, as another
// replica would, so no invalidation reaches this hub.
func TestResolverRefreshesInTheBackground(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("refreshing")
	tok := e.token(org, access.ScopeSubscribe)
	sub := newSubscriber(t)
	e.subscribe(tok, e.topic(org.Name), sub.URL+"/cb", nil)
	e.waitVerifications("verified", 1)
	s, _ := e.findSub(org, sub.URL+"/cb")
	res := e.hub.Resolver()
	ev, _ := eventFor(t, org)
	if ts, err := res.Resolve(e.ctx, ev); err != nil || len(ts) != 1 {
		t.Fatalf("Resolve: %d targets, %v", len(ts), err)
	}
	if err := e.st.DeleteSubscription(e.ctx, org.ID, s.ID); err != nil {
		t.Fatal(err)
	}
	if ts, _ := res.Resolve(e.ctx, ev); len(ts) != 1 {
		t.Fatalf("within the TTL: %d targets, want the cached 1", len(ts))
	}
	e.clock.Advance(websub.DefaultResolveCacheTTL + time.Millisecond)
	if ts, _ := res.Resolve(e.ctx, ev); len(ts) != 1 {
		t.Fatalf("just past the TTL: %d targets, want the stale 1 while the reload runs", len(ts))
	}
	eventually(t, "the reload to drop the deleted subscription", func() bool {
		ts, _ := res.Resolve(e.ctx, ev)
		return len(ts) == 0
	})
}
