// Package storetest is the conformance suite every store.Store adapter must
// pass, in the style of watermill's universal pub/sub tests: an adapter's own
// test calls Run with a constructor that opens a fresh, empty store.
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return openFresh(t) })
//	}
//
// Beyond Run, CheckSecretsAtRest inspects an adapter's raw tables to prove
// secrets are never stored in clear, CheckDeliveryKeyMigration checks a
// migration on a database holding data, and the Bench* functions are shared
// benchmarks.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/otphub/otphub/store"
)

// Opener opens a fresh, empty store for one test and registers its Close
// with t.Cleanup.
type Opener func(t *testing.T) store.Store

type testCase struct {
	name string
	fn   func(t *testing.T, s store.Store)
}

// Run runs every conformance test against fresh stores made by open. The
// cases run in parallel (t.Parallel), each on its own store, so open must be
// safe for concurrent use.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	var cases []testCase
	cases = append(cases, orgCases...)
	cases = append(cases, otpCases...)
	cases = append(cases, subscriptionCases...)
	cases = append(cases, deliveryCases...)
	cases = append(cases, receiptCases...)
	cases = append(cases, concurrencyCases...)
	cases = append(cases, loginCases...)
	cases = append(cases, consoleCases...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			tc.fn(t, s)
		})
	}
}

// base is the suite's clock origin, at microsecond precision like the stores.
var base = time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC)

func at(d time.Duration) time.Time { return base.Add(d) }

func ctx(t *testing.T) context.Context {
	// Only a guard against hangs: generous, since CI machines can be busy.
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func mustOrg(t *testing.T, s store.Store, name string) store.Org {
	t.Helper()
	o, err := s.CreateOrg(ctx(t), name)
	if err != nil {
		t.Fatalf("CreateOrg(%q): %v", name, err)
	}
	return o
}

func must(t *testing.T, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}

func wantErr(t *testing.T, err, want error, what string, args ...any) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", fmt.Sprintf(what, args...), err, want)
	}
}

func eqTime(t *testing.T, got, want time.Time, what string) {
	t.Helper()
	if !got.Equal(want) {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func eqBytes(t *testing.T, got, want []byte, what string) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s = %q, want %q", what, got, want)
	}
}

func eq[T comparable](t *testing.T, got, want T, what string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}
