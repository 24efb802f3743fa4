package websub_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/egress"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/websub"
)

// hanging is a subscriber whose verification GETs never answer until the
// test ends: each holds one pending verification.
func hanging(t *testing.T) *receiver {
	sub := newSubscriber(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the env's cleanup
	sub.setAnswer(func(q url.Values) (int, string) {
		<-release
		return 200, q.Get("hub.challenge")
	})
	return sub
}

// TestPendingVerificationsShareIsPerOrg is issue 18's cross-tenant denial
// of WebSub: one org filling its share of pending verifications with a
// callback that never answers gets 503 too_many_pending, and only it:
// another org's subscribe and unsubscribe still verify.
func TestPendingVerificationsShareIsPerOrg(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *websub.Config, _ *egress.Config) {
		c.MaxPendingVerifications, c.MaxPendingPerOrg = 8, 3
	})
	noisy, quiet := e.org("noisy"), e.org("quiet")
	noisyTok, quietTok := e.token(noisy, access.ScopeSubscribe), e.token(quiet, access.ScopeSubscribe)
	slow := hanging(t)
	for i := range 3 {
		e.subscribe(noisyTok, e.topic(noisy.Name), fmt.Sprintf("%s/cb%d", slow.URL, i), nil)
	}
	eventually(t, "the noisy org's verifications to start", func() bool { return len(slow.verifications()) == 3 })
	for i := range 5 {
		r := e.hubForm(noisyTok, url.Values{"hub.mode": {"subscribe"}, "hub.topic": {e.topic(noisy.Name)}, "hub.callback": {fmt.Sprintf("%s/more%d", slow.URL, i)}})
		if r.code != http.StatusServiceUnavailable || r.errorCode() != "too_many_pending" || r.header.Get("Retry-After") == "" {
			t.Fatalf("the noisy org beyond its share: %d %s", r.code, r.body)
		}
	}

	ok := newSubscriber(t)
	e.subscribe(quietTok, e.topic(quiet.Name), ok.URL+"/cb", nil)
	e.waitVerifications("verified", 1)
	if s, found := e.findSub(quiet, ok.URL+"/cb"); !found || s.State != store.SubActive {
		t.Fatalf("the quiet org's subscription: %+v (found %v)", s, found)
	}
	e.subscribe(quietTok, e.topic(quiet.Name), ok.URL+"/cb", nil) // a renewal
	e.waitVerifications("verified", 2)
	r := e.hubForm(quietTok, url.Values{"hub.mode": {"unsubscribe"}, "hub.topic": {e.topic(quiet.Name)}, "hub.callback": {ok.URL + "/cb"}})
	if r.code != http.StatusAccepted {
		t.Fatalf("the quiet org's unsubscribe: %d %s", r.code, r.body)
	}
	e.waitVerifications("verified", 3)
}

// TestOrgLimitHoldsForOverlappingSubscribes is issue 18's limit race: the
// count used to be read before the verification GET and the row written
// after it, so overlapping subscribes all passed. Every verification here
// is held until all of them are in flight.
func TestOrgLimitHoldsForOverlappingSubscribes(t *testing.T) {
	t.Parallel()
	const limit, tries = 4, 12
	e := newEnv(t, func(c *websub.Config, _ *egress.Config) { c.MaxSubscriptionsPerOrg = limit })
	org := e.org("racing")
	tok := e.token(org, access.ScopeSubscribe)
	sub := newSubscriber(t)
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	sub.setAnswer(func(q url.Values) (int, string) {
		mu.Lock()
		if arrived++; arrived == tries {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-time.After(10 * time.Second):
		}
		return 200, q.Get("hub.challenge")
	})
	for i := range tries {
		e.subscribe(tok, e.topic(org.Name), fmt.Sprintf("%s/cb%02d", sub.URL, i), nil)
	}
	e.waitVerifications("denied", tries-limit)
	e.waitVerifications("verified", limit)
	subs, err := e.st.ListSubscriptions(e.ctx, org.ID)
	if err != nil || len(subs) != limit {
		t.Fatalf("%d overlapping subscribes with a limit of %d: %d stored (%v)", tries, limit, len(subs), err)
	}
	// The denied metric counts before each denial GET is sent.
	denials := func() int {
		n := 0
		for _, q := range sub.verifications() {
			if q.Get("hub.mode") == "denied" && strings.Contains(q.Get("hub.reason"), "limit") {
				n++
			}
		}
		return n
	}
	eventually(t, fmt.Sprintf("%d denials at the callback", tries-limit), func() bool { return denials() == tries-limit })
}

// TestLapsedSubscriptionIsNotListedActive: between a lease's end and the
// sweep, the API shows the subscription expired, never active.
func TestLapsedSubscriptionIsNotListedActive(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *websub.Config, _ *egress.Config) { c.ExpiryInterval = time.Hour })
	org := e.org("lapsing")
	tok := e.token(org, access.ScopeSubscribe)
	sub := newSubscriber(t)
	e.subscribe(tok, e.topic(org.Name), sub.URL+"/cb", url.Values{"hub.lease_seconds": {"300"}})
	e.waitVerifications("verified", 1)
	s, _ := e.findSub(org, sub.URL+"/cb")
	// The sweep the subscription triggered has run (it recounts the
	// gauge): the next is an hour away.
	eventually(t, "the sweep after the change", func() bool { return e.metric("otphub_websub_subscriptions", "state", "active") == 1 })
	e.clock.Advance(301 * time.Second)
	list := e.do(http.MethodGet, "/api/v1/orgs/"+org.Name+"/subscriptions", tok, "", nil)
	one := e.do(http.MethodGet, "/api/v1/orgs/"+org.Name+"/subscriptions/"+s.ID, tok, "", nil)
	for _, r := range []response{list, one} {
		if r.code != 200 || !strings.Contains(string(r.body), `"state":"expired"`) || strings.Contains(string(r.body), `"state":"active"`) {
			t.Errorf("a lapsed subscription: %d %s", r.code, r.body)
		}
	}
}

// TestSecretRotationOverlap: re-subscribing with a new hub.secret signs
// deliveries under both secrets (one Webhook-Signature v1 entry each) for
// the overlap, then under the new one only; X-Hub-Signature carries the
// new one throughout.
func TestSecretRotationOverlap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("rotating")
	tok := e.token(org, access.ScopeSubscribe)
	sub := newSubscriber(t)
	cb := sub.URL + "/cb"
	e.subscribe(tok, e.topic(org.Name), cb, url.Values{"hub.secret": {"old-secret"}})
	e.waitVerifications("verified", 1)
	e.subscribe(tok, e.topic(org.Name), cb, url.Values{"hub.secret": {"new-secret"}, websub.ParamSecretOverlap: {"3600"}})
	e.waitVerifications("verified", 2)

	send := func() post {
		t.Helper()
		ev, _ := eventFor(t, org)
		ts, err := e.hub.Resolver().Resolve(e.ctx, ev)
		if err != nil || len(ts) != 1 {
			t.Fatalf("Resolve: %d %v", len(ts), err)
		}
		if r := ts[0].Sender.Send(e.ctx, ev); !r.OK {
			t.Fatalf("Send: %+v", r)
		}
		return sub.waitPost(t)
	}
	d := send()
	want := standardSignature("new-secret", d) + " " + standardSignature("old-secret", d)
	if got := d.header.Get("Webhook-Signature"); got != want {
		t.Errorf("during the overlap Webhook-Signature = %q, want %q", got, want)
	}
	if got := d.header.Get("X-Hub-Signature"); got != hubSignature("new-secret", d.body) {
		t.Errorf("X-Hub-Signature = %q, want the new secret's", got)
	}
	// The API tells until when the replaced secret still signs.
	view := func() websub.SubscriptionView {
		t.Helper()
		s, _ := e.findSub(org, cb)
		r := e.do(http.MethodGet, "/api/v1/orgs/rotating/subscriptions/"+s.ID, tok, "", nil)
		var v websub.SubscriptionView
		if err := json.Unmarshal(r.body, &v); r.code != http.StatusOK || err != nil {
			t.Fatalf("GET subscription: %d %s", r.code, r.body)
		}
		return v
	}
	if v := view(); v.PreviousSecretUntil == nil || v.PreviousSecretUntil.Sub(e.clock.Now()) <= 59*time.Minute || v.PreviousSecretUntil.Sub(e.clock.Now()) > time.Hour {
		t.Errorf("previousSecretUntil = %v, want about an hour from now (%v)", v.PreviousSecretUntil, e.clock.Now())
	}

	// A plain renewal with the same secret keeps the overlap running.
	e.subscribe(tok, e.topic(org.Name), cb, url.Values{"hub.secret": {"new-secret"}})
	e.waitVerifications("verified", 3)
	if s, _ := e.findSub(org, cb); string(s.PreviousSecret) != "old-secret" {
		t.Errorf("a renewal dropped the overlap: previous secret %q", s.PreviousSecret)
	}

	e.clock.Advance(time.Hour + time.Second)
	if v := view(); v.PreviousSecretUntil != nil {
		t.Errorf("after the overlap previousSecretUntil = %v", v.PreviousSecretUntil)
	}
	d = send()
	if got := d.header.Get("Webhook-Signature"); got != standardSignature("new-secret", d) {
		t.Errorf("after the overlap Webhook-Signature = %q, want the new secret's only", got)
	}

	// otphub.secret_overlap_seconds=0 replaces the secret at once.
	e.subscribe(tok, e.topic(org.Name), cb, url.Values{"hub.secret": {"third-secret"}, websub.ParamSecretOverlap: {"0"}})
	e.waitVerifications("verified", 4)
	d = send()
	if got := d.header.Get("Webhook-Signature"); got != standardSignature("third-secret", d) {
		t.Errorf("with no overlap Webhook-Signature = %q", got)
	}
	if r := e.hubForm(tok, url.Values{"hub.mode": {"subscribe"}, "hub.topic": {e.topic(org.Name)}, "hub.callback": {cb}, websub.ParamSecretOverlap: {"-1"}}); r.code != 400 || r.errorCode() != "invalid_secret_overlap" {
		t.Errorf("a negative overlap: %d %s", r.code, r.body)
	}
}
