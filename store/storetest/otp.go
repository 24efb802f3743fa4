package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/otphub/otphub/store"
)

var otpCases = []testCase{
	{"OTPSettings", testOTPSettings},
	{"MessageTemplates", testMessageTemplates},
	{"Challenges", testChallenges},
	{"ChallengeResend", testChallengeResend},
	{"ChallengeConsume", testChallengeConsume},
	{"FailedAttempts", testFailedAttempts},
	{"ReserveFailedAttempt", testReserveFailedAttempt},
	{"BackupCodes", testBackupCodes},
	{"HitCounter", testHitCounter},
	{"SMSProviders", testSMSProviders},
	{"Housekeeping", testHousekeeping},
	{"OTPStats", testOTPStats},
}

func testOTPSettings(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	_, err := s.GetOTPSettings(c, a.ID)
	wantErr(t, err, store.ErrNotFound, "GetOTPSettings before any put")

	in := store.OTPSettings{OrgID: a.ID, ExpirySeconds: 300, NumericOnly: true, Length: 6, MaxResends: 3,
		ResendIntervalSeconds: 30, MaxFailedAttempts: 5, BackupCodesEnabled: true, WebOTP: true, AllowedCountryCodes: []int{94, 1},
		UpdatedAt: at(0), AllowedNumberTypes: []string{"mobile", "voip"}, SendLimitPerNumber: 3, SendLimitPerIP: 40, SendLimitPerOrg: 500}
	must(t, s.PutOTPSettings(c, in), "PutOTPSettings")
	got, err := s.GetOTPSettings(c, a.ID)
	must(t, err, "GetOTPSettings")
	if got.OrgID != a.ID || got.ExpirySeconds != 300 || !got.NumericOnly || got.Length != 6 || got.MaxResends != 3 ||
		got.ResendIntervalSeconds != 30 || got.MaxFailedAttempts != 5 || !got.BackupCodesEnabled || !got.WebOTP ||
		!slices.Equal(got.AllowedCountryCodes, []int{94, 1}) || !got.UpdatedAt.Equal(at(0)) ||
		!slices.Equal(got.AllowedNumberTypes, []string{"mobile", "voip"}) || got.SendLimitPerNumber != 3 ||
		got.SendLimitPerIP != 40 || got.SendLimitPerOrg != 500 {
		t.Fatalf("GetOTPSettings = %+v, want %+v", got, in)
	}

	in2 := store.OTPSettings{OrgID: a.ID, ExpirySeconds: 120, Length: 8, UpdatedAt: at(time.Minute)}
	must(t, s.PutOTPSettings(c, in2), "PutOTPSettings(replace)")
	got, _ = s.GetOTPSettings(c, a.ID)
	if got.ExpirySeconds != 120 || got.NumericOnly || got.Length != 8 || got.BackupCodesEnabled || got.WebOTP ||
		len(got.AllowedCountryCodes) != 0 || !got.UpdatedAt.Equal(at(time.Minute)) || got.AllowedNumberTypes != nil ||
		got.SendLimitPerNumber != 0 || got.SendLimitPerIP != 0 || got.SendLimitPerOrg != 0 {
		t.Fatalf("GetOTPSettings after replace = %+v, want %+v", got, in2)
	}
	_, err = s.GetOTPSettings(c, b.ID)
	wantErr(t, err, store.ErrNotFound, "GetOTPSettings of another org")
}

func testMessageTemplates(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	_, err := s.GetMessageTemplate(c, a.ID, "")
	wantErr(t, err, store.ErrNotFound, "GetMessageTemplate before any put")

	must(t, s.PutMessageTemplate(c, store.MessageTemplate{OrgID: a.ID, Locale: "", Body: "Code {{code}}", UpdatedAt: at(0)}), "PutMessageTemplate")
	must(t, s.PutMessageTemplate(c, store.MessageTemplate{OrgID: a.ID, Locale: "fr-CA", Body: "Code: {{code}} é", UpdatedAt: at(0)}), "PutMessageTemplate")
	must(t, s.PutMessageTemplate(c, store.MessageTemplate{OrgID: a.ID, Locale: "fr-CA", Body: "Votre code {{code}}", UpdatedAt: at(time.Hour)}), "PutMessageTemplate(replace)")

	got, err := s.GetMessageTemplate(c, a.ID, "fr-CA")
	must(t, err, "GetMessageTemplate")
	if got.Body != "Votre code {{code}}" || got.OrgID != a.ID || got.Locale != "fr-CA" || !got.UpdatedAt.Equal(at(time.Hour)) {
		t.Fatalf("GetMessageTemplate = %+v", got)
	}
	list, err := s.ListMessageTemplates(c, a.ID)
	must(t, err, "ListMessageTemplates")
	if len(list) != 2 || list[0].Locale != "" || list[1].Locale != "fr-CA" {
		t.Fatalf("ListMessageTemplates = %+v, want the default then fr-CA", list)
	}

	_, err = s.GetMessageTemplate(c, b.ID, "fr-CA")
	wantErr(t, err, store.ErrNotFound, "GetMessageTemplate of another org")
	if list, _ := s.ListMessageTemplates(c, b.ID); len(list) != 0 {
		t.Fatalf("ListMessageTemplates(org B) returned org A's templates: %+v", list)
	}
	wantErr(t, s.DeleteMessageTemplate(c, b.ID, "fr-CA"), store.ErrNotFound, "DeleteMessageTemplate through another org")

	must(t, s.DeleteMessageTemplate(c, a.ID, "fr-CA"), "DeleteMessageTemplate")
	wantErr(t, s.DeleteMessageTemplate(c, a.ID, "fr-CA"), store.ErrNotFound, "DeleteMessageTemplate twice")
	_, err = s.GetMessageTemplate(c, a.ID, "fr-CA")
	wantErr(t, err, store.ErrNotFound, "GetMessageTemplate after delete")
}

func newChallenge(orgID int64, id string) store.Challenge {
	return store.Challenge{ID: id, OrgID: orgID, UserID: "alice", Mobile: "+94771234567", CountryCode: 94, Application: "myapp",
		CodeHMAC: []byte("hmac-1"), EventID: "ev-1", ExpiresAt: at(5 * time.Minute), LastSentAt: at(0), CreatedAt: at(0)}
}

func testChallenges(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	ch := newChallenge(a.ID, "11111111-1111-4111-8111-111111111111")
	hit := store.CounterHit{Key: "created-with:" + ch.ID, WindowStart: at(0), ExpiresAt: at(time.Hour)}
	must(t, s.CreateChallenge(c, ch, store.Lockout{}, hit), "CreateChallenge")
	// The duplicate is refused as a whole: its counter hit is not made.
	wantErr(t, s.CreateChallenge(c, ch, store.Lockout{}, hit), store.ErrConflict, "CreateChallenge(duplicate ID)")
	n, err := s.HitCounter(c, hit.Key, hit.WindowStart, hit.ExpiresAt)
	must(t, err, "HitCounter")
	eq(t, n, int64(2), "counter hit by CreateChallenge once, then by HitCounter")

	// Budgets: a hit that takes its counter past Max refuses the challenge;
	// the hits up to it are kept, the later ones and the challenge are not.
	budget := func(key string, max int64) store.CounterHit {
		return store.CounterHit{Key: key, WindowStart: at(0), ExpiresAt: at(time.Hour), Max: max}
	}
	hits := []store.CounterHit{budget("budget-a", 5), budget("budget-b", 1), budget("budget-c", 5)}
	for i, id := range []string{"33333333-3333-4333-8333-333333333331", "33333333-3333-4333-8333-333333333332"} {
		err := s.CreateChallenge(c, newChallenge(a.ID, id), store.Lockout{}, hits...)
		_, getErr := s.GetChallenge(c, a.ID, id)
		if i == 0 {
			must(t, err, "CreateChallenge within its budgets")
			must(t, getErr, "GetChallenge of the one within its budgets")
			continue
		}
		over, ok := errors.AsType[*store.OverBudgetError](err)
		if !ok || over.Hit != 1 {
			t.Fatalf("CreateChallenge past budget-b = %v, want *store.OverBudgetError{Hit: 1}", err)
		}
		wantErr(t, getErr, store.ErrNotFound, "GetChallenge of the one refused by its budget")
	}
	for key, want := range map[string]int64{"budget-a": 3, "budget-b": 3, "budget-c": 2} {
		n, err := s.HitCounter(c, key, at(0), at(time.Hour))
		must(t, err, "HitCounter")
		eq(t, n, want, key+" after two challenges (the second refused at budget-b) and this hit")
	}

	// The same counter twice (one statement could not update it twice):
	// both hits count.
	dup := budget("budget-dup", 10)
	must(t, s.CreateChallenge(c, newChallenge(a.ID, "33333333-3333-4333-8333-333333333333"), store.Lockout{}, dup, hits[0], dup), "CreateChallenge with a counter hit twice")
	n, err = s.HitCounter(c, dup.Key, dup.WindowStart, dup.ExpiresAt)
	must(t, err, "HitCounter")
	eq(t, n, int64(3), "budget-dup after a challenge that hit it twice and this hit")

	got, err := s.GetChallenge(c, a.ID, ch.ID)
	must(t, err, "GetChallenge")
	if got.ID != ch.ID || got.OrgID != a.ID || got.UserID != "alice" || got.Mobile != ch.Mobile || got.Application != "myapp" ||
		got.Resends != 0 || !got.ExpiresAt.Equal(ch.ExpiresAt) || !got.LastSentAt.Equal(at(0)) ||
		!got.ConsumedAt.IsZero() || !got.CreatedAt.Equal(at(0)) {
		t.Fatalf("GetChallenge = %+v, want %+v", got, ch)
	}
	eqBytes(t, got.CodeHMAC, ch.CodeHMAC, "CodeHMAC")
	eq(t, got.EventID, "ev-1", "EventID")
	eq(t, got.CountryCode, 94, "CountryCode")

	_, err = s.GetChallenge(c, b.ID, ch.ID)
	wantErr(t, err, store.ErrNotFound, "GetChallenge with another org's ID")
	_, err = s.GetChallenge(c, a.ID, "22222222-2222-4222-8222-222222222222")
	wantErr(t, err, store.ErrNotFound, "GetChallenge(unknown)")
}

func testChallengeResend(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	ch := newChallenge(a.ID, "c-resend")
	must(t, s.CreateChallenge(c, ch, store.Lockout{}), "CreateChallenge")

	// A resend claims its turn, then installs its code under that claim.
	must(t, s.ClaimResend(c, a.ID, ch.ID, 0, at(0), at(time.Minute)), "ClaimResend")
	wantErr(t, s.ClaimResend(c, a.ID, ch.ID, 0, at(0), at(time.Minute+time.Second)), store.ErrPrecondition, "ClaimResend of a turn already claimed")
	wantErr(t, s.ClaimResend(c, b.ID, ch.ID, 0, at(time.Minute), at(2*time.Minute)), store.ErrNotFound, "ClaimResend through another org")
	wantErr(t, s.ReplaceChallengeCode(c, a.ID, ch.ID, 0, []byte("hmac-x"), "ev-hmac-x", at(10*time.Minute), at(time.Minute+time.Second)), store.ErrPrecondition,
		"ReplaceChallengeCode under another resend's claim")
	got, _ := s.GetChallenge(c, a.ID, ch.ID)
	eqTime(t, got.LastSentAt, at(time.Minute), "LastSentAt after a claim")
	eqBytes(t, got.CodeHMAC, []byte("hmac-1"), "CodeHMAC after a claim (the old code stays valid)")
	must(t, s.ReplaceChallengeCode(c, a.ID, ch.ID, 0, []byte("hmac-2"), "ev-hmac-2", at(10*time.Minute), at(time.Minute)), "ReplaceChallengeCode")
	got, _ = s.GetChallenge(c, a.ID, ch.ID)
	eq(t, got.Resends, 1, "Resends after one resend")
	eqBytes(t, got.CodeHMAC, []byte("hmac-2"), "CodeHMAC after resend")
	eq(t, got.EventID, "ev-hmac-2", "EventID after resend")
	eqTime(t, got.ExpiresAt, at(10*time.Minute), "ExpiresAt after resend")
	eqTime(t, got.LastSentAt, at(time.Minute), "LastSentAt after resend")

	// A stale prevResends (a concurrent resend won) does not apply.
	err := s.ReplaceChallengeCode(c, a.ID, ch.ID, 0, []byte("hmac-x"), "ev-hmac-x", at(10*time.Minute), at(time.Minute))
	wantErr(t, err, store.ErrPrecondition, "ReplaceChallengeCode with a stale resend count")
	err = s.ReplaceChallengeCode(c, b.ID, ch.ID, 1, []byte("hmac-x"), "ev-hmac-x", at(10*time.Minute), at(time.Minute))
	wantErr(t, err, store.ErrNotFound, "ReplaceChallengeCode through another org")
	err = s.ReplaceChallengeCode(c, a.ID, "nope", 0, []byte("hmac-x"), "ev-hmac-x", at(10*time.Minute), at(time.Minute))
	wantErr(t, err, store.ErrNotFound, "ReplaceChallengeCode(unknown)")
	got, _ = s.GetChallenge(c, a.ID, ch.ID)
	eqBytes(t, got.CodeHMAC, []byte("hmac-2"), "CodeHMAC after refused resends")

	// A claim given back (the send failed) restores the turn.
	must(t, s.ClaimResend(c, a.ID, ch.ID, 1, at(time.Minute), at(90*time.Second)), "ClaimResend (second turn)")
	must(t, s.ClaimResend(c, a.ID, ch.ID, 1, at(90*time.Second), at(time.Minute)), "ClaimResend (given back)")
	got, _ = s.GetChallenge(c, a.ID, ch.ID)
	eqTime(t, got.LastSentAt, at(time.Minute), "LastSentAt after a claim given back")

	// The old code no longer consumes it; the new one does, once.
	wantErr(t, s.ConsumeChallenge(c, a.ID, ch.ID, []byte("hmac-1"), at(2*time.Minute)), store.ErrPrecondition, "ConsumeChallenge with the replaced code")
	must(t, s.ConsumeChallenge(c, a.ID, ch.ID, []byte("hmac-2"), at(2*time.Minute)), "ConsumeChallenge")
	err = s.ReplaceChallengeCode(c, a.ID, ch.ID, 1, []byte("hmac-3"), "ev-hmac-3", at(10*time.Minute), at(time.Minute))
	wantErr(t, err, store.ErrPrecondition, "ReplaceChallengeCode of a consumed challenge")
	wantErr(t, s.ClaimResend(c, a.ID, ch.ID, 1, at(time.Minute), at(3*time.Minute)), store.ErrPrecondition, "ClaimResend of a consumed challenge")
}

func testChallengeConsume(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	ch := newChallenge(a.ID, "c-consume")
	must(t, s.CreateChallenge(c, ch, store.Lockout{}), "CreateChallenge")

	wantErr(t, s.ConsumeChallenge(c, b.ID, ch.ID, ch.CodeHMAC, at(time.Minute)), store.ErrNotFound, "ConsumeChallenge through another org")
	wantErr(t, s.ConsumeChallenge(c, a.ID, ch.ID, []byte("wrong"), at(time.Minute)), store.ErrPrecondition, "ConsumeChallenge with another code")
	wantErr(t, s.ConsumeChallenge(c, a.ID, "nope", ch.CodeHMAC, at(time.Minute)), store.ErrNotFound, "ConsumeChallenge(unknown)")
	got, _ := s.GetChallenge(c, a.ID, ch.ID)
	if !got.ConsumedAt.IsZero() {
		t.Fatalf("challenge consumed by a refused call: %v", got.ConsumedAt)
	}

	must(t, s.ConsumeChallenge(c, a.ID, ch.ID, ch.CodeHMAC, at(time.Minute)), "ConsumeChallenge")
	wantErr(t, s.ConsumeChallenge(c, a.ID, ch.ID, ch.CodeHMAC, at(2*time.Minute)), store.ErrPrecondition, "ConsumeChallenge twice")
	got, _ = s.GetChallenge(c, a.ID, ch.ID)
	eqTime(t, got.ConsumedAt, at(time.Minute), "ConsumedAt")
}

func testFailedAttempts(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	n, last, err := s.FailedAttempts(c, a.ID, "alice")
	must(t, err, "FailedAttempts before any failure")
	if n != 0 || !last.IsZero() {
		t.Fatalf("FailedAttempts before any failure = %d, %v; want 0 and the zero time", n, last)
	}
	for i := 1; i <= 3; i++ {
		n, err := s.ReserveFailedAttempt(c, a.ID, "alice", noMax, at(time.Duration(i)*time.Second), time.Time{})
		must(t, err, "ReserveFailedAttempt")
		eq(t, n, i, "ReserveFailedAttempt result")
	}
	n, last, err = s.FailedAttempts(c, a.ID, "alice")
	must(t, err, "FailedAttempts")
	eq(t, n, 3, "FailedAttempts")
	eqTime(t, last, at(3*time.Second), "last failure")

	// CreateChallenge's lockout: 3 failures, the last at 3 s.
	hit := store.CounterHit{Key: "lockout-hit", WindowStart: at(0), ExpiresAt: at(time.Hour), Max: 100}
	locked := newChallenge(a.ID, "44444444-4444-4444-8444-444444444441")
	err = s.CreateChallenge(c, locked, store.Lockout{Max: 3, Since: at(2 * time.Second)}, hit)
	lo, ok := errors.AsType[*store.LockedOutError](err)
	if !ok || lo.Attempts != 3 || !lo.LastFailure.Equal(at(3*time.Second)) {
		t.Fatalf("CreateChallenge for a locked-out user = %v, want *store.LockedOutError{3, 3 s}", err)
	}
	_, err = s.GetChallenge(c, a.ID, locked.ID)
	wantErr(t, err, store.ErrNotFound, "GetChallenge of the locked-out user's challenge")
	for i, lock := range []store.Lockout{
		{Max: 4, Since: at(2 * time.Second)}, // under the limit
		{Max: 3, Since: at(3 * time.Second)}, // the last failure is not after Since
		{},                                   // no check
	} {
		ch := newChallenge(a.ID, fmt.Sprintf("44444444-4444-4444-8444-44444444445%d", i))
		must(t, s.CreateChallenge(c, ch, lock, hit), "CreateChallenge with lockout %+v", lock)
	}
	bob := newChallenge(a.ID, "44444444-4444-4444-8444-444444444461")
	bob.UserID = "bob"
	must(t, s.CreateChallenge(c, bob, store.Lockout{Max: 3, Since: at(2 * time.Second)}), "CreateChallenge for another user")
	n64, err := s.HitCounter(c, hit.Key, hit.WindowStart, hit.ExpiresAt)
	must(t, err, "HitCounter")
	eq(t, n64, int64(4), "hits: the locked-out challenge made none")

	// Other users and other orgs count apart.
	n, _ = mustInc(t, s, a.ID, "bob")
	eq(t, n, 1, "bob's first failure")
	n, _ = mustInc(t, s, b.ID, "alice")
	eq(t, n, 1, "alice's first failure in org B")
	n, _, _ = s.FailedAttempts(c, b.ID, "alice")
	eq(t, n, 1, "FailedAttempts of org B's alice")

	must(t, s.ResetFailedAttempts(c, a.ID, "alice"), "ResetFailedAttempts")
	must(t, s.ResetFailedAttempts(c, a.ID, "alice"), "ResetFailedAttempts twice")
	n, last, _ = s.FailedAttempts(c, a.ID, "alice")
	if n != 0 || !last.IsZero() {
		t.Fatalf("FailedAttempts after reset = %d, %v", n, last)
	}
	n, _, _ = s.FailedAttempts(c, b.ID, "alice")
	eq(t, n, 1, "org B's count after org A's reset")
	n, _ = mustInc(t, s, a.ID, "alice")
	eq(t, n, 1, "first failure after reset")
}

// testReserveFailedAttempt: a reservation counts an attempt only while
// fewer than max are counted in the window, and a window that ended
// starts over.
func testReserveFailedAttempt(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	forget := at(-time.Hour) // nothing is old enough to forget
	for i := 1; i <= 3; i++ {
		n, err := s.ReserveFailedAttempt(c, a.ID, "alice", 3, at(time.Duration(i)*time.Second), forget)
		must(t, err, "ReserveFailedAttempt %d", i)
		eq(t, n, i, "ReserveFailedAttempt result")
	}
	_, err := s.ReserveFailedAttempt(c, a.ID, "alice", 3, at(4*time.Second), forget)
	wantErr(t, err, store.ErrPrecondition, "ReserveFailedAttempt past max")
	n, last, err := s.FailedAttempts(c, a.ID, "alice")
	must(t, err, "FailedAttempts")
	eq(t, n, 3, "count after a refused reservation")
	eqTime(t, last, at(3*time.Second), "last failure after a refused reservation")
	// A higher max (the org raised maxFailedAttempts) admits more.
	n, err = s.ReserveFailedAttempt(c, a.ID, "alice", 5, at(5*time.Second), forget)
	must(t, err, "ReserveFailedAttempt under a higher max")
	eq(t, n, 4, "count under a higher max")
	// Increments from elsewhere count against max too.
	mustInc(t, s, a.ID, "alice")
	_, err = s.ReserveFailedAttempt(c, a.ID, "alice", 5, at(6*time.Second), forget)
	wantErr(t, err, store.ErrPrecondition, "ReserveFailedAttempt after increments reached max")
	_, err = s.ReserveFailedAttempt(c, a.ID, "carol", 0, at(0), forget)
	wantErr(t, err, store.ErrPrecondition, "ReserveFailedAttempt with max 0")
	n, _, _ = s.FailedAttempts(c, a.ID, "carol")
	eq(t, n, 0, "count after a max-0 reservation")

	// Other users and orgs count apart.
	n, err = s.ReserveFailedAttempt(c, b.ID, "alice", 3, at(0), forget)
	must(t, err, "ReserveFailedAttempt in org B")
	eq(t, n, 1, "org B's alice")

	// Once the last attempt is at or before forgetAt the count starts over.
	n, err = s.ReserveFailedAttempt(c, a.ID, "alice", 5, at(time.Hour), at(6*time.Second))
	must(t, err, "ReserveFailedAttempt after the window")
	eq(t, n, 1, "count after the window")
	n, last, _ = s.FailedAttempts(c, a.ID, "alice")
	eq(t, n, 1, "stored count after the window")
	eqTime(t, last, at(time.Hour), "last failure after the window")

	must(t, s.ResetFailedAttempts(c, a.ID, "alice"), "ResetFailedAttempts")
	n, err = s.ReserveFailedAttempt(c, a.ID, "alice", 1, at(time.Hour), forget)
	must(t, err, "ReserveFailedAttempt after reset")
	eq(t, n, 1, "count after reset")
}

// noMax is a ReserveFailedAttempt max no test reaches: the reservation
// then only counts.
const noMax = 1 << 30

func mustInc(t *testing.T, s store.Store, orgID int64, user string) (int, error) {
	t.Helper()
	n, err := s.ReserveFailedAttempt(ctx(t), orgID, user, noMax, at(0), time.Time{})
	must(t, err, "ReserveFailedAttempt")
	return n, err
}

func testBackupCodes(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	codes, err := s.ListBackupCodes(c, a.ID, "alice")
	must(t, err, "ListBackupCodes")
	eq(t, len(codes), 0, "backup codes before any")

	must(t, s.ReplaceBackupCodes(c, a.ID, "alice", [][]byte{[]byte("h1"), []byte("h2"), []byte("h3")}), "ReplaceBackupCodes")
	must(t, s.ReplaceBackupCodes(c, b.ID, "alice", [][]byte{[]byte("b1")}), "ReplaceBackupCodes(org B)")
	codes, err = s.ListBackupCodes(c, a.ID, "alice")
	must(t, err, "ListBackupCodes")
	if len(codes) != 3 {
		t.Fatalf("ListBackupCodes = %+v, want 3", codes)
	}
	for i, cd := range codes {
		if cd.ID == 0 || cd.OrgID != a.ID || cd.UserID != "alice" || !cd.UsedAt.IsZero() {
			t.Fatalf("backup code %d = %+v", i, cd)
		}
		eqBytes(t, cd.Hash, []byte{'h', byte('1' + i)}, "backup code hash")
	}

	must(t, s.UseBackupCode(c, a.ID, "alice", codes[1].ID, at(time.Minute)), "UseBackupCode")
	wantErr(t, s.UseBackupCode(c, a.ID, "alice", codes[1].ID, at(2*time.Minute)), store.ErrPrecondition, "UseBackupCode twice")
	wantErr(t, s.UseBackupCode(c, b.ID, "alice", codes[0].ID, at(time.Minute)), store.ErrNotFound, "UseBackupCode through another org")
	wantErr(t, s.UseBackupCode(c, a.ID, "bob", codes[0].ID, at(time.Minute)), store.ErrNotFound, "UseBackupCode of another user")
	codes, _ = s.ListBackupCodes(c, a.ID, "alice")
	eqTime(t, codes[1].UsedAt, at(time.Minute), "UsedAt")
	if !codes[0].UsedAt.IsZero() {
		t.Fatalf("code 0 used by a refused call")
	}

	// Replacing removes every earlier code, used or not.
	old := codes
	must(t, s.ReplaceBackupCodes(c, a.ID, "alice", [][]byte{[]byte("n1")}), "ReplaceBackupCodes(again)")
	codes, _ = s.ListBackupCodes(c, a.ID, "alice")
	if len(codes) != 1 || string(codes[0].Hash) != "n1" {
		t.Fatalf("ListBackupCodes after replace = %+v", codes)
	}
	wantErr(t, s.UseBackupCode(c, a.ID, "alice", old[0].ID, at(time.Minute)), store.ErrNotFound, "UseBackupCode of a replaced code")
	must(t, s.ReplaceBackupCodes(c, a.ID, "alice", nil), "ReplaceBackupCodes(none)")
	codes, _ = s.ListBackupCodes(c, a.ID, "alice")
	eq(t, len(codes), 0, "backup codes after replacing with none")
	codes, _ = s.ListBackupCodes(c, b.ID, "alice")
	eq(t, len(codes), 1, "org B's codes after org A's replaces")
}

func testHitCounter(t *testing.T, s store.Store) {
	c := ctx(t)
	w1, w2 := at(0), at(time.Minute)
	for i := int64(1); i <= 3; i++ {
		n, err := s.HitCounter(c, "number:+94771234567", w1, w1.Add(2*time.Minute))
		must(t, err, "HitCounter")
		eq(t, n, i, "HitCounter result")
	}
	n, err := s.HitCounter(c, "number:+94771234567", w2, w2.Add(2*time.Minute))
	must(t, err, "HitCounter(next window)")
	eq(t, n, int64(1), "first hit of the next window")
	n, err = s.HitCounter(c, "ip:192.0.2.1", w1, w1.Add(2*time.Minute))
	must(t, err, "HitCounter(other key)")
	eq(t, n, int64(1), "first hit of another key")
}

func testSMSProviders(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	_, err := s.GetSMSProvider(c, a.ID, store.ProviderPrimary)
	wantErr(t, err, store.ErrNotFound, "GetSMSProvider before any put")

	cfg := json.RawMessage(`{"accountSid":"AC123","authToken":"tok-secret","sender":"+15005550006"}`)
	must(t, s.PutSMSProvider(c, store.SMSProvider{OrgID: a.ID, Slot: store.ProviderPrimary, Type: "twilio", Config: cfg, UpdatedAt: at(0)}), "PutSMSProvider")
	must(t, s.PutSMSProvider(c, store.SMSProvider{OrgID: a.ID, Slot: store.ProviderFallback, Type: "console", Config: json.RawMessage(`{}`)}), "PutSMSProvider(fallback)")
	got, err := s.GetSMSProvider(c, a.ID, store.ProviderPrimary)
	must(t, err, "GetSMSProvider")
	if got.OrgID != a.ID || got.Slot != store.ProviderPrimary || got.Type != "twilio" || !got.UpdatedAt.Equal(at(0)) {
		t.Fatalf("GetSMSProvider = %+v", got)
	}
	eqBytes(t, got.Config, cfg, "Config")
	fb, err := s.GetSMSProvider(c, a.ID, store.ProviderFallback)
	must(t, err, "GetSMSProvider(fallback)")
	if fb.Type != "console" || string(fb.Config) != `{}` || fb.UpdatedAt.IsZero() {
		t.Fatalf("GetSMSProvider(fallback) = %+v", fb)
	}

	cfg2 := json.RawMessage(`{"apiKey":"k","apiSecret":"s2","sender":"otphub"}`)
	must(t, s.PutSMSProvider(c, store.SMSProvider{OrgID: a.ID, Slot: store.ProviderPrimary, Type: "vonage", Config: cfg2, UpdatedAt: at(time.Hour)}), "PutSMSProvider(replace)")
	got, _ = s.GetSMSProvider(c, a.ID, store.ProviderPrimary)
	if got.Type != "vonage" || string(got.Config) != string(cfg2) || !got.UpdatedAt.Equal(at(time.Hour)) {
		t.Fatalf("GetSMSProvider after replace = %+v", got)
	}

	_, err = s.GetSMSProvider(c, b.ID, store.ProviderPrimary)
	wantErr(t, err, store.ErrNotFound, "GetSMSProvider of another org")
	wantErr(t, s.DeleteSMSProvider(c, b.ID, store.ProviderPrimary), store.ErrNotFound, "DeleteSMSProvider through another org")
	must(t, s.DeleteSMSProvider(c, a.ID, store.ProviderPrimary), "DeleteSMSProvider")
	wantErr(t, s.DeleteSMSProvider(c, a.ID, store.ProviderPrimary), store.ErrNotFound, "DeleteSMSProvider twice")
	_, err = s.GetSMSProvider(c, a.ID, store.ProviderPrimary)
	wantErr(t, err, store.ErrNotFound, "GetSMSProvider after delete")
	if _, err := s.GetSMSProvider(c, a.ID, store.ProviderFallback); err != nil {
		t.Fatalf("deleting the primary removed the fallback: %v", err)
	}
}

// testHousekeeping: expired rate counters and challenges expired for
// longer than the stats window (and a day) are purged as a side effect of later writes. The suite allows a few calls
// made a long time later (by the records' clock); sqlstore purges on the
// first call after 10 minutes or 512 calls.
func testHousekeeping(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	old := newChallenge(a.ID, "old")
	must(t, s.CreateChallenge(c, old, store.Lockout{}), "CreateChallenge(old)")
	_, err := s.HitCounter(c, "old-key", at(0), at(time.Minute))
	must(t, err, "HitCounter(old)")

	// Within the stats window (7 days) nothing is purged: OTPStats reads it.
	recent := newChallenge(a.ID, "recent")
	recent.CreatedAt, recent.LastSentAt, recent.ExpiresAt = at(-time.Hour), at(-time.Hour), at(-time.Hour+5*time.Minute)
	must(t, s.CreateChallenge(c, recent, store.Lockout{}), "CreateChallenge(recent)")
	for i := range 3 {
		ch := newChallenge(a.ID, fmt.Sprintf("week-%d", i))
		week := at(7 * 24 * time.Hour)
		ch.CreatedAt, ch.LastSentAt, ch.ExpiresAt = week, week, week.Add(5*time.Minute)
		must(t, s.CreateChallenge(c, ch, store.Lockout{}), "CreateChallenge(a week later)")
	}
	if _, err := s.GetChallenge(c, a.ID, "old"); err != nil {
		t.Fatalf("a challenge expired 7 days ago was purged (the stats window reads it): %v", err)
	}

	later := at(9 * 24 * time.Hour)
	const calls = 3
	for i := 0; i < calls; i++ {
		ch := newChallenge(a.ID, fmt.Sprintf("new-%d", i))
		ch.CreatedAt, ch.LastSentAt, ch.ExpiresAt = later, later, later.Add(5*time.Minute)
		must(t, s.CreateChallenge(c, ch, store.Lockout{}), "CreateChallenge")
		_, err := s.HitCounter(c, "new-key", later, later.Add(time.Minute))
		must(t, err, "HitCounter")
	}
	_, err = s.GetChallenge(c, a.ID, "old")
	wantErr(t, err, store.ErrNotFound, "a challenge expired for days, after housekeeping")
	if _, err := s.GetChallenge(c, a.ID, "new-0"); err != nil {
		t.Fatalf("a live challenge was purged: %v", err)
	}
	n, err := s.HitCounter(c, "old-key", at(0), at(time.Minute))
	must(t, err, "HitCounter(old again)")
	eq(t, n, int64(1), "an expired counter's value after housekeeping (purged, so it starts over)")
	n, _ = s.HitCounter(c, "new-key", later, later.Add(time.Minute))
	eq(t, n, int64(calls+1), "a live counter after housekeeping")
}

// testOTPStats: per hour and per country sums of one org's challenges of a
// window, with resends, verifications and the handset receipts of each
// challenge's current SMS; other orgs, other hours and deleted
// (withdrawn) challenges are left out; the window is bounded.
func testOTPStats(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	since := base.Truncate(time.Hour)
	n := 0
	mk := func(org store.Org, cc int, created time.Duration, resends int, verified bool) store.Challenge {
		n++
		ch := newChallenge(org.ID, fmt.Sprintf("ch-%d", n))
		ch.CountryCode, ch.Resends, ch.EventID = cc, resends, fmt.Sprintf("ev-%d", n)
		ch.CreatedAt = since.Add(created)
		ch.LastSentAt, ch.ExpiresAt = ch.CreatedAt, ch.CreatedAt.Add(5*time.Minute)
		must(t, s.CreateChallenge(c, ch, store.Lockout{}), "CreateChallenge")
		if verified {
			must(t, s.ConsumeChallenge(c, org.ID, ch.ID, ch.CodeHMAC, ch.CreatedAt.Add(time.Minute)), "ConsumeChallenge")
		}
		return ch
	}
	// Hour 0: three to +94 (one resent twice, two verified), one to +1.
	lk1 := mk(a, 94, 10*time.Minute, 2, true)
	lk2 := mk(a, 94, 20*time.Minute, 0, true)
	mk(a, 94, 30*time.Minute, 0, false)
	us := mk(a, 1, 59*time.Minute, 0, false)
	// Hour 2: one to an unknown country, verified.
	mk(a, 0, 2*time.Hour+time.Second, 1, true)
	// Left out: before and after the window, another org, a deleted one.
	mk(a, 94, -time.Second, 0, true)
	mk(a, 94, 3*time.Hour, 0, true)
	mk(b, 94, time.Minute, 5, true)
	w := mk(a, 94, 40*time.Minute, 0, false)
	wantErr(t, s.DeleteChallenge(c, b.ID, w.ID), store.ErrNotFound, "DeleteChallenge(another org's)")
	must(t, s.DeleteChallenge(c, a.ID, w.ID), "DeleteChallenge")
	_, err := s.GetChallenge(c, a.ID, w.ID)
	wantErr(t, err, store.ErrNotFound, "GetChallenge(deleted)")
	wantErr(t, s.DeleteChallenge(c, a.ID, w.ID), store.ErrNotFound, "DeleteChallenge twice")

	// Receipts: lk1's SMS delivered (by the fallback after the primary
	// failed), lk2's only sent, us's accepted with no receipt; a record of
	// another org's event of the same jti counts for nothing.
	deliver := func(org store.Org, ev, slot, state string) {
		key := store.ReceiptKey{OrgID: org.ID, EventID: ev, DestinationType: "twilio", DestinationID: slot}
		rec := accepted(key, "SM"+ev+slot, since)
		rec.ReceiptDueAt = time.Time{}
		must(t, s.RecordSMSAccepted(c, rec), "RecordSMSAccepted")
		if state != "" {
			apply(t, s, receipt(key, rec.ProviderMessageID, state, since.Add(time.Minute)))
		}
	}
	deliver(a, lk1.EventID, store.ProviderPrimary, store.HandsetFailed)
	deliver(a, lk1.EventID, store.ProviderFallback, store.HandsetDelivered)
	deliver(a, lk2.EventID, store.ProviderPrimary, store.HandsetSent)
	deliver(a, us.EventID, store.ProviderPrimary, "")
	deliver(b, us.EventID, store.ProviderPrimary, store.HandsetDelivered)

	st, err := s.OTPStats(c, a.ID, since, since.Add(3*time.Hour))
	must(t, err, "OTPStats")
	want := []store.OTPHourStats{{Start: since, Sent: 6, Verified: 2}, {Start: since.Add(time.Hour)}, {Start: since.Add(2 * time.Hour), Sent: 2, Verified: 1}}
	if len(st.Hours) != len(want) {
		t.Fatalf("OTPStats hours = %+v, want %+v", st.Hours, want)
	}
	for i, h := range st.Hours {
		if !h.Start.Equal(want[i].Start) || h.Sent != want[i].Sent || h.Verified != want[i].Verified {
			t.Fatalf("OTPStats hour %d = %+v, want %+v", i, h, want[i])
		}
	}
	wantC := []store.OTPCountryStats{
		{CountryCode: 94, Sent: 5, Verified: 2, Delivered: 1, Receipts: 2},
		{CountryCode: 0, Sent: 2, Verified: 1},
		{CountryCode: 1, Sent: 1},
	}
	if len(st.Countries) != len(wantC) {
		t.Fatalf("OTPStats countries = %+v, want %+v", st.Countries, wantC)
	}
	for i := range wantC {
		eq(t, st.Countries[i], wantC[i], fmt.Sprintf("OTPStats country %d", i))
	}

	// A partial last hour is a bucket of its own; an empty window has
	// every hour and no country.
	st, err = s.OTPStats(c, a.ID, since.Add(time.Hour), since.Add(2*time.Hour+30*time.Minute))
	must(t, err, "OTPStats(partial)")
	eq(t, len(st.Hours), 2, "hours of a 90-minute window")
	eq(t, st.Hours[1].Sent, int64(2), "sent in the partial hour")
	st, err = s.OTPStats(c, b.ID, since.Add(-24*time.Hour), since.Add(-time.Hour))
	must(t, err, "OTPStats(empty)")
	eq(t, len(st.Hours), 23, "hours of an empty window")
	eq(t, len(st.Countries), 0, "countries of an empty window")

	if _, err := s.OTPStats(c, a.ID, since, since.Add(store.MaxStatsWindow+time.Hour)); err == nil {
		t.Fatal("OTPStats over more than MaxStatsWindow: no error")
	}
	if _, err := s.OTPStats(c, a.ID, since, since); err == nil {
		t.Fatal("OTPStats of an empty window: no error")
	}
}
