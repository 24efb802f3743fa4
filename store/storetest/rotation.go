package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/otphub/otphub/store"
)

// Reopener opens the same database every call (a fresh one per test), with
// opts; it registers the store's Close with t.Cleanup. Close may be called
// earlier and again.
type Reopener func(t *testing.T, opts store.Options) store.Store

// CheckKeyRotation writes one secret of every sealed kind under key A and
// runs the rotation procedure: A current with B as next (every process can
// read B before any writes with it; Reseal refuses), then B current with A
// as previous, while a process still on the first step reads what B
// sealed and moves nothing back; Reseal then moves every value to B, after
// which B alone opens them all, and A alone opens none. It also checks
// DataKey.
func CheckKeyRotation(t *testing.T, open Reopener) {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	keyA, keyB := bytes.Repeat([]byte{0xa}, 32), bytes.Repeat([]byte{0xb}, 32)

	s := open(t, store.Options{EncryptionKey: keyA})
	org := mustOrg(t, s, "rotating")
	provider := []byte(`{"authToken":"provider-secret"}`)
	must(t, s.PutSMSProvider(c, store.SMSProvider{OrgID: org.ID, Slot: store.ProviderPrimary, Type: "twilio", Config: provider}), "PutSMSProvider")
	sub, err := s.UpsertSubscription(c, store.Subscription{OrgID: org.ID, Topic: topicA, Callback: "https://cb/x", Secret: []byte("sub-secret"), State: store.SubActive})
	must(t, err, "UpsertSubscription")
	must(t, s.InsertSigningKey(c, store.SigningKey{KID: "k1", Algorithm: "ES256", PrivateKey: []byte("private-key")}), "InsertSigningKey")
	must(t, s.CreateApplication(c, store.Application{ID: "app-1", OrgID: org.ID, Name: "app", ClientID: "client-1", ClientSecret: []byte("app-secret")}), "CreateApplication")
	// More tasks than one reseal batch, so the pass pages.
	const tasks = 450
	var ts []store.DeliveryTask
	for i := range tasks {
		ts = append(ts, store.DeliveryTask{ID: fmt.Sprintf("t%04d", i), OrgID: org.ID, EventID: fmt.Sprintf("e%04d", i),
			DestinationType: "webhook", DestinationID: sub.ID, Event: []byte(fmt.Sprintf("event %d", i)), Status: store.DeliveryPending})
	}
	_, err = s.InsertDeliveryTasks(c, ts, nil)
	must(t, err, "InsertDeliveryTasks")
	dataKey, err := s.DataKey(c, "hmac", func() ([]byte, error) { return []byte("data-key-0123456789"), nil })
	must(t, err, "DataKey (first)")
	eqBytes(t, dataKey, []byte("data-key-0123456789"), "DataKey stores initial()")
	again, err := s.DataKey(c, "hmac", func() ([]byte, error) { return nil, errors.New("initial called twice") })
	must(t, err, "DataKey (second)")
	eqBytes(t, again, dataKey, "DataKey returns the stored key")
	must(t, s.Close(), "Close")

	readAll := func(s store.Store, what string) error {
		p, err := s.GetSMSProvider(c, org.ID, store.ProviderPrimary)
		if err != nil {
			return fmt.Errorf("%s: provider: %w", what, err)
		}
		eqBytes(t, p.Config, provider, what+": provider config")
		got, err := s.GetSubscription(c, org.ID, sub.ID)
		if err != nil {
			return fmt.Errorf("%s: subscription: %w", what, err)
		}
		eqBytes(t, got.Secret, []byte("sub-secret"), what+": subscription secret")
		keys, err := s.ListSigningKeys(c)
		if err != nil {
			return fmt.Errorf("%s: signing keys: %w", what, err)
		}
		eqBytes(t, keys[0].PrivateKey, []byte("private-key"), what+": signing key")
		app, err := s.GetApplication(c, org.ID, "app-1")
		if err != nil {
			return fmt.Errorf("%s: application: %w", what, err)
		}
		eqBytes(t, app.ClientSecret, []byte("app-secret"), what+": application client secret")
		for _, i := range []int{0, tasks / 2, tasks - 1} {
			task, _, err := s.GetDelivery(c, org.ID, fmt.Sprintf("t%04d", i))
			if err != nil {
				return fmt.Errorf("%s: delivery task %d: %w", what, i, err)
			}
			eqBytes(t, task.Event, []byte(fmt.Sprintf("event %d", i)), what+": delivery event")
		}
		k, err := s.DataKey(c, "hmac", func() ([]byte, error) { return nil, errors.New("the stored data key was not found") })
		if err != nil {
			return fmt.Errorf("%s: data key: %w", what, err)
		}
		eqBytes(t, k, dataKey, what+": data key")
		return nil
	}

	step1 := store.Options{EncryptionKey: keyA, NextEncryptionKey: keyB}
	s = open(t, step1)
	must(t, readAll(s, "A with B as next"), "read")
	if _, err := s.Reseal(c); err == nil {
		t.Error("Reseal ran with a next key configured")
	}
	must(t, s.Close(), "Close")

	s = open(t, store.Options{EncryptionKey: keyB, PreviousEncryptionKeys: [][]byte{keyA}})
	must(t, readAll(s, "B with A as previous, before Reseal"), "read")
	// A value written now is sealed under B.
	must(t, s.PutSMSProvider(c, store.SMSProvider{OrgID: org.ID, Slot: store.ProviderFallback, Type: "vonage", Config: []byte(`{"apiSecret":"x"}`)}), "PutSMSProvider(fallback)")
	// A process still on step 1 reads it.
	old := open(t, step1)
	p, err := old.GetSMSProvider(c, org.ID, store.ProviderFallback)
	must(t, err, "a step-1 process reading a value sealed under the next key")
	eqBytes(t, p.Config, []byte(`{"apiSecret":"x"}`), "fallback config read by a step-1 process")
	must(t, old.Close(), "Close")
	// Two replicas resealing at once: both succeed, nothing is resealed twice
	// over the other's work, and the database ends with every value under B.
	var wg sync.WaitGroup
	results := make([]store.ResealResult, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() { results[i], errs[i] = s.Reseal(c) })
	}
	wg.Wait()
	must(t, errors.Join(errs...), "Reseal")
	total := results[0].Resealed + results[1].Resealed
	// provider, subscription, signing key, data key, application and every task.
	eq(t, total, int64(5+tasks), "values resealed by two concurrent passes")
	res, err := s.Reseal(c)
	must(t, err, "Reseal (again)")
	eq(t, res, store.ResealResult{}, "a second pass finds nothing to do")
	must(t, s.Close(), "Close")

	s = open(t, store.Options{EncryptionKey: keyB})
	must(t, readAll(s, "B alone, after Reseal"), "read")
	must(t, s.Close(), "Close")

	s = open(t, store.Options{EncryptionKey: keyA})
	if _, err := s.GetSMSProvider(c, org.ID, store.ProviderPrimary); err == nil {
		t.Error("after Reseal, the old key alone still opens a provider config")
	}
	res, err = s.Reseal(c)
	must(t, err, "Reseal under a key that opens nothing")
	eq(t, res.Remaining, int64(6+tasks), "values not under the (old) current key")
	eq(t, res.Unreadable, res.Remaining, "values no configured key opens")
	must(t, s.Close(), "Close")
}
