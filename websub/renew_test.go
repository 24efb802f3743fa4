package websub_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/otphub/otphub/access"
)

// TestAutoRenewWithoutLease: a subscriber that asked for no lease (the
// Asgardeo trigger never renews) is asked again before its lease ends and
// an echo extends the lease; one that named a lease is never asked, and
// lapses as WebSub says.
func TestAutoRenewWithoutLease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("renewing")
	tok := e.token(org, access.ScopeSubscribe)
	sub := newSubscriber(t)
	e.subscribe(tok, e.topic(org.Name), sub.URL+"/auto", nil)
	e.subscribe(tok, e.topic(org.Name), sub.URL+"/leased", url.Values{"hub.lease_seconds": {"864000"}})
	e.waitVerifications("verified", 2)
	auto, _ := e.findSub(org, sub.URL+"/auto")
	leased, _ := e.findSub(org, sub.URL+"/leased")
	if !auto.AutoRenew || leased.AutoRenew {
		t.Fatalf("AutoRenew: without a lease %v, with one %v", auto.AutoRenew, leased.AutoRenew)
	}

	// Not yet due: nothing is asked.
	e.clock.Advance(8 * 24 * time.Hour)
	time.Sleep(100 * time.Millisecond) // several sweeps (ExpiryInterval 20 ms) that must not renew
	if n := len(sub.verifications()); n != 2 {
		t.Fatalf("%d verifications before the renewal is due", n)
	}
	// Within a day of the end: the hub verifies intent again.
	e.clock.Advance(36 * time.Hour)
	renewedAt := e.clock.Now()
	e.waitVerifications("verified", 3)
	v := sub.verifications()[2]
	if v.Get("hub.mode") != "subscribe" || v.Get("hub.topic") != e.topic(org.Name) || v.Get("hub.lease_seconds") != "864000" || v.Get("hub.challenge") == "" {
		t.Fatalf("renewal verification %v", v)
	}
	eventually(t, "the lease to be extended", func() bool {
		s, ok := e.findSub(org, sub.URL+"/auto")
		return ok && !s.ExpiresAt.Before(renewedAt.Add(864000*time.Second).Truncate(time.Microsecond))
	})

	// The leased one lapses; the renewed one stays.
	e.clock.Advance(13 * time.Hour)
	eventually(t, "the leased subscription to lapse", func() bool {
		_, ok := e.findSub(org, sub.URL+"/leased")
		return !ok
	})
	if _, ok := e.findSub(org, sub.URL+"/auto"); !ok {
		t.Fatal("the renewed subscription lapsed")
	}
	for _, q := range sub.verifications() {
		if q.Get("hub.topic") != e.topic(org.Name) {
			t.Errorf("verification of another topic: %v", q)
		}
	}
}

// TestAutoRenewRefused: a subscriber that does not echo the renewal keeps
// its lease until it ends, is asked again at most hourly meanwhile, and
// then lapses.
func TestAutoRenewRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	org := e.org("refusing")
	tok := e.token(org, access.ScopeSubscribe)
	sub := newSubscriber(t)
	e.subscribe(tok, e.topic(org.Name), sub.URL+"/cb", nil)
	e.waitVerifications("verified", 1)
	s, _ := e.findSub(org, sub.URL+"/cb")
	sub.setAnswer(func(url.Values) (int, string) { return 404, "" })

	e.clock.Advance(9*24*time.Hour + time.Hour)
	e.waitVerifications("rejected", 1)
	time.Sleep(100 * time.Millisecond) // sweeps within the hour: no second try
	if n := e.metric("otphub_websub_intent_verifications_total", "outcome", "rejected"); n != 1 {
		t.Fatalf("%v rejected renewals within an hour, want 1", n)
	}
	e.clock.Advance(61 * time.Minute)
	e.waitVerifications("rejected", 2)
	if cur, ok := e.findSub(org, sub.URL+"/cb"); !ok || !cur.ExpiresAt.Equal(s.ExpiresAt) {
		t.Fatalf("a refused renewal changed the lease: %+v", cur)
	}
	e.clock.Advance(24 * time.Hour)
	eventually(t, "the unrenewed subscription to lapse", func() bool {
		_, ok := e.findSub(org, sub.URL+"/cb")
		return !ok
	})
}
