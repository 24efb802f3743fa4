package storetest

import (
	"testing"
	"time"

	"github.com/otphub/otphub/store"
)

var subscriptionCases = []testCase{
	{"Subscriptions", testSubscriptions},
	{"SubscriptionsOrgScoping", testSubscriptionsOrgScoping},
	{"SubscriptionsActiveAndExpire", testSubscriptionsActiveAndExpire},
	{"SubscriptionsAutoRenew", testSubscriptionsAutoRenew},
	{"PayloadEncryption", testPayloadEncryption},
}

// testSubscriptionsAutoRenew: AutoRenew is stored and replaced by a
// re-subscription like every other option.
func testSubscriptionsAutoRenew(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	in := newSub(a.ID, topicA, "https://cb.example/renew")
	in.AutoRenew = true
	got, err := s.UpsertSubscription(c, in)
	must(t, err, "UpsertSubscription(auto-renewing)")
	eq(t, got.AutoRenew, true, "AutoRenew returned")
	found, err := s.FindSubscription(c, a.ID, topicA, in.Callback)
	must(t, err, "FindSubscription")
	eq(t, found.AutoRenew, true, "AutoRenew stored")
	in.AutoRenew = false
	got, err = s.UpsertSubscription(c, in)
	must(t, err, "UpsertSubscription(with a lease)")
	eq(t, got.AutoRenew, false, "AutoRenew after a re-subscription that asked for a lease")
}

// testPayloadEncryption: off and generation 0 until set, per org; turning
// it on or off keeps the generation; rotations count up, concurrent ones
// each count.
func testPayloadEncryption(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	ps, err := s.GetPayloadSettings(c, a.ID)
	must(t, err, "GetPayloadSettings(never set)")
	if ps.Enabled || ps.KeyGeneration != 0 {
		t.Fatalf("payload settings of an org that never set them: %+v", ps)
	}
	must(t, s.SetPayloadEncryption(c, a.ID, true), "SetPayloadEncryption(on)")
	ps, _ = s.GetPayloadSettings(c, a.ID)
	eq(t, ps.Enabled, true, "payload encryption after turning it on")
	ps, _ = s.GetPayloadSettings(c, b.ID)
	eq(t, ps.Enabled, false, "another org's payload encryption")

	ps, err = s.RotatePayloadKey(c, a.ID)
	must(t, err, "RotatePayloadKey")
	eq(t, ps.KeyGeneration, int64(1), "generation after a rotation")
	eq(t, ps.Enabled, true, "a rotation keeps encryption on")
	must(t, s.SetPayloadEncryption(c, a.ID, false), "SetPayloadEncryption(off)")
	ps, _ = s.GetPayloadSettings(c, a.ID)
	if ps.Enabled || ps.KeyGeneration != 1 {
		t.Fatalf("after turning it off: %+v, want off at generation 1", ps)
	}
	ps, err = s.RotatePayloadKey(c, b.ID)
	must(t, err, "RotatePayloadKey(never set)")
	if ps.Enabled || ps.KeyGeneration != 1 {
		t.Fatalf("rotating an org that never set it: %+v", ps)
	}

	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := s.RotatePayloadKey(c, a.ID)
			errs <- err
		}()
	}
	for range n {
		must(t, <-errs, "concurrent RotatePayloadKey")
	}
	ps, _ = s.GetPayloadSettings(c, a.ID)
	eq(t, ps.KeyGeneration, int64(1+n), "generation after concurrent rotations")
}

const topicA = "https://hub.example/topics/org-a/NOTIFICATIONS"

func newSub(orgID int64, topic, callback string) store.Subscription {
	return store.Subscription{OrgID: orgID, Topic: topic, Callback: callback, Secret: []byte("s3cret-\x00-bytes"),
		State: store.SubPending, LeaseSeconds: 864000, Format: "asgardeo", SignatureAlg: "sha256",
		CreatedAt: at(0), UpdatedAt: at(0)}
}

func testSubscriptions(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	in := newSub(a.ID, topicA, "https://cb.example/hook?x=1")
	got, err := s.UpsertSubscription(c, in)
	must(t, err, "UpsertSubscription(create)")
	if got.ID == "" {
		t.Fatalf("UpsertSubscription left the ID empty")
	}
	if got.OrgID != a.ID || got.Topic != in.Topic || got.Callback != in.Callback || got.State != store.SubPending ||
		got.LeaseSeconds != 864000 || !got.ExpiresAt.IsZero() || got.Format != "asgardeo" || got.SignatureAlg != "sha256" ||
		!got.CreatedAt.Equal(at(0)) || !got.UpdatedAt.Equal(at(0)) {
		t.Fatalf("UpsertSubscription(create) = %+v, want %+v", got, in)
	}
	eqBytes(t, got.Secret, in.Secret, "Secret")
	id := got.ID

	// Re-subscription updates in place and keeps the ID and creation time.
	up := newSub(a.ID, topicA, in.Callback)
	up.ID = "ignored-on-update"
	up.Secret = []byte("rotated")
	up.State = store.SubActive
	up.LeaseSeconds = 3600
	up.ExpiresAt = at(time.Hour + time.Minute)
	up.Format = "set-jwt"
	up.SignatureAlg = "sha512"
	up.CreatedAt = at(time.Minute)
	up.UpdatedAt = at(time.Minute)
	got, err = s.UpsertSubscription(c, up)
	must(t, err, "UpsertSubscription(update)")
	if got.ID != id || !got.CreatedAt.Equal(at(0)) || !got.UpdatedAt.Equal(at(time.Minute)) || got.State != store.SubActive ||
		got.LeaseSeconds != 3600 || !got.ExpiresAt.Equal(up.ExpiresAt) || got.Format != "set-jwt" || got.SignatureAlg != "sha512" {
		t.Fatalf("UpsertSubscription(update) = %+v; want ID %s kept, creation time kept, fields updated", got, id)
	}
	eqBytes(t, got.Secret, []byte("rotated"), "Secret after update")

	// A subscription without a secret stays without one.
	other, err := s.UpsertSubscription(c, store.Subscription{OrgID: a.ID, Topic: topicA, Callback: "https://cb.example/two",
		State: store.SubPending, Format: "asgardeo", SignatureAlg: "sha256"})
	must(t, err, "UpsertSubscription(no secret)")
	if len(other.Secret) != 0 || other.ID == id || other.CreatedAt.IsZero() {
		t.Fatalf("UpsertSubscription(no secret) = %+v", other)
	}

	byID, err := s.GetSubscription(c, a.ID, id)
	must(t, err, "GetSubscription")
	eq(t, byID.Callback, in.Callback, "GetSubscription callback")
	eqBytes(t, byID.Secret, []byte("rotated"), "GetSubscription secret")
	found, err := s.FindSubscription(c, a.ID, topicA, in.Callback)
	must(t, err, "FindSubscription")
	eq(t, found.ID, id, "FindSubscription ID")
	_, err = s.FindSubscription(c, a.ID, topicA, "https://cb.example/none")
	wantErr(t, err, store.ErrNotFound, "FindSubscription(unknown callback)")
	_, err = s.GetSubscription(c, a.ID, "nope")
	wantErr(t, err, store.ErrNotFound, "GetSubscription(unknown)")

	list, err := s.ListSubscriptions(c, a.ID)
	must(t, err, "ListSubscriptions")
	if len(list) != 2 || list[0].ID != id || list[1].ID != other.ID {
		t.Fatalf("ListSubscriptions = %+v, want the first then the second", list)
	}

	must(t, s.SetSubscriptionState(c, a.ID, id, store.SubDisabled), "SetSubscriptionState")
	byID, _ = s.GetSubscription(c, a.ID, id)
	eq(t, byID.State, store.SubDisabled, "state after SetSubscriptionState")
	wantErr(t, s.SetSubscriptionState(c, a.ID, "nope", store.SubActive), store.ErrNotFound, "SetSubscriptionState(unknown)")

	must(t, s.DeleteSubscription(c, a.ID, id), "DeleteSubscription")
	wantErr(t, s.DeleteSubscription(c, a.ID, id), store.ErrNotFound, "DeleteSubscription twice")
	_, err = s.GetSubscription(c, a.ID, id)
	wantErr(t, err, store.ErrNotFound, "GetSubscription after delete")
}

func testSubscriptionsOrgScoping(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	sa, err := s.UpsertSubscription(c, newSub(a.ID, topicA, "https://cb.example/hook"))
	must(t, err, "UpsertSubscription(A)")
	// The same topic and callback in another org is another subscription.
	sb, err := s.UpsertSubscription(c, newSub(b.ID, topicA, "https://cb.example/hook"))
	must(t, err, "UpsertSubscription(B)")
	if sb.ID == sa.ID {
		t.Fatalf("two orgs share subscription %s", sa.ID)
	}
	_, err = s.GetSubscription(c, b.ID, sa.ID)
	wantErr(t, err, store.ErrNotFound, "GetSubscription with another org's ID")
	found, err := s.FindSubscription(c, b.ID, topicA, "https://cb.example/hook")
	must(t, err, "FindSubscription(B)")
	eq(t, found.ID, sb.ID, "FindSubscription(B) ID")
	wantErr(t, s.SetSubscriptionState(c, b.ID, sa.ID, store.SubActive), store.ErrNotFound, "SetSubscriptionState through another org")
	wantErr(t, s.DeleteSubscription(c, b.ID, sa.ID), store.ErrNotFound, "DeleteSubscription through another org")
	list, _ := s.ListSubscriptions(c, b.ID)
	if len(list) != 1 || list[0].ID != sb.ID {
		t.Fatalf("ListSubscriptions(B) = %+v, want only B's", list)
	}
	got, _ := s.GetSubscription(c, a.ID, sa.ID)
	eq(t, got.State, store.SubPending, "A's state after B's attempts")
}

func testSubscriptionsActiveAndExpire(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	mk := func(org int64, topic, cb, state string, expires time.Time) store.Subscription {
		in := newSub(org, topic, cb)
		in.State, in.ExpiresAt = state, expires
		out, err := s.UpsertSubscription(c, in)
		must(t, err, "UpsertSubscription(%s)", cb)
		return out
	}
	now := at(time.Hour)
	live := mk(a.ID, topicA, "https://cb/live", store.SubActive, now.Add(time.Minute))
	mk(a.ID, topicA, "https://cb/lapsed", store.SubActive, now.Add(-time.Minute))
	mk(a.ID, topicA, "https://cb/pending", store.SubPending, time.Time{})
	mk(a.ID, topicA, "https://cb/disabled", store.SubDisabled, now.Add(time.Hour))
	mk(a.ID, "https://hub.example/topics/org-a/OTHER", "https://cb/other-topic", store.SubActive, now.Add(time.Hour))
	mk(b.ID, topicA, "https://cb/org-b", store.SubActive, now.Add(time.Hour))

	act, err := s.ActiveSubscriptions(c, a.ID, topicA, now)
	must(t, err, "ActiveSubscriptions")
	if len(act) != 1 || act[0].ID != live.ID {
		t.Fatalf("ActiveSubscriptions = %+v, want only %s", act, live.Callback)
	}
	eqBytes(t, act[0].Secret, live.Secret, "active subscription's secret")

	n, err := s.ExpireSubscriptions(c, now)
	must(t, err, "ExpireSubscriptions")
	eq(t, n, 1, "ExpireSubscriptions count")
	_, err = s.FindSubscription(c, a.ID, topicA, "https://cb/lapsed")
	wantErr(t, err, store.ErrNotFound, "lapsed subscription after ExpireSubscriptions")
	if _, err := s.FindSubscription(c, a.ID, topicA, "https://cb/pending"); err != nil {
		t.Fatalf("a pending subscription (no lease yet) was expired: %v", err)
	}
	n, err = s.ExpireSubscriptions(c, now.Add(2*time.Hour))
	must(t, err, "ExpireSubscriptions(later)")
	eq(t, n, 4, "ExpireSubscriptions(later) count, across orgs")
	list, _ := s.ListSubscriptions(c, a.ID)
	if len(list) != 1 || list[0].Callback != "https://cb/pending" {
		t.Fatalf("subscriptions left = %+v, want only the pending one", list)
	}
}
