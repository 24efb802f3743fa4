package storetest

import (
	"crypto/sha256"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/otphub/otphub/store"
)

var loginCases = []testCase{
	{"Applications", testApplications},
	{"LoginFlows", testLoginFlows},
	{"AuthorizationCodeRedeemedOnce", testAuthorizationCodeRedeemedOnce},
}

func testApplications(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	app := store.Application{ID: "app-1", OrgID: a.ID, Name: "Shop", ClientID: "client-1", ClientSecret: []byte("s3cret"),
		RedirectURIs: []string{"https://shop.example/cb", "http://127.0.0.1:9000/cb"}, FirstFactors: []string{"pwd"},
		BackupCodes: true, CreatedAt: at(0)}
	must(t, s.CreateApplication(c, app), "CreateApplication")
	wantErr(t, s.CreateApplication(c, store.Application{ID: "app-2", OrgID: b.ID, Name: "x", ClientID: "client-1", ClientSecret: []byte("x")}),
		store.ErrConflict, "CreateApplication with a taken client id")
	got, err := s.GetApplication(c, a.ID, "app-1")
	must(t, err, "GetApplication")
	if got.Name != "Shop" || got.ClientID != "client-1" || string(got.ClientSecret) != "s3cret" ||
		!slices.Equal(got.RedirectURIs, app.RedirectURIs) || !slices.Equal(got.FirstFactors, []string{"pwd"}) ||
		!got.BackupCodes || !got.CreatedAt.Equal(at(0)) || !got.UpdatedAt.Equal(at(0)) {
		t.Fatalf("GetApplication = %+v, want %+v", got, app)
	}
	_, err = s.GetApplication(c, b.ID, "app-1")
	wantErr(t, err, store.ErrNotFound, "GetApplication of another org")
	byClient, err := s.GetApplicationByClientID(c, "client-1")
	must(t, err, "GetApplicationByClientID")
	eq(t, byClient.ID, "app-1", "GetApplicationByClientID")
	_, err = s.GetApplicationByClientID(c, "nope")
	wantErr(t, err, store.ErrNotFound, "GetApplicationByClientID(unknown)")

	must(t, s.CreateApplication(c, store.Application{ID: "app-3", OrgID: a.ID, Name: "Blog", ClientID: "client-3", ClientSecret: []byte("x"), CreatedAt: at(time.Second)}), "CreateApplication(second)")
	list, err := s.ListApplications(c, a.ID)
	must(t, err, "ListApplications")
	if len(list) != 2 || list[0].ID != "app-1" || list[1].ID != "app-3" {
		t.Fatalf("ListApplications = %+v, want app-1, app-3", list)
	}
	other, err := s.ListApplications(c, b.ID)
	must(t, err, "ListApplications(other org)")
	eq(t, len(other), 0, "applications of another org")

	upd := got
	upd.Name, upd.RedirectURIs, upd.FirstFactors, upd.BackupCodes, upd.UpdatedAt = "Shop 2", []string{"https://shop.example/cb2"}, []string{"pwd", "fed"}, false, at(time.Minute)
	must(t, s.UpdateApplication(c, upd), "UpdateApplication")
	got, _ = s.GetApplication(c, a.ID, "app-1")
	if got.Name != "Shop 2" || !slices.Equal(got.RedirectURIs, upd.RedirectURIs) || !slices.Equal(got.FirstFactors, upd.FirstFactors) ||
		got.BackupCodes || !got.UpdatedAt.Equal(at(time.Minute)) || string(got.ClientSecret) != "s3cret" || got.ClientID != "client-1" {
		t.Fatalf("after UpdateApplication = %+v", got)
	}
	upd.OrgID = b.ID
	wantErr(t, s.UpdateApplication(c, upd), store.ErrNotFound, "UpdateApplication through another org")
	must(t, s.SetApplicationSecret(c, a.ID, "app-1", []byte("n3w"), at(2*time.Minute)), "SetApplicationSecret")
	got, _ = s.GetApplication(c, a.ID, "app-1")
	if string(got.ClientSecret) != "n3w" || !got.UpdatedAt.Equal(at(2*time.Minute)) || got.Name != "Shop 2" {
		t.Fatalf("after SetApplicationSecret = %+v", got)
	}
	wantErr(t, s.SetApplicationSecret(c, b.ID, "app-1", []byte("x"), at(0)), store.ErrNotFound, "SetApplicationSecret through another org")

	must(t, s.CreateLoginFlow(c, store.LoginFlow{ID: "f1", OrgID: a.ID, ApplicationID: "app-1", ClientID: "client-1", ExpiresAt: at(time.Hour)}), "CreateLoginFlow")
	wantErr(t, s.DeleteApplication(c, b.ID, "app-1"), store.ErrNotFound, "DeleteApplication through another org")
	must(t, s.DeleteApplication(c, a.ID, "app-1"), "DeleteApplication")
	_, err = s.GetApplication(c, a.ID, "app-1")
	wantErr(t, err, store.ErrNotFound, "GetApplication after delete")
	_, err = s.GetLoginFlow(c, "f1")
	wantErr(t, err, store.ErrNotFound, "a deleted application's login flow")
	wantErr(t, s.DeleteApplication(c, a.ID, "app-1"), store.ErrNotFound, "DeleteApplication twice")
}

func testLoginFlows(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	browser := sha256.Sum256([]byte("cookie"))
	f := store.LoginFlow{ID: "f1", OrgID: a.ID, ApplicationID: "app-1", ClientID: "client-1", BrowserHash: browser[:],
		RedirectURI: "https://shop.example/cb", State: "st", Nonce: "n", CodeChallenge: "cc", UserID: "alice",
		Mobile: "+94771234567", AMR: []string{"pwd"}, Locale: "fr", ExpiresAt: at(15 * time.Minute), CreatedAt: at(0)}
	must(t, s.CreateLoginFlow(c, f), "CreateLoginFlow")
	wantErr(t, s.CreateLoginFlow(c, f), store.ErrConflict, "CreateLoginFlow(duplicate id)")
	got, err := s.GetLoginFlow(c, "f1")
	must(t, err, "GetLoginFlow")
	if got.OrgID != a.ID || got.ApplicationID != "app-1" || got.ClientID != "client-1" || string(got.BrowserHash) != string(browser[:]) ||
		got.RedirectURI != f.RedirectURI || got.State != "st" || got.Nonce != "n" || got.CodeChallenge != "cc" ||
		got.UserID != "alice" || got.Mobile != f.Mobile || !slices.Equal(got.AMR, []string{"pwd"}) || got.Locale != "fr" ||
		got.ChallengeID != "" || !got.ExpiresAt.Equal(f.ExpiresAt) || !got.CreatedAt.Equal(at(0)) ||
		!got.CompletedAt.IsZero() || got.Method != "" || got.CodeHash != nil || !got.CodeExpiresAt.IsZero() || !got.CodeUsedAt.IsZero() {
		t.Fatalf("GetLoginFlow = %+v, want %+v", got, f)
	}
	_, err = s.GetLoginFlow(c, "nope")
	wantErr(t, err, store.ErrNotFound, "GetLoginFlow(unknown)")

	must(t, s.SetLoginFlowChallenge(c, "f1", "ch-1"), "SetLoginFlowChallenge")
	wantErr(t, s.SetLoginFlowChallenge(c, "f1", "ch-2"), store.ErrPrecondition, "SetLoginFlowChallenge twice")
	wantErr(t, s.SetLoginFlowChallenge(c, "nope", "ch-2"), store.ErrNotFound, "SetLoginFlowChallenge(unknown)")
	got, _ = s.GetLoginFlow(c, "f1")
	eq(t, got.ChallengeID, "ch-1", "ChallengeID")

	code := sha256.Sum256([]byte("code"))
	must(t, s.CompleteLoginFlow(c, "f1", store.LoginBySMS, at(time.Minute), code[:], at(2*time.Minute)), "CompleteLoginFlow")
	wantErr(t, s.CompleteLoginFlow(c, "f1", store.LoginByBackupCode, at(time.Minute), code[:], at(2*time.Minute)), store.ErrPrecondition, "CompleteLoginFlow twice")
	wantErr(t, s.CompleteLoginFlow(c, "nope", store.LoginBySMS, at(time.Minute), []byte("x"), at(2*time.Minute)), store.ErrNotFound, "CompleteLoginFlow(unknown)")
	got, _ = s.GetLoginFlow(c, "f1")
	if !got.CompletedAt.Equal(at(time.Minute)) || got.Method != store.LoginBySMS || string(got.CodeHash) != string(code[:]) || !got.CodeExpiresAt.Equal(at(2*time.Minute)) {
		t.Fatalf("after CompleteLoginFlow = %+v", got)
	}

	// Flows completed without a code (cancelled) do not collide.
	for _, id := range []string{"c1", "c2"} {
		g := f
		g.ID = id
		must(t, s.CreateLoginFlow(c, g), "CreateLoginFlow(%s)", id)
		must(t, s.CompleteLoginFlow(c, id, "cancelled", at(time.Minute), nil, time.Time{}), "CompleteLoginFlow(%s, no code)", id)
	}
	// A second completed flow: codes are told apart by their hash.
	f2 := f
	f2.ID = "f2"
	must(t, s.CreateLoginFlow(c, f2), "CreateLoginFlow(f2)")
	code2 := sha256.Sum256([]byte("code2"))
	must(t, s.CompleteLoginFlow(c, "f2", store.LoginByBackupCode, at(time.Minute), code2[:], at(2*time.Minute)), "CompleteLoginFlow(f2)")

	_, err = s.RedeemAuthorizationCode(c, []byte("unknown"), at(90*time.Second))
	wantErr(t, err, store.ErrNotFound, "RedeemAuthorizationCode(unknown)")
	_, err = s.RedeemAuthorizationCode(c, code2[:], at(2*time.Minute))
	wantErr(t, err, store.ErrPrecondition, "RedeemAuthorizationCode at its expiry")
	red, err := s.RedeemAuthorizationCode(c, code[:], at(90*time.Second))
	must(t, err, "RedeemAuthorizationCode")
	if red.ID != "f1" || red.UserID != "alice" || !red.CodeUsedAt.Equal(at(90*time.Second)) {
		t.Fatalf("RedeemAuthorizationCode = %+v", red)
	}
	_, err = s.RedeemAuthorizationCode(c, code[:], at(91*time.Second))
	wantErr(t, err, store.ErrPrecondition, "RedeemAuthorizationCode twice")
}

func testAuthorizationCodeRedeemedOnce(t *testing.T, s store.Store) {
	c := ctx(t)
	a := mustOrg(t, s, "org-a")
	must(t, s.CreateLoginFlow(c, store.LoginFlow{ID: "f1", OrgID: a.ID, ApplicationID: "app", ClientID: "c", ExpiresAt: at(time.Hour), CreatedAt: at(0)}), "CreateLoginFlow")
	code := sha256.Sum256([]byte("code"))
	must(t, s.CompleteLoginFlow(c, "f1", store.LoginBySMS, at(0), code[:], at(time.Minute)), "CompleteLoginFlow")
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { _, errs[i] = s.RedeemAuthorizationCode(c, code[:], at(time.Second)) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else {
			wantErr(t, err, store.ErrPrecondition, "a losing concurrent redemption")
		}
	}
	eq(t, ok, 1, "concurrent redemptions that succeeded")
}
