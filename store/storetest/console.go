package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/otphub/otphub/store"
)

var consoleCases = []testCase{
	{"ConsoleInvitationAccept", testInvitationAccept},
	{"ConsoleInvitationOnce", testInvitationOnce},
	{"ConsoleSessions", testConsoleSessions},
	{"AuditLog", testAuditLog},
	{"ConsolePortalLinks", testPortalLinks},
}

func testInvitationAccept(t *testing.T, s store.Store) {
	c := ctx(t)
	org := mustOrg(t, s, "acme")
	inv, err := s.CreateInvitation(c, store.Invitation{TokenHash: []byte("hash-1"), Email: "ann@example.com", OrgID: org.ID,
		CreatedBy: "setup", ExpiresAt: at(time.Hour), CreatedAt: at(0)})
	must(t, err, "CreateInvitation")
	if inv.ID == 0 {
		t.Fatal("CreateInvitation returned no ID")
	}
	_, err = s.CreateInvitation(c, store.Invitation{TokenHash: []byte("hash-1"), Email: "x@example.com", ExpiresAt: at(time.Hour)})
	wantErr(t, err, store.ErrConflict, "CreateInvitation with a used token hash")
	open, err := s.ListInvitations(c, at(time.Minute))
	must(t, err, "ListInvitations")
	eq(t, len(open), 1, "open invitations")
	eq(t, open[0].Email, "ann@example.com", "invitation email")

	_, err = s.AcceptInvitation(c, []byte("nope"), at(time.Minute), store.ConsoleUser{PasswordHash: "h"})
	wantErr(t, err, store.ErrNotFound, "AcceptInvitation of an unknown token")
	// Past its expiry it cannot be accepted.
	_, err = s.AcceptInvitation(c, []byte("hash-1"), at(2*time.Hour), store.ConsoleUser{PasswordHash: "h"})
	wantErr(t, err, store.ErrPrecondition, "AcceptInvitation after expiry")

	u, err := s.AcceptInvitation(c, []byte("hash-1"), at(time.Minute), store.ConsoleUser{Name: "Ann", PasswordHash: "$argon2id$x", Mobile: "+94771234567", Email: "ignored@example.com"})
	must(t, err, "AcceptInvitation")
	eq(t, u.Email, "ann@example.com", "user email (the invitation's)")
	eq(t, u.OrgID, org.ID, "user org")
	got, err := s.GetConsoleUserByEmail(c, "ann@example.com")
	must(t, err, "GetConsoleUserByEmail")
	eq(t, got.ID, u.ID, "user ID")
	eq(t, got.PasswordHash, "$argon2id$x", "password hash")
	eq(t, got.Mobile, "+94771234567", "mobile")
	got, err = s.GetConsoleUser(c, u.ID)
	must(t, err, "GetConsoleUser")
	eq(t, got.Name, "Ann", "name")
	_, err = s.GetConsoleUser(c, u.ID+100)
	wantErr(t, err, store.ErrNotFound, "GetConsoleUser of an unknown ID")

	inv2, err := s.GetInvitation(c, []byte("hash-1"))
	must(t, err, "GetInvitation")
	eqTime(t, inv2.UsedAt, at(time.Minute), "used at")
	open, err = s.ListInvitations(c, at(time.Minute))
	must(t, err, "ListInvitations")
	eq(t, len(open), 0, "open invitations after accepting")

	// A second invitation to the same email cannot make a second user.
	_, err = s.CreateInvitation(c, store.Invitation{TokenHash: []byte("hash-2"), Email: "ann@example.com", ExpiresAt: at(time.Hour)})
	must(t, err, "CreateInvitation")
	_, err = s.AcceptInvitation(c, []byte("hash-2"), at(time.Minute), store.ConsoleUser{PasswordHash: "h"})
	wantErr(t, err, store.ErrConflict, "AcceptInvitation for an email with a user")
	inv3, err := s.GetInvitation(c, []byte("hash-2"))
	must(t, err, "GetInvitation")
	if !inv3.UsedAt.IsZero() {
		t.Fatal("a refused acceptance consumed the invitation")
	}

	n, err := s.CountConsolePlatformAdmins(c)
	must(t, err, "CountConsolePlatformAdmins")
	eq(t, n, 0, "platform admins")
	_, err = s.CreateInvitation(c, store.Invitation{TokenHash: []byte("hash-3"), CreatedBy: "setup", ExpiresAt: at(time.Hour)})
	must(t, err, "CreateInvitation")
	root, err := s.AcceptInvitation(c, []byte("hash-3"), at(time.Minute), store.ConsoleUser{Email: "root@example.com", PasswordHash: "h"})
	must(t, err, "AcceptInvitation")
	eq(t, root.Email, "root@example.com", "setup user email")
	n, err = s.CountConsolePlatformAdmins(c)
	must(t, err, "CountConsolePlatformAdmins")
	eq(t, n, 1, "platform admins")
	// A setup invitation names no email: the user's is taken, and it is
	// refused once a platform admin exists.
	_, err = s.CreateInvitation(c, store.Invitation{TokenHash: []byte("setup"), CreatedBy: "setup", ExpiresAt: at(time.Hour)})
	must(t, err, "CreateInvitation setup")
	_, err = s.AcceptInvitation(c, []byte("setup"), at(time.Minute), store.ConsoleUser{Email: "late@example.com", PasswordHash: "h"})
	wantErr(t, err, store.ErrPrecondition, "AcceptInvitation of a setup link after the first platform admin")
	users, err := s.ListConsoleUsers(c)
	must(t, err, "ListConsoleUsers")
	eq(t, len(users), 2, "console users")
	eq(t, users[0].Email, "ann@example.com", "first user")
}

// testInvitationOnce: of concurrent acceptances of one invitation exactly one succeeds.
func testInvitationOnce(t *testing.T, s store.Store) {
	c := ctx(t)
	_, err := s.CreateInvitation(c, store.Invitation{TokenHash: []byte("once"), Email: "bo@example.com", ExpiresAt: at(time.Hour)})
	must(t, err, "CreateInvitation")
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, refused := 0, 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.AcceptInvitation(c, []byte("once"), at(time.Minute), store.ConsoleUser{PasswordHash: "h"})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, store.ErrPrecondition), errors.Is(err, store.ErrConflict):
				refused++
			default:
				t.Errorf("AcceptInvitation: %v", err)
			}
		}()
	}
	wg.Wait()
	eq(t, ok, 1, "successful acceptances")
	eq(t, refused, 7, "refused acceptances")
}

func testConsoleSessions(t *testing.T, s store.Store) {
	c := ctx(t)
	_, err := s.CreateInvitation(c, store.Invitation{TokenHash: []byte("t"), Email: "cy@example.com", ExpiresAt: at(time.Hour)})
	must(t, err, "CreateInvitation")
	u, err := s.AcceptInvitation(c, []byte("t"), at(0), store.ConsoleUser{PasswordHash: "h"})
	must(t, err, "AcceptInvitation")
	for i, h := range []string{"s1", "s2"} {
		must(t, s.CreateConsoleSession(c, store.ConsoleSession{IDHash: []byte(h), UserID: u.ID, CreatedAt: at(time.Duration(i) * time.Second),
			LastSeenAt: at(0), ExpiresAt: at(12 * time.Hour), IP: "127.0.0.1"}), "CreateConsoleSession %s", h)
	}
	err = s.CreateConsoleSession(c, store.ConsoleSession{IDHash: []byte("s1"), UserID: u.ID, CreatedAt: at(0), ExpiresAt: at(time.Hour)})
	wantErr(t, err, store.ErrConflict, "CreateConsoleSession with a used ID")
	got, err := s.GetConsoleSession(c, []byte("s1"))
	must(t, err, "GetConsoleSession")
	eq(t, got.UserID, u.ID, "session user")
	eqTime(t, got.ExpiresAt, at(12*time.Hour), "expires at")
	eq(t, got.IP, "127.0.0.1", "session IP")
	if !bytes.Equal(got.IDHash, []byte("s1")) {
		t.Fatalf("session ID hash = %q", got.IDHash)
	}
	must(t, s.TouchConsoleSession(c, []byte("s1"), at(time.Minute)), "TouchConsoleSession")
	got, err = s.GetConsoleSession(c, []byte("s1"))
	must(t, err, "GetConsoleSession")
	eqTime(t, got.LastSeenAt, at(time.Minute), "last seen")
	wantErr(t, s.TouchConsoleSession(c, []byte("nope"), at(0)), store.ErrNotFound, "TouchConsoleSession of an unknown session")

	must(t, s.DeleteConsoleSession(c, []byte("s1")), "DeleteConsoleSession")
	_, err = s.GetConsoleSession(c, []byte("s1"))
	wantErr(t, err, store.ErrNotFound, "GetConsoleSession after delete")
	wantErr(t, s.DeleteConsoleSession(c, []byte("s1")), store.ErrNotFound, "DeleteConsoleSession twice")

	must(t, s.CreateConsoleSession(c, store.ConsoleSession{IDHash: []byte("s3"), UserID: u.ID, CreatedAt: at(0), ExpiresAt: at(time.Hour)}), "CreateConsoleSession")
	n, err := s.DeleteConsoleSessions(c, u.ID)
	must(t, err, "DeleteConsoleSessions")
	eq(t, n, 2, "sessions ended")
	_, err = s.GetConsoleSession(c, []byte("s2"))
	wantErr(t, err, store.ErrNotFound, "GetConsoleSession after sign out everywhere")

	// A new password ends every session but the one that set it.
	for _, h := range []string{"a", "b", "c"} {
		must(t, s.CreateConsoleSession(c, store.ConsoleSession{IDHash: []byte(h), UserID: u.ID, CreatedAt: at(0), ExpiresAt: at(time.Hour)}), "CreateConsoleSession")
	}
	must(t, s.SetConsolePassword(c, u.ID, "new-hash", []byte("b")), "SetConsolePassword")
	got, err = s.GetConsoleSession(c, []byte("b"))
	must(t, err, "GetConsoleSession of the kept session")
	for _, h := range []string{"a", "c"} {
		_, err = s.GetConsoleSession(c, []byte(h))
		wantErr(t, err, store.ErrNotFound, "session %s after a password change", h)
	}
	nu, err := s.GetConsoleUser(c, u.ID)
	must(t, err, "GetConsoleUser")
	eq(t, nu.PasswordHash, "new-hash", "password hash")
	wantErr(t, s.SetConsolePassword(c, u.ID+99, "h", nil), store.ErrNotFound, "SetConsolePassword of an unknown user")

	must(t, s.DeleteConsoleUser(c, u.ID), "DeleteConsoleUser")
	_, err = s.GetConsoleUser(c, u.ID)
	wantErr(t, err, store.ErrNotFound, "GetConsoleUser after delete")
	_, err = s.GetConsoleSession(c, []byte("b"))
	wantErr(t, err, store.ErrNotFound, "a deleted user's session")
	wantErr(t, s.DeleteConsoleUser(c, u.ID), store.ErrNotFound, "DeleteConsoleUser twice")
}

func testAuditLog(t *testing.T, s store.Store) {
	c := ctx(t)
	for i, org := range []string{"acme", "beta", "acme", "", "acme"} {
		must(t, s.AppendAudit(c, store.AuditEntry{At: at(time.Duration(i) * time.Second), Org: org, Actor: "client:c1",
			Action: "PUT /api/v1/orgs/{org}/sms-otp/settings", Target: "/api/v1/orgs/" + org + "/sms-otp/settings",
			Status: 200, IP: "192.0.2.1", RequestID: "r" + string(rune('0'+i))}), "AppendAudit %d", i)
	}
	acme, err := s.ListAudit(c, store.AuditFilter{Org: "acme"})
	must(t, err, "ListAudit acme")
	eq(t, len(acme), 3, "acme entries")
	eq(t, acme[0].RequestID, "r4", "newest first")
	eqTime(t, acme[0].At, at(4*time.Second), "entry time")
	eq(t, acme[0].Actor, "client:c1", "actor")
	eq(t, acme[0].Status, 200, "status")
	eq(t, acme[0].IP, "192.0.2.1", "ip")
	page, err := s.ListAudit(c, store.AuditFilter{Org: "acme", BeforeID: acme[0].ID, Limit: 1})
	must(t, err, "ListAudit page")
	eq(t, len(page), 1, "page size")
	eq(t, page[0].RequestID, "r2", "next page")
	platform, err := s.ListAudit(c, store.AuditFilter{})
	must(t, err, "ListAudit platform")
	eq(t, len(platform), 1, "platform-wide entries")
	all, err := s.ListAudit(c, store.AuditFilter{AllOrgs: true})
	must(t, err, "ListAudit all")
	eq(t, len(all), 5, "all entries")
}

func testPortalLinks(t *testing.T, s store.Store) {
	c := ctx(t)
	acme, beta := mustOrg(t, s, "acme"), mustOrg(t, s, "beta")
	l, err := s.CreatePortalLink(c, store.PortalLink{TokenHash: []byte("p1"), OrgID: acme.ID, Sections: []string{"webhooks", "deliveries"},
		FrameAncestors: []string{"https://app.example.com"}, CreatedBy: "client:c1", ExpiresAt: at(5 * time.Minute)})
	must(t, err, "CreatePortalLink")
	_, err = s.UsePortalLink(c, []byte("p1"), at(6*time.Minute))
	wantErr(t, err, store.ErrPrecondition, "UsePortalLink after expiry")
	_, err = s.UsePortalLink(c, []byte("nope"), at(0))
	wantErr(t, err, store.ErrNotFound, "UsePortalLink of an unknown token")
	got, err := s.UsePortalLink(c, []byte("p1"), at(time.Minute))
	must(t, err, "UsePortalLink")
	eq(t, got.ID, l.ID, "link ID")
	eq(t, got.OrgID, acme.ID, "link org")
	eq(t, fmt.Sprint(got.Sections), "[webhooks deliveries]", "sections")
	eq(t, fmt.Sprint(got.FrameAncestors), "[https://app.example.com]", "frame ancestors")
	eqTime(t, got.UsedAt, at(time.Minute), "used at")
	_, err = s.UsePortalLink(c, []byte("p1"), at(time.Minute))
	wantErr(t, err, store.ErrPrecondition, "UsePortalLink twice")
	again, err := s.GetPortalLink(c, acme.ID, l.ID)
	must(t, err, "GetPortalLink")
	eq(t, again.CreatedBy, "client:c1", "created by")
	_, err = s.GetPortalLink(c, beta.ID, l.ID)
	wantErr(t, err, store.ErrNotFound, "GetPortalLink of another org")
}
