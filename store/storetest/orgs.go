package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/otphub/otphub/store"
)

var orgCases = []testCase{
	{"Ping", testPing},
	{"Orgs", testOrgs},
	{"Clients", testClients},
	{"ClientsOrgScoping", testClientsOrgScoping},
	{"SigningKeys", testSigningKeys},
}

func testPing(t *testing.T, s store.Store) {
	must(t, s.Ping(ctx(t)), "Ping")
}

func testOrgs(t *testing.T, s store.Store) {
	c := ctx(t)
	if orgs, err := s.ListOrgs(c); err != nil || len(orgs) != 0 {
		t.Fatalf("ListOrgs on an empty store = %v, %v; want none", orgs, err)
	}
	a := mustOrg(t, s, "acme")
	if a.ID == 0 || a.Name != "acme" || a.CreatedAt.IsZero() {
		t.Fatalf("CreateOrg = %+v; want an ID, the name and a creation time", a)
	}
	b := mustOrg(t, s, "beta")
	if b.ID == a.ID {
		t.Fatalf("two orgs share ID %d", a.ID)
	}
	_, err := s.CreateOrg(c, "acme")
	wantErr(t, err, store.ErrConflict, "CreateOrg(duplicate)")

	got, err := s.GetOrg(c, "acme")
	must(t, err, "GetOrg")
	if got.ID != a.ID || got.Name != a.Name || !got.CreatedAt.Equal(a.CreatedAt) {
		t.Fatalf("GetOrg = %+v, want %+v", got, a)
	}
	got, err = s.GetOrgByID(c, b.ID)
	must(t, err, "GetOrgByID")
	eq(t, got.Name, "beta", "GetOrgByID name")

	_, err = s.GetOrg(c, "nope")
	wantErr(t, err, store.ErrNotFound, "GetOrg(unknown)")
	_, err = s.GetOrgByID(c, b.ID+1000)
	wantErr(t, err, store.ErrNotFound, "GetOrgByID(unknown)")

	orgs, err := s.ListOrgs(c)
	must(t, err, "ListOrgs")
	if len(orgs) != 2 || orgs[0].ID != a.ID || orgs[1].ID != b.ID {
		t.Fatalf("ListOrgs = %+v, want acme then beta", orgs)
	}
}

func testClients(t *testing.T, s store.Store) {
	c := ctx(t)
	o := mustOrg(t, s, "acme")
	n, err := s.CountPlatformAdmins(c)
	must(t, err, "CountPlatformAdmins")
	eq(t, n, 0, "CountPlatformAdmins on an empty store")

	admin := store.Client{ClientID: "admin-1", Name: "platform", SecretHash: []byte("h-admin"), Scopes: []string{"admin"}, PlatformAdmin: true}
	must(t, s.CreateClient(c, admin), "CreateClient(admin)")
	cl := store.Client{ClientID: "cl-1", OrgID: o.ID, Name: "hub client", SecretHash: []byte{0, 1, 2, 255},
		Scopes: []string{"subscribe", "publish"}, CreatedAt: at(time.Second)}
	must(t, s.CreateClient(c, cl), "CreateClient")
	wantErr(t, s.CreateClient(c, cl), store.ErrConflict, "CreateClient(duplicate ID)")
	noScopes := store.Client{ClientID: "cl-2", OrgID: o.ID, Name: "bare", SecretHash: []byte("x"), CreatedAt: at(2 * time.Second)}
	must(t, s.CreateClient(c, noScopes), "CreateClient(no scopes)")

	n, err = s.CountPlatformAdmins(c)
	must(t, err, "CountPlatformAdmins")
	eq(t, n, 1, "CountPlatformAdmins")

	got, err := s.GetClient(c, "cl-1")
	must(t, err, "GetClient")
	if got.ClientID != cl.ClientID || got.OrgID != o.ID || got.Name != cl.Name || got.PlatformAdmin ||
		!slices.Equal(got.Scopes, cl.Scopes) || !got.CreatedAt.Equal(cl.CreatedAt) {
		t.Fatalf("GetClient = %+v, want %+v", got, cl)
	}
	eqBytes(t, got.SecretHash, cl.SecretHash, "SecretHash")
	got, err = s.GetClient(c, "admin-1")
	must(t, err, "GetClient(admin)")
	if !got.PlatformAdmin || got.OrgID != 0 || got.CreatedAt.IsZero() {
		t.Fatalf("GetClient(admin) = %+v; want a platform admin of org 0 with a creation time", got)
	}
	_, err = s.GetClient(c, "nope")
	wantErr(t, err, store.ErrNotFound, "GetClient(unknown)")

	list, err := s.ListClients(c, o.ID)
	must(t, err, "ListClients")
	if len(list) != 2 || list[0].ClientID != "cl-1" || list[1].ClientID != "cl-2" {
		t.Fatalf("ListClients = %+v, want cl-1, cl-2", list)
	}
	if len(list[1].Scopes) != 0 {
		t.Fatalf("scopes of a client created without = %v, want none", list[1].Scopes)
	}
	platform, err := s.ListClients(c, 0)
	must(t, err, "ListClients(0)")
	if len(platform) != 1 || platform[0].ClientID != "admin-1" {
		t.Fatalf("ListClients(0) = %+v, want the platform admin only", platform)
	}

	must(t, s.DeleteClient(c, o.ID, "cl-1"), "DeleteClient")
	_, err = s.GetClient(c, "cl-1")
	wantErr(t, err, store.ErrNotFound, "GetClient after delete")
	wantErr(t, s.DeleteClient(c, o.ID, "cl-1"), store.ErrNotFound, "DeleteClient twice")
}

func testClientsOrgScoping(t *testing.T, s store.Store) {
	c := ctx(t)
	a, b := mustOrg(t, s, "org-a"), mustOrg(t, s, "org-b")
	must(t, s.CreateClient(c, store.Client{ClientID: "a-1", OrgID: a.ID, Name: "a", SecretHash: []byte("h")}), "CreateClient")
	list, err := s.ListClients(c, b.ID)
	must(t, err, "ListClients(b)")
	if len(list) != 0 {
		t.Fatalf("ListClients(org B) returned org A's clients: %+v", list)
	}
	wantErr(t, s.DeleteClient(c, b.ID, "a-1"), store.ErrNotFound, "DeleteClient with another org's ID")
	if _, err := s.GetClient(c, "a-1"); err != nil {
		t.Fatalf("client deleted through another org: %v", err)
	}
}

func testSigningKeys(t *testing.T, s store.Store) {
	c := ctx(t)
	keys, err := s.ListSigningKeys(c)
	must(t, err, "ListSigningKeys")
	eq(t, len(keys), 0, "signing keys in an empty store")

	k1 := store.SigningKey{KID: "k1", Algorithm: "ES256", PrivateKey: []byte("der-1\x00\xff"), CreatedAt: at(0)}
	k2 := store.SigningKey{KID: "k2", Algorithm: "ES256", PrivateKey: []byte("der-2"), CreatedAt: at(time.Hour)}
	must(t, s.InsertSigningKey(c, k1), "InsertSigningKey")
	must(t, s.InsertSigningKey(c, k2), "InsertSigningKey")
	wantErr(t, s.InsertSigningKey(c, k1), store.ErrConflict, "InsertSigningKey(duplicate kid)")

	keys, err = s.ListSigningKeys(c)
	must(t, err, "ListSigningKeys")
	if len(keys) != 2 || keys[0].KID != "k2" || keys[1].KID != "k1" {
		t.Fatalf("ListSigningKeys = %+v, want k2 then k1 (newest first)", keys)
	}
	eqBytes(t, keys[1].PrivateKey, k1.PrivateKey, "PrivateKey")
	eq(t, keys[1].Algorithm, "ES256", "Algorithm")
	if !keys[0].RetiredAt.IsZero() {
		t.Fatalf("a new key is retired: %v", keys[0].RetiredAt)
	}

	must(t, s.RetireSigningKey(c, "k1", at(2*time.Hour)), "RetireSigningKey")
	wantErr(t, s.RetireSigningKey(c, "nope", at(0)), store.ErrNotFound, "RetireSigningKey(unknown)")
	keys, _ = s.ListSigningKeys(c)
	eqTime(t, keys[1].RetiredAt, at(2*time.Hour), "RetiredAt")

	must(t, s.DeleteSigningKey(c, "k1"), "DeleteSigningKey")
	wantErr(t, s.DeleteSigningKey(c, "k1"), store.ErrNotFound, "DeleteSigningKey twice")
	keys, _ = s.ListSigningKeys(c)
	if len(keys) != 1 || keys[0].KID != "k2" {
		t.Fatalf("ListSigningKeys after delete = %+v, want k2", keys)
	}
}
