package console

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/store"
)

// touchEvery is how often a session's last-seen time is written: the idle
// timeout is exact to within it.
const touchEvery = time.Minute

// session is a signed-in request's session.
type session struct {
	id        string // the cookie value; only its hash is stored
	rec       store.ConsoleSession
	user      store.ConsoleUser
	orgName   string // the org of an org admin
	principal access.Principal
	csrf      string
	notice    string // shown on every page (page.Notice)
}

func (c *Console) cookieName() string {
	if c.secure {
		return "__Host-otphub_console"
	}
	return "otphub_console"
}

func (c *Console) preCookieName() string {
	if c.secure {
		return "__Host-otphub_console_pre"
	}
	return "otphub_console_pre"
}

func (c *Console) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: c.secure, SameSite: http.SameSiteStrictMode,
	})
}

// loadSession returns the request's live session, or nil. It ends a
// session past its idle or absolute timeout.
func (c *Console) loadSession(r *http.Request) (*session, error) {
	ck, err := r.Cookie(c.cookieName())
	if err != nil || len(ck.Value) != 43 {
		return nil, nil
	}
	ctx := r.Context()
	h := hashToken(ck.Value)
	rec, err := c.st.GetConsoleSession(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	if !now.Before(rec.ExpiresAt) || now.Sub(rec.LastSeenAt) >= c.cfg.IdleTimeout {
		_ = c.st.DeleteConsoleSession(context.WithoutCancel(ctx), h)
		return nil, nil
	}
	u, err := c.st.GetConsoleUser(ctx, rec.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s := &session{id: ck.Value, rec: rec, user: u, csrf: c.mac("csrf", ck.Value)}
	if u.OrgID == 0 {
		s.principal = access.Principal{PlatformAdmin: true, User: u.Email}
		s.notice = c.secondFactorNotice(ctx)
	} else {
		o, err := c.st.GetOrgByID(ctx, u.OrgID)
		if err != nil {
			return nil, err
		}
		s.orgName = o.Name
		s.principal = access.Principal{OrgID: o.ID, OrgName: o.Name, Scopes: []string{access.ScopeAdmin}, User: u.Email}
	}
	if now.Sub(rec.LastSeenAt) >= touchEvery {
		if err := c.st.TouchConsoleSession(ctx, h, now); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	return s, nil
}

// startSession creates a new session for u (a new ID at every sign-in)
// and sets its cookie.
func (c *Console) startSession(w http.ResponseWriter, r *http.Request, u store.ConsoleUser) error {
	id := randomToken()
	now := c.cfg.Now().UTC()
	err := c.st.CreateConsoleSession(r.Context(), store.ConsoleSession{
		IDHash: hashToken(id), UserID: u.ID, CreatedAt: now, LastSeenAt: now,
		ExpiresAt: now.Add(c.cfg.AbsoluteTimeout), IP: c.audit.ClientIP(r),
	})
	if err != nil {
		return err
	}
	c.setCookie(w, c.cookieName(), id, int(c.cfg.AbsoluteTimeout.Seconds()))
	c.setCookie(w, c.preCookieName(), "", -1)
	return nil
}

// sessionHandler is a handler of a signed-in request.
type sessionHandler func(w http.ResponseWriter, r *http.Request, s *session)

// authed lets through requests with a live session (others go to the
// sign-in page) and checks the CSRF token and origin of every POST.
func (c *Console) authed(h sessionHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := c.loadSession(r)
		if err != nil {
			c.log.Error("load session", "err", err)
			c.errorPage(w, http.StatusServiceUnavailable, "The console is unavailable; try again.")
			return
		}
		if s == nil {
			c.setCookie(w, c.cookieName(), "", -1)
			next := ""
			if r.Method == http.MethodGet && r.URL.Path != "/console/" {
				next = "?next=" + url.QueryEscape(r.URL.RequestURI())
			}
			http.Redirect(w, r, "/console/sign-in"+next, http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost && !c.validCSRF(r, s.csrf) {
			c.errorPage(w, http.StatusForbidden, "This form expired or came from another site. Go back, reload the page and try again.")
			return
		}
		h(w, r, s)
	}
}

// validCSRF checks a POST's origin and its csrf form field against want.
func (c *Console) validCSRF(r *http.Request, want string) bool {
	if checkOrigin(r) != nil {
		return false
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	got := r.PostFormValue("csrf")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// preSessionCSRF returns the CSRF token of the forms shown before sign-in
// (sign-in, invitations), bound to a random cookie it sets when missing.
func (c *Console) preSessionCSRF(w http.ResponseWriter, r *http.Request) string {
	v := ""
	if ck, err := r.Cookie(c.preCookieName()); err == nil && len(ck.Value) == 43 {
		v = ck.Value
	} else {
		v = randomToken()
		c.setCookie(w, c.preCookieName(), v, 3600)
	}
	return c.mac("pre", v)
}

// validPreSessionCSRF checks a pre-session form's token.
func (c *Console) validPreSessionCSRF(r *http.Request) bool {
	ck, err := r.Cookie(c.preCookieName())
	if err != nil || len(ck.Value) != 43 {
		return false
	}
	return c.validCSRF(r, c.mac("pre", ck.Value))
}

// secondFactorNotice tells platform admins, who can fix it, that sign-in
// is password only because the second factor is not set up.
func (c *Console) secondFactorNotice(ctx context.Context) string {
	if c.cfg.SecondFactor == nil {
		return ""
	}
	if err := c.cfg.SecondFactor.Ready(ctx); errors.Is(err, ErrNotSetUp) {
		return "Console sign-in is password only: " + strings.TrimPrefix(err.Error(), ErrNotSetUp.Error()+": ") +
			". Give it one (Email & SMS › SMS Provider) to turn on the SMS OTP second factor."
	}
	return ""
}
