package console

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/otphub/otphub/store"
)

var (
	emailPattern  = regexp.MustCompile(`^[^\s@]{1,64}@[^\s@]{1,190}\.[^\s@.]{2,63}$`)
	mobilePattern = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
)

// safeNext is the in-console path to go to after sign-in: only a path
// under /console/, never another origin (no open redirect).
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/console/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/console/"
	}
	return next
}

func (c *Console) errorPage(w http.ResponseWriter, status int, msg string) {
	c.render(w, status, "error", page{Title: http.StatusText(status), Error: msg})
}

type signInData struct {
	Email, Next string
	Field       map[string]string
}

func (c *Console) signInForm(w http.ResponseWriter, r *http.Request) {
	if s, _ := c.loadSession(r); s != nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.render(w, http.StatusOK, "sign-in", page{Title: "Sign in", CSRF: c.preSessionCSRF(w, r),
		Data: signInData{Next: safeNext(r.URL.Query().Get("next"))}})
}

// limited counts a sign-in attempt against key's budget and tells whether
// it is over.
func (c *Console) limited(ctx context.Context, key string, max int) bool {
	now := c.cfg.Now()
	win := now.Truncate(c.cfg.SignInWindow)
	n, err := c.st.HitCounter(ctx, "console-sign-in:"+key, win, win.Add(2*c.cfg.SignInWindow))
	if err != nil {
		c.log.Error("sign-in limit", "err", err)
		return true // fail closed
	}
	return n > int64(max)
}

func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	if !c.validPreSessionCSRF(r) {
		c.errorPage(w, http.StatusForbidden, "This form expired or came from another site. Go back, reload the page and try again.")
		return
	}
	email := strings.ToLower(strings.TrimSpace(r.PostFormValue("email")))
	pw := r.PostFormValue("password")
	d := signInData{Email: email, Next: safeNext(r.PostFormValue("next")), Field: map[string]string{}}
	fail := func(status int, msg string) {
		c.render(w, status, "sign-in", page{Title: "Sign in", CSRF: c.preSessionCSRF(w, r), Error: msg, Data: d})
	}
	ip := c.audit.ClientIP(r)
	if c.limited(r.Context(), "ip:"+ip, 3*c.cfg.SignInLimit) || (email != "" && c.limited(r.Context(), "user:"+email, c.cfg.SignInLimit)) {
		c.audit.Append(r.Context(), store.AuditEntry{Actor: "user:" + email, Action: "console.sign_in_throttled", Target: email, Status: http.StatusTooManyRequests, IP: ip})
		fail(http.StatusTooManyRequests, fmt.Sprintf("Too many sign-in attempts. Wait %d minutes and try again.", int(c.cfg.SignInWindow.Minutes())))
		return
	}
	u, err := c.st.GetConsoleUserByEmail(r.Context(), email)
	switch {
	case errors.Is(err, store.ErrNotFound):
		VerifyPassword(pw, dummyHash) // same time as a wrong password
	case err != nil:
		c.log.Error("sign-in", "err", err)
		fail(http.StatusServiceUnavailable, "The console is unavailable; try again.")
		return
	}
	if err != nil || !VerifyPassword(pw, u.PasswordHash) {
		c.audit.Append(r.Context(), store.AuditEntry{Actor: "user:" + email, Action: "console.sign_in_failed", Target: email, Status: http.StatusUnauthorized, IP: ip})
		fail(http.StatusUnauthorized, "The email or password is not right.")
		return
	}
	if sf := c.cfg.SecondFactor; sf != nil {
		switch err := sf.Ready(r.Context()); {
		case errors.Is(err, ErrNotSetUp):
			c.log.Warn("console sign-in without the second factor", "user", u.Email, "reason", err)
			c.audit.Append(r.Context(), store.AuditEntry{Org: c.orgOf(r.Context(), u), Actor: "user:" + u.Email, Action: "console.sign_in_password_only",
				Target: u.Email, Status: http.StatusSeeOther, IP: ip})
			c.finishSignIn(w, r, u, d.Next)
			return
		case err != nil:
			c.log.Error("second factor", "err", err)
			fail(http.StatusServiceUnavailable, "The sign-in code could not be sent; try again.")
			return
		}
		nonce := randomToken()
		exp := c.cfg.Now().Add(10 * time.Minute).Unix()
		c.setCookie(w, c.pendingCookieName(), c.pendingValue(u.ID, exp, nonce, d.Next), 600)
		if err := c.cfg.SecondFactor.Begin(w, r, u, nonce); err != nil {
			c.log.Error("second factor", "err", err)
			fail(http.StatusServiceUnavailable, "The sign-in code could not be sent; try again.")
		}
		return
	}
	c.finishSignIn(w, r, u, d.Next)
}

func (c *Console) finishSignIn(w http.ResponseWriter, r *http.Request, u store.ConsoleUser, next string) {
	if err := c.startSession(w, r, u); err != nil {
		c.log.Error("start session", "err", err)
		c.errorPage(w, http.StatusServiceUnavailable, "The console is unavailable; try again.")
		return
	}
	c.audit.Append(r.Context(), store.AuditEntry{Org: c.orgOf(r.Context(), u), Actor: "user:" + u.Email, Action: "console.sign_in",
		Target: u.Email, Status: http.StatusSeeOther, IP: c.audit.ClientIP(r)})
	http.Redirect(w, r, safeNext(next), http.StatusSeeOther)
}

// signInCallback is where the second factor comes back.
func (c *Console) signInCallback(w http.ResponseWriter, r *http.Request) {
	deny := func() {
		c.errorPage(w, http.StatusForbidden, "The sign-in could not be completed. Sign in again.")
	}
	if c.cfg.SecondFactor == nil {
		deny()
		return
	}
	ck, err := r.Cookie(c.pendingCookieName())
	if err != nil {
		deny()
		return
	}
	parts := strings.Split(ck.Value, ".")
	if len(parts) != 5 || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(c.pendingValueOf(parts))) != 1 {
		deny()
		return
	}
	nextB, _ := base64.RawURLEncoding.DecodeString(parts[3])
	next := string(nextB)
	uid, _ := strconv.ParseInt(parts[0], 10, 64)
	exp, _ := strconv.ParseInt(parts[1], 10, 64)
	state, subject, err := c.cfg.SecondFactor.Finish(r)
	if err != nil || c.cfg.Now().Unix() > exp || subtle.ConstantTimeCompare([]byte(state), []byte(parts[2])) != 1 || subject != parts[0] {
		c.audit.Append(r.Context(), store.AuditEntry{Actor: "user:" + parts[0], Action: "console.second_factor_failed", Status: http.StatusForbidden, IP: c.audit.ClientIP(r)})
		deny()
		return
	}
	u, err := c.st.GetConsoleUser(r.Context(), uid)
	if err != nil {
		deny()
		return
	}
	c.setCookie(w, c.pendingCookieName(), "", -1)
	c.finishSignIn(w, r, u, next)
}

// pendingCookieName holds a sign-in between the password and the second
// factor: like every console cookie it is Path=/ (so a __Host- name is
// valid behind https) and SameSite=Strict (the second factor's redirects
// back to the console are same-site).
func (c *Console) pendingCookieName() string { return c.preCookieName() + "_2fa" }

// pendingValue is "user.expiry.nonce.next.mac", next base64url-encoded.
func (c *Console) pendingValue(uid, exp int64, nonce, next string) string {
	return c.pendingValueOf([]string{strconv.FormatInt(uid, 10), strconv.FormatInt(exp, 10), nonce,
		base64.RawURLEncoding.EncodeToString([]byte(next))})
}

// pendingValueOf is the cookie value the first four parts must come with.
func (c *Console) pendingValueOf(parts []string) string {
	return strings.Join(append(parts[:4:4], c.mac("pending", parts[0], parts[1], parts[2], parts[3])), ".")
}

func (c *Console) orgOf(ctx context.Context, u store.ConsoleUser) string {
	if u.OrgID == 0 {
		return ""
	}
	o, err := c.st.GetOrgByID(ctx, u.OrgID)
	if err != nil {
		return ""
	}
	return o.Name
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request, s *session) {
	_ = c.st.DeleteConsoleSession(r.Context(), hashToken(s.id))
	c.setCookie(w, c.cookieName(), "", -1)
	c.audit.Append(r.Context(), store.AuditEntry{Org: s.orgName, Actor: s.principal.Actor(), Action: "console.sign_out", Target: s.user.Email, IP: c.audit.ClientIP(r)})
	http.Redirect(w, r, "/console/sign-in", http.StatusSeeOther)
}

func (c *Console) signOutEverywhere(w http.ResponseWriter, r *http.Request, s *session) {
	n, err := c.st.DeleteConsoleSessions(r.Context(), s.user.ID)
	if err != nil {
		c.log.Error("sign out everywhere", "err", err)
		c.errorPage(w, http.StatusServiceUnavailable, "The console is unavailable; try again.")
		return
	}
	c.setCookie(w, c.cookieName(), "", -1)
	c.audit.Append(r.Context(), store.AuditEntry{Org: s.orgName, Actor: s.principal.Actor(), Action: "console.sign_out_everywhere",
		Target: fmt.Sprintf("%s (%d sessions)", s.user.Email, n), IP: c.audit.ClientIP(r)})
	http.Redirect(w, r, "/console/sign-in", http.StatusSeeOther)
}

// home sends an org admin to their org, the platform admin to the orgs.
func (c *Console) home(w http.ResponseWriter, r *http.Request, s *session) {
	if s.orgName != "" {
		http.Redirect(w, r, "/console/orgs/"+s.orgName+"/", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/console/platform/orgs", http.StatusSeeOther)
}

// Invite creates an invitation for email to org ("" for a platform admin)
// and returns its link. by is who invites (for the audit log).
func (c *Console) Invite(ctx context.Context, email string, orgID int64, by string) (string, store.Invitation, error) {
	tok := randomToken()
	now := c.cfg.Now().UTC()
	inv, err := c.st.CreateInvitation(ctx, store.Invitation{TokenHash: hashToken(tok), Email: email, OrgID: orgID,
		CreatedBy: by, ExpiresAt: now.Add(c.cfg.InvitationTTL), CreatedAt: now})
	if err != nil {
		return "", store.Invitation{}, err
	}
	return strings.TrimSuffix(c.cfg.PublicURL, "/") + "/console/invitations/" + tok, inv, nil
}

// SetupLink returns a one-time link that creates the first platform admin
// when there is none yet, or "" when there is one.
func (c *Console) SetupLink(ctx context.Context) (string, error) {
	n, err := c.st.CountConsolePlatformAdmins(ctx)
	if err != nil || n > 0 {
		return "", err
	}
	link, _, err := c.Invite(ctx, "", 0, "setup")
	return link, err
}

type invitationData struct {
	Email, Name, Mobile string
	Setup               bool // the first platform admin: the email is chosen here
	Org                 string
	Expires             time.Time
	Field               map[string]string
	MinLength           int
}

func (c *Console) openInvitation(r *http.Request) (store.Invitation, string) {
	tok := r.PathValue("token")
	if len(tok) != 43 {
		return store.Invitation{}, "This invitation link is not valid. Ask for a new one."
	}
	inv, err := c.st.GetInvitation(r.Context(), hashToken(tok))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return inv, "This invitation link is not valid. Ask for a new one."
	case err != nil:
		return inv, "The console is unavailable; try again."
	case !inv.UsedAt.IsZero():
		return inv, "This invitation was used already. Sign in, or ask for a new one."
	case !c.cfg.Now().Before(inv.ExpiresAt):
		return inv, "This invitation has expired. Ask for a new one."
	}
	return inv, ""
}

func (c *Console) invitationForm(w http.ResponseWriter, r *http.Request) {
	inv, msg := c.openInvitation(r)
	if msg != "" {
		c.errorPage(w, http.StatusNotFound, msg)
		return
	}
	d := invitationData{Email: inv.Email, Setup: inv.Email == "", Org: c.orgOf(r.Context(), store.ConsoleUser{OrgID: inv.OrgID}),
		Expires: inv.ExpiresAt, MinLength: MinPasswordLength}
	c.render(w, http.StatusOK, "invitation", page{Title: "Create your account", CSRF: c.preSessionCSRF(w, r), Data: d})
}

func (c *Console) acceptInvitation(w http.ResponseWriter, r *http.Request) {
	if !c.validPreSessionCSRF(r) {
		c.errorPage(w, http.StatusForbidden, "This form expired or came from another site. Go back, reload the page and try again.")
		return
	}
	inv, msg := c.openInvitation(r)
	if msg != "" {
		c.errorPage(w, http.StatusNotFound, msg)
		return
	}
	d := invitationData{Email: inv.Email, Setup: inv.Email == "", Org: c.orgOf(r.Context(), store.ConsoleUser{OrgID: inv.OrgID}),
		Expires: inv.ExpiresAt, MinLength: MinPasswordLength, Field: map[string]string{},
		Name: strings.TrimSpace(r.PostFormValue("name")), Mobile: strings.TrimSpace(r.PostFormValue("mobile"))}
	if d.Setup {
		d.Email = strings.ToLower(strings.TrimSpace(r.PostFormValue("email")))
		if !emailPattern.MatchString(d.Email) {
			d.Field["email"] = "Enter an email address such as admin@example.com."
		}
	}
	if d.Name == "" || len(d.Name) > 100 {
		d.Field["name"] = "Enter your name (at most 100 characters)."
	}
	if !mobilePattern.MatchString(d.Mobile) {
		d.Field["mobile"] = "Enter your mobile number in international format, such as +94771234567."
	}
	pw := r.PostFormValue("password")
	if err := CheckPassword(pw, d.Email); err != nil {
		d.Field["password"] = strings.ToUpper(err.Error()[:1]) + err.Error()[1:] + "."
	} else if pw != r.PostFormValue("confirm") {
		d.Field["confirm"] = "The two passwords differ."
	}
	if len(d.Field) > 0 {
		c.render(w, http.StatusBadRequest, "invitation", page{Title: "Create your account", CSRF: c.preSessionCSRF(w, r), Data: d,
			Error: "Correct the fields marked below."})
		return
	}
	hash, err := HashPassword(pw)
	if err != nil {
		c.errorPage(w, http.StatusInternalServerError, "internal error")
		return
	}
	u, err := c.st.AcceptInvitation(r.Context(), hashToken(r.PathValue("token")), c.cfg.Now(),
		store.ConsoleUser{Email: d.Email, Name: d.Name, PasswordHash: hash, Mobile: d.Mobile})
	switch {
	case errors.Is(err, store.ErrConflict):
		d.Field["email"] = "An account with this email exists already."
		c.render(w, http.StatusConflict, "invitation", page{Title: "Create your account", CSRF: c.preSessionCSRF(w, r), Data: d, Error: "An account with this email exists already; sign in instead."})
		return
	case errors.Is(err, store.ErrPrecondition), errors.Is(err, store.ErrNotFound):
		c.errorPage(w, http.StatusNotFound, "This invitation was used already or has expired. Ask for a new one.")
		return
	case err != nil:
		c.log.Error("accept invitation", "err", err)
		c.errorPage(w, http.StatusServiceUnavailable, "The console is unavailable; try again.")
		return
	}
	c.audit.Append(r.Context(), store.AuditEntry{Org: d.Org, Actor: "user:" + u.Email, Action: "console.invitation_accepted", Target: u.Email, Status: http.StatusSeeOther, IP: c.audit.ClientIP(r)})
	c.finishSignIn(w, r, u, "/console/")
}

func auditInvite(org string, s *session, email, ip string) store.AuditEntry {
	return store.AuditEntry{Org: org, Actor: s.principal.Actor(), Action: "console.invitation_created", Target: email, Status: http.StatusCreated, IP: ip}
}
