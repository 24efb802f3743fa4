package websub_test

// A Go port of the websub.rocks hub tests 100–104
// (https://websub.rocks/hub): each runs a real subscriber endpoint against
// the hub over HTTP, then publishes an event and checks the content
// distribution request the real dispatcher engine makes.

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/dispatcher"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
)

// startDispatcher runs the real delivery engine over the env's log and
// store, with the hub's resolver.
func (e *env) startDispatcher() {
	e.t.Helper()
	eng, err := dispatcher.New(dispatcher.Config{}, e.log, e.log, e.st, []delivery.Resolver{e.hub.Resolver()}, nil, e.reg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = eng.Run(ctx)
	}()
	e.t.Cleanup(func() { cancel(); <-done })
}

// publishOK publishes a fresh event of org and returns it.
func (e *env) publishOK(token string, org store.Org) *event.SmsOtpNotificationEvent {
	e.t.Helper()
	ev, body := eventFor(e.t, org)
	if r := e.publish(token, e.topic(org.Name), body); r.code != http.StatusAccepted {
		e.t.Fatalf("publish: %d %s", r.code, r.body)
	}
	return ev
}

// checkDistribution checks the WebSub content distribution request d of ev.
func (e *env) checkDistribution(d post, ev *event.SmsOtpNotificationEvent, org store.Org) {
	e.t.Helper()
	wantLink := `<` + e.base + `/hub>; rel="hub", <` + e.topic(org.Name) + `>; rel="self"`
	if got := d.header.Get("Link"); got != wantLink {
		e.t.Errorf("Link = %q, want %q", got, wantLink)
	}
	if ct := d.header.Get("Content-Type"); ct != "application/json" {
		e.t.Errorf("Content-Type = %q", ct)
	}
	got, err := event.UnmarshalAsgardeo(d.body)
	if err != nil {
		e.t.Fatalf("body: %v\n%s", err, d.body)
	}
	if got.ID != ev.ID || got.SendTo != ev.SendTo || got.MessageBody != ev.MessageBody || got.Audience != e.topic(org.Name) {
		e.t.Errorf("delivered %+v, want %+v with aud %s", got, ev, e.topic(org.Name))
	}
	if d.header.Get("webhook-id") != ev.ID {
		e.t.Errorf("webhook-id = %q, want %q", d.header.Get("webhook-id"), ev.ID)
	}
}

// Test 100: typical subscriber request.
func TestWebSubRocks100TypicalSubscription(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDispatcher()
	org := e.org("rocks100")
	tok := e.token(org, access.ScopeSubscribe, access.ScopePublish)
	sub := newSubscriber(t)

	e.subscribe(tok, e.topic(org.Name), sub.URL+"/callback", nil)
	e.waitVerifications("verified", 1)

	v := sub.verifications()
	if len(v) != 1 {
		t.Fatalf("%d verification requests, want 1", len(v))
	}
	q := v[0]
	if q.Get("hub.mode") != "subscribe" || q.Get("hub.topic") != e.topic(org.Name) || len(q.Get("hub.challenge")) < 20 {
		t.Errorf("verification query %v", q)
	}
	if ls, err := strconv.Atoi(q.Get("hub.lease_seconds")); err != nil || ls != 864000 {
		t.Errorf("hub.lease_seconds = %q, want the 10-day default", q.Get("hub.lease_seconds"))
	}
	s, ok := e.findSub(org, sub.URL+"/callback")
	if !ok || s.State != store.SubActive || s.LeaseSeconds != 864000 || len(s.Secret) != 0 {
		t.Fatalf("subscription %+v (found %v)", s, ok)
	}

	ev := e.publishOK(tok, org)
	d := sub.waitPost(t)
	e.checkDistribution(d, ev, org)
	if d.header.Get("X-Hub-Signature") != "" || d.header.Get("webhook-signature") != "" {
		t.Error("signature headers without a secret")
	}
}

// Test 101: subscriber request with a secret: distribution is signed.
func TestWebSubRocks101SubscriptionWithSecret(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDispatcher()
	org := e.org("rocks101")
	tok := e.token(org, access.ScopeSubscribe, access.ScopePublish)
	sub := newSubscriber(t)
	const secret = "a-subscriber-secret-of-reasonable-length"

	e.subscribe(tok, e.topic(org.Name), sub.URL+"/cb", url.Values{"hub.secret": {secret}})
	e.waitVerifications("verified", 1)

	ev := e.publishOK(tok, org)
	d := sub.waitPost(t)
	e.checkDistribution(d, ev, org)
	if got, want := d.header.Get("X-Hub-Signature"), hubSignature(secret, d.body); got != want {
		t.Errorf("X-Hub-Signature = %q, want %q", got, want)
	}
}

// Test 102: a callback with its own query string: kept in verification and
// in distribution, the hub's parameters appended.
func TestWebSubRocks102CallbackQueryPreserved(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDispatcher()
	org := e.org("rocks102")
	tok := e.token(org, access.ScopeSubscribe, access.ScopePublish)
	sub := newSubscriber(t)
	callback := sub.URL + "/cb?foo=bar&red=fish"

	e.subscribe(tok, e.topic(org.Name), callback, url.Values{"unknown.param": {"ignored"}})
	e.waitVerifications("verified", 1)

	sub.mu.Lock()
	raw := sub.rawGets[0]
	sub.mu.Unlock()
	if len(raw) < len("foo=bar&red=fish&") || raw[:len("foo=bar&red=fish&")] != "foo=bar&red=fish&" {
		t.Errorf("verification query %q does not start with the callback's own parameters", raw)
	}
	q := sub.verifications()[0]
	if q.Get("foo") != "bar" || q.Get("red") != "fish" || q.Get("hub.challenge") == "" {
		t.Errorf("verification query %v", q)
	}

	ev := e.publishOK(tok, org)
	d := sub.waitPost(t)
	e.checkDistribution(d, ev, org)
	if d.query != "foo=bar&red=fish" {
		t.Errorf("distribution query %q, want the callback's own", d.query)
	}
}

// Test 103: re-subscription updates the subscription in place: new secret,
// new lease, new options, same subscription.
func TestWebSubRocks103Resubscription(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDispatcher()
	org := e.org("rocks103")
	tok := e.token(org, access.ScopeSubscribe, access.ScopePublish)
	sub := newSubscriber(t)
	cb := sub.URL + "/cb"

	e.subscribe(tok, e.topic(org.Name), cb, url.Values{"hub.secret": {"first-secret"}, "hub.lease_seconds": {"3600"}})
	e.waitVerifications("verified", 1)
	first, _ := e.findSub(org, cb)

	e.subscribe(tok, org.Name+"-NOTIFICATIONS", cb, url.Values{"hub.secret": {"second-secret"}, "hub.lease_seconds": {"7200"}, "otphub.signature_alg": {"sha512"}})
	e.waitVerifications("verified", 2)

	second, ok := e.findSub(org, cb)
	if !ok || second.ID != first.ID {
		t.Fatalf("re-subscription made a new subscription: %s then %s", first.ID, second.ID)
	}
	if string(second.Secret) != "second-secret" || second.LeaseSeconds != 7200 || second.SignatureAlg != "sha512" || !second.ExpiresAt.After(first.ExpiresAt) {
		t.Errorf("not updated in place: %+v", second)
	}
	if q := sub.verifications()[1]; q.Get("hub.topic") != org.Name+"-NOTIFICATIONS" || q.Get("hub.lease_seconds") != "7200" {
		t.Errorf("second verification %v", q)
	}
	all, _ := e.st.ListSubscriptions(e.ctx, org.ID)
	if len(all) != 1 {
		t.Fatalf("%d subscriptions, want 1", len(all))
	}

	e.publishOK(tok, org)
	d := sub.waitPost(t)
	if sig := d.header.Get("X-Hub-Signature"); len(sig) < 7 || sig[:7] != "sha512=" {
		t.Errorf("X-Hub-Signature %q, want sha512 after the update", sig)
	}
	// The new secret signs first; the replaced one signs too during the
	// rotation overlap (TestSecretRotationOverlap).
	if sig, want := d.header.Get("webhook-signature"), standardSignature("second-secret", d)+" "+standardSignature("first-secret", d); sig != want {
		t.Errorf("webhook-signature %q, want %q", sig, want)
	}
}

// Test 104: unsubscription is verified, then the subscription is gone and
// nothing more is delivered.
func TestWebSubRocks104Unsubscribe(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDispatcher()
	org := e.org("rocks104")
	tok := e.token(org, access.ScopeSubscribe, access.ScopePublish)
	sub := newSubscriber(t)
	cb := sub.URL + "/cb"

	e.subscribe(tok, e.topic(org.Name), cb, nil)
	e.waitVerifications("verified", 1)
	e.publishOK(tok, org)
	sub.waitPost(t)

	r := e.hubForm(tok, url.Values{"hub.mode": {"unsubscribe"}, "hub.topic": {e.topic(org.Name)}, "hub.callback": {cb}})
	if r.code != http.StatusAccepted {
		t.Fatalf("unsubscribe: %d %s", r.code, r.body)
	}
	e.waitVerifications("verified", 2)
	q := sub.verifications()[1]
	if q.Get("hub.mode") != "unsubscribe" || q.Get("hub.topic") != e.topic(org.Name) || q.Get("hub.challenge") == "" {
		t.Errorf("unsubscribe verification %v", q)
	}
	if _, ok := e.findSub(org, cb); ok {
		t.Fatal("still subscribed after a verified unsubscription")
	}
	ev, _ := eventFor(t, org)
	targets, err := e.hub.Resolver().Resolve(e.ctx, ev)
	if err != nil || len(targets) != 0 {
		t.Fatalf("Resolve after unsubscribe = %d targets, %v", len(targets), err)
	}
}
