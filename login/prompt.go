package login

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/otphub/otphub/authcore"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/store"
)

const maxFormBody = 4 << 10

// cancelled is the Method of a flow the user cancelled: completed without
// a code.
const cancelled = "cancelled"

// session is one request's view of a live flow.
type session struct {
	flow   store.LoginFlow
	app    store.Application
	org    store.Org
	secret string // the browser's cookie value
	tr     translator
}

func (ss *session) base() string { return "/login/" + ss.flow.ID }

// csrf is the flow's form token: derived from the cookie's secret, which
// another site can neither read nor set, so it needs no storage.
func (ss *session) csrf() string {
	return base64.RawURLEncoding.EncodeToString(sha("otphub login csrf\x00" + ss.secret))
}

// open loads the {flow} flow for this browser, or answers with an error
// page: unknown, not this browser's, expired or finished.
func (s *Service) open(w http.ResponseWriter, r *http.Request) (*session, bool) {
	ctx := r.Context()
	id := r.PathValue("flow")
	locale := pickLocale("", r.Header.Get("Accept-Language"))
	gone := func(status int) (*session, bool) {
		s.errorPage(w, r, status, locale, "flowExpired", "")
		return nil, false
	}
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return gone(http.StatusNotFound)
	}
	f, err := s.st.GetLoginFlow(ctx, strings.ToLower(id))
	if errors.Is(err, store.ErrNotFound) {
		return gone(http.StatusNotFound)
	}
	if err != nil {
		s.log.Error("prompt: get login flow failed", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, locale, "internal", "")
		return nil, false
	}
	locale = f.Locale
	c, err := r.Cookie(cookieName)
	if err != nil || subtle.ConstantTimeCompare(sha(c.Value), f.BrowserHash) != 1 {
		// Another browser (or a lost cookie): the flow is not its own.
		return gone(http.StatusForbidden)
	}
	if !f.CompletedAt.IsZero() {
		return gone(http.StatusGone)
	}
	if !s.cfg.Now().Before(f.ExpiresAt) {
		s.metrics.outcome("expired_flow")
		return gone(http.StatusGone)
	}
	app, err := s.st.GetApplication(ctx, f.OrgID, f.ApplicationID)
	if errors.Is(err, store.ErrNotFound) {
		return gone(http.StatusGone)
	}
	org, oerr := s.st.GetOrgByID(ctx, f.OrgID)
	if err != nil || oerr != nil {
		s.log.Error("prompt: get application or org failed", "err", errors.Join(err, oerr))
		s.errorPage(w, r, http.StatusInternalServerError, locale, "internal", "")
		return nil, false
	}
	return &session{flow: f, app: app, org: org, secret: c.Value, tr: translator{f.Locale}}, true
}

// form parses a POST of the prompt and checks its CSRF token; false when
// it answered.
func (s *Service) form(w http.ResponseWriter, r *http.Request, ss *session) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		s.render(w, r, ss, http.StatusBadRequest, view{Error: ss.tr.T("badForm")})
		return false
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(ss.csrf())) != 1 {
		s.render(w, r, ss, http.StatusForbidden, view{Error: ss.tr.T("badForm")})
		return false
	}
	return true
}

// view is what a prompt page shows besides the flow itself.
type view struct {
	Backup bool          // the backup code form instead of the SMS one
	Error  template.HTML // in the alert region
	Notice template.HTML // in the status region
}

// maskMobile shows the country code and the last two digits only, joined
// by no-break spaces so the number never wraps.
func maskMobile(e164 string) string {
	if len(e164) < 6 {
		return "••••"
	}
	cc := 3
	if strings.HasPrefix(e164, "+1") || strings.HasPrefix(e164, "+7") {
		cc = 2
	}
	return e164[:cc] + "\u00a0" + strings.Repeat("•", len(e164)-cc-2) + "\u00a0" + e164[len(e164)-2:]
}

func minutes(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Minutes()))))
}

// message is the prompt's text for a refusal of authcore.
func (s *Service) message(tr translator, e *authcore.Error) template.HTML {
	switch e.Code {
	case "invalid_code":
		return tr.T("invalidCode", max(0, e.AttemptsRemaining))
	case "invalid_field":
		return tr.T("codeFormat")
	case "expired":
		return tr.T("expired")
	case "too_many_attempts":
		return tr.T("lockedOut", minutes(e.RetryAfter))
	case "rate_limited":
		return tr.T("rateLimited", minutes(e.RetryAfter))
	case "resend_too_soon":
		return tr.T("resendTooSoon")
	case "resend_limit_exceeded":
		return tr.T("noResends")
	case "backup_codes_disabled":
		return tr.T("backupDisabled")
	case "delivery_backlog", "log_unavailable":
		return tr.T("unavailable")
	case "overloaded": // a send or a verification: both are shed alike
		return tr.T("busy")
	case "already_verified", "challenge_not_found":
		return tr.T("flowExpired")
	}
	return tr.T("internal")
}

// refusal counts and shows a refusal of authcore (or an internal error).
func (s *Service) refusal(w http.ResponseWriter, r *http.Request, ss *session, backup bool, err error) {
	e := authcore.AsError(err)
	if e == nil {
		s.log.Error("prompt: operation failed", "org", ss.org.Name, "flow_id", ss.flow.ID, "err", err)
		s.render(w, r, ss, http.StatusInternalServerError, view{Backup: backup, Error: ss.tr.T("internal")})
		return
	}
	s.count(e)
	if e.RetryAfter > 0 {
		httpx.RetryAfter(w, e.RetryAfter)
	}
	s.render(w, r, ss, e.Status, view{Backup: backup, Error: s.message(ss.tr, e)})
}

// count counts a refusal of authcore as the step's outcome.
func (s *Service) count(e *authcore.Error) {
	switch e.Code {
	case "invalid_code":
		s.metrics.outcome("invalid_code")
	case "expired":
		s.metrics.outcome("expired_code")
	case "too_many_attempts":
		s.metrics.outcome("locked_out")
	case "rate_limited", "delivery_backlog", "log_unavailable", "overloaded":
		s.metrics.outcome("send_refused")
	}
}

// render writes the prompt page.
func (s *Service) render(w http.ResponseWriter, r *http.Request, ss *session, status int, v view) {
	ctx := r.Context()
	settings, err := s.core.Settings(ctx, ss.org.ID)
	if err != nil {
		s.log.Error("prompt: get settings failed", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, ss.flow.Locale, "internal", "")
		return
	}
	data := map[string]any{
		"Lang": ss.flow.Locale, "T": ss.tr, "AppName": ss.app.Name, "Masked": maskMobile(ss.flow.Mobile),
		"Numeric": settings.NumericOnly, "CSRF": ss.csrf(), "Base": ss.base(),
		"BackupCodes": ss.app.BackupCodes && settings.BackupCodesEnabled,
		"Backup":      v.Backup, "Error": v.Error, "Notice": v.Notice, "WebOTP": settings.WebOTP,
		"HasChallenge": ss.flow.ChallengeID != "", "CanSend": true, "ResendWait": 0, "ResendsLeft": 0,
	}
	if ss.flow.ChallengeID != "" {
		ch, err := s.core.Challenge(ctx, ss.org, ss.flow.ChallengeID)
		if err == nil {
			wait := int(math.Ceil(ch.NextResendAt.Sub(s.cfg.Now()).Seconds()))
			data["ResendsLeft"] = ch.ResendsRemaining
			data["CanSend"] = ch.ResendsRemaining > 0
			if wait > 0 {
				data["ResendWait"] = wait
				data["WaitSpan"] = template.HTML(`<span id="countdown-seconds">` + strconv.Itoa(wait) + `</span>`)
			}
		} else if authcore.AsError(err) == nil {
			s.log.Error("prompt: get challenge failed", "err", err)
		}
	}
	if v.Backup && !data["BackupCodes"].(bool) {
		data["Backup"] = false
	}
	pageHeaders(w, origin(ss.flow.RedirectURI))
	w.WriteHeader(status)
	if err := pages.ExecuteTemplate(w, "prompt", data); err != nil {
		s.log.Error("rendering the prompt failed", "err", err)
	}
}

// origin is u's scheme://host[:port], for the CSP's form-action.
func origin(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return p.Scheme + "://" + p.Host
}

// prompt serves GET /login/{flow}: the SMS code form, or with
// ?method=backup the backup code form. ?m= carries the outcome of the
// previous step (a closed set), never a secret.
func (s *Service) prompt(w http.ResponseWriter, r *http.Request) {
	ss, ok := s.open(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	v := view{Backup: q.Get("method") == "backup"}
	switch m := q.Get("m"); m {
	case "":
	case "sent":
		v.Notice = ss.tr.T("sent")
	case "internal":
		v.Error = ss.tr.T("unavailable")
	default:
		wait, _ := strconv.Atoi(q.Get("wait"))
		e := &authcore.Error{Code: m, RetryAfter: time.Duration(min(max(wait, 0), 86400)) * time.Second}
		if msg := s.message(ss.tr, e); msg != ss.tr.T("internal") {
			v.Error = msg
		}
	}
	s.render(w, r, ss, http.StatusOK, v)
}

// verify serves the SMS code form.
func (s *Service) verify(w http.ResponseWriter, r *http.Request) {
	ss, ok := s.open(w, r)
	if !ok || !s.form(w, r, ss) {
		return
	}
	if ss.flow.ChallengeID == "" {
		s.render(w, r, ss, http.StatusConflict, view{Error: ss.tr.T("expired")})
		return
	}
	if err := s.core.Verify(r.Context(), ss.org, ss.flow.ChallengeID, r.PostForm.Get("code")); err != nil {
		s.refusal(w, r, ss, false, err)
		return
	}
	s.complete(w, r, ss, store.LoginBySMS)
}

// backup serves the backup code form: no SMS is needed.
func (s *Service) backup(w http.ResponseWriter, r *http.Request) {
	ss, ok := s.open(w, r)
	if !ok || !s.form(w, r, ss) {
		return
	}
	if !ss.app.BackupCodes {
		s.render(w, r, ss, http.StatusForbidden, view{Error: ss.tr.T("backupDisabled")})
		return
	}
	if _, err := s.core.VerifyBackupCode(r.Context(), ss.org, ss.flow.UserID, r.PostForm.Get("backup")); err != nil {
		s.refusal(w, r, ss, true, err)
		return
	}
	s.complete(w, r, ss, store.LoginByBackupCode)
}

// resend serves the resend (or, when the first SMS could not be sent,
// send) button.
func (s *Service) resend(w http.ResponseWriter, r *http.Request) {
	ss, ok := s.open(w, r)
	if !ok || !s.form(w, r, ss) {
		return
	}
	ctx := r.Context()
	ip := httpx.ClientIP(r, s.cfg.TrustProxyHeaders)
	var err error
	if ss.flow.ChallengeID == "" {
		var ch authcore.ChallengeState
		ch, err = s.core.Start(ctx, ss.org, authcore.StartRequest{
			Mobile: ss.flow.Mobile, UserID: ss.flow.UserID, Application: ss.app.Name, Locale: ss.flow.Locale, IP: ip, WebOTP: true,
		})
		if err == nil {
			if serr := s.st.SetLoginFlowChallenge(ctx, ss.flow.ID, ch.ID); serr != nil && !errors.Is(serr, store.ErrPrecondition) {
				err = serr
			}
		}
	} else {
		_, err = s.core.Resend(ctx, ss.org, ss.flow.ChallengeID, authcore.ResendRequest{Locale: ss.flow.Locale, IP: ip, WebOTP: true})
	}
	if err != nil {
		s.refusal(w, r, ss, false, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, ss.base()+"?m=sent", http.StatusSeeOther)
}

// cancel ends the flow and sends the user back with access_denied.
func (s *Service) cancel(w http.ResponseWriter, r *http.Request) {
	ss, ok := s.open(w, r)
	if !ok || !s.form(w, r, ss) {
		return
	}
	if err := s.st.CompleteLoginFlow(r.Context(), ss.flow.ID, cancelled, s.cfg.Now().UTC(), nil, time.Time{}); err != nil && !errors.Is(err, store.ErrPrecondition) {
		s.log.Error("prompt: cancelling the flow failed", "err", err)
	}
	s.clearCookie(w, ss)
	s.metrics.outcome("cancelled")
	s.log.Info("login step cancelled", "org", ss.org.Name, "client_id", ss.app.ClientID, "flow_id", ss.flow.ID)
	s.redirect(w, r, ss.flow.RedirectURI, ss.flow.State, url.Values{"error": {"access_denied"}, "error_description": {"the user cancelled the sign-in"}})
}

func (s *Service) clearCookie(w http.ResponseWriter, ss *session) {
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: ss.base(), MaxAge: -1,
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
}

// complete finishes the flow by method: a single-use authorization code
// goes back to the relying party (303), bound to its client, redirect URI
// and PKCE challenge.
func (s *Service) complete(w http.ResponseWriter, r *http.Request, ss *session, method string) {
	code := randomToken(32)
	now := s.cfg.Now().UTC()
	err := s.st.CompleteLoginFlow(context.WithoutCancel(r.Context()), ss.flow.ID, method, now, sha(code), now.Add(s.cfg.CodeTTL))
	if errors.Is(err, store.ErrPrecondition) {
		// A concurrent request finished it first (a double click).
		s.errorPage(w, r, http.StatusConflict, ss.flow.Locale, "flowExpired", "")
		return
	}
	if err != nil {
		s.log.Error("prompt: completing the flow failed", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, ss.flow.Locale, "internal", "")
		return
	}
	s.clearCookie(w, ss)
	if method == store.LoginBySMS {
		s.metrics.outcome("sms_verified")
	} else {
		s.metrics.outcome("backup_verified")
	}
	s.log.Info("login step completed", "org", ss.org.Name, "client_id", ss.app.ClientID, "flow_id", ss.flow.ID, "method", method)
	s.redirect(w, r, ss.flow.RedirectURI, ss.flow.State, url.Values{"code": {code}})
}
