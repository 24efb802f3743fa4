package authcore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/smspolicy"
	"github.com/otphub/otphub/store"
)

// e164Chars is the shape of an E.164 number; libphonenumber then checks
// it is a valid number (it would otherwise accept vanity letters).
var e164Chars = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)

const (
	maxUserIDChars      = 128
	maxApplicationChars = 100
	maxCodeChars        = 32
	maxChallengeBody    = 4 << 10
)

type challengeJSON struct {
	ID               string    `json:"id"`
	ExpiresAt        time.Time `json:"expiresAt"`
	ResendsRemaining int       `json:"resendsRemaining"`
}

// validText reports whether s is 1 to max characters of valid UTF-8
// without control characters.
func validText(s string, max int) bool {
	if s == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > max {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// parseMobile validates an E.164 number with libphonenumber and the org's
// policy (country allow-list, number types), and returns it in E.164
// form; msg names what is wrong.
func parseMobile(s string, settings store.OTPSettings) (e164, msg string) {
	if !e164Chars.MatchString(s) {
		return "", "mobile: must be an E.164 number: + then the country calling code and number"
	}
	e164, refusal := smspolicy.Screen(s, settings)
	if refusal != "" {
		return "", "mobile: " + refusal
	}
	return e164, ""
}

func (s *Service) startChallenge(w http.ResponseWriter, r *http.Request) {
	org := orgOf(r)
	var req struct {
		Mobile      string `json:"mobile"`
		UserID      string `json:"userId"`
		Application string `json:"application"`
		Locale      string `json:"locale"`
		ClientIP    string `json:"clientIp"`
	}
	if err := httpx.DecodeJSON(w, r, &req, maxChallengeBody); err != nil {
		httpx.WriteDecodeError(w, err)
		return
	}
	ctx := r.Context()
	settings, err := s.settings(ctx, org.ID)
	if err != nil {
		s.internal(w, "get settings", err)
		return
	}
	mobile, msg := parseMobile(req.Mobile, settings)
	if msg == "" && !validText(req.UserID, maxUserIDChars) {
		msg = fmt.Sprintf("userId: required, 1 to %d characters, no control characters", maxUserIDChars)
	}
	if msg == "" && !validText(req.Application, maxApplicationChars) {
		msg = fmt.Sprintf("application: required, 1 to %d characters, no control characters", maxApplicationChars)
	}
	locale := ""
	if msg == "" && req.Locale != "" {
		var ok bool
		if locale, ok = canonicalLocale(req.Locale); !ok {
			msg = "locale: not a BCP 47 language tag (e.g. en, fr-CA)"
		}
	}
	ip, ipMsg := s.limitIP(r, req.ClientIP)
	if msg == "" {
		msg = ipMsg
	}
	if msg != "" {
		httpx.Error(w, http.StatusBadRequest, "invalid_field", msg)
		return
	}
	now := s.cfg.Now()
	if s.lockedOut(ctx, w, org.ID, req.UserID, settings.MaxFailedAttempts, now, false) {
		return
	}
	if s.backlogged(ctx, w, org) {
		return
	}
	if scope, wait, err := s.spend(ctx, org, settings, mobile, ip, now); err != nil {
		s.internal(w, "abuse limits", err)
		return
	} else if scope != "" {
		retryAfter(w, wait)
		httpx.Error(w, http.StatusTooManyRequests, "rate_limited", "too many SMS sends for this "+scope+"; retry later")
		return
	}
	code, err := newOTP(settings.NumericOnly, settings.Length)
	if err != nil {
		s.internal(w, "generate otp", err)
		return
	}
	expiry := time.Duration(settings.ExpirySeconds) * time.Second
	body, err := s.messageBody(ctx, org, locale, req.Application, code, expiry)
	if err != nil {
		s.internal(w, "render message", err)
		return
	}
	c := store.Challenge{
		ID: uuid.NewString(), OrgID: org.ID, UserID: req.UserID, Mobile: mobile,
		Application: req.Application, ExpiresAt: now.Add(expiry).UTC(),
		LastSentAt: now.UTC(), CreatedAt: now.UTC(),
	}
	c.CodeHMAC = s.codeHMAC(org.ID, c.ID, code)
	// The challenge is stored before the event is published so an SMS never
	// carries a code the store does not know. If publishing fails the
	// challenge is consumed at once: its id was never disclosed and its
	// code can never verify.
	if err := s.st.CreateChallenge(ctx, c); err != nil {
		s.internal(w, "create challenge", err)
		return
	}
	if err := s.publish(ctx, org, mobile, body, now, c.ExpiresAt); err != nil {
		s.log.Error("publishing the OTP event failed; challenge withdrawn", "org", org.Name, "challenge_id", c.ID, "err", err)
		if cerr := s.st.ConsumeChallenge(context.WithoutCancel(ctx), org.ID, c.ID, c.CodeHMAC, now); cerr != nil {
			s.log.Error("withdrawing the challenge failed", "err", cerr)
		}
		retryAfter(w, time.Second)
		httpx.Error(w, http.StatusServiceUnavailable, "log_unavailable", "the OTP could not be queued for delivery; start a new challenge")
		return
	}
	s.metrics.challengesStarted.Inc()
	httpx.JSON(w, http.StatusCreated, challengeJSON{c.ID, c.ExpiresAt, max(0, settings.MaxResends)})
}

// loadChallenge reads the {id} challenge of the org; unknown, malformed
// and other orgs' ids are all the same 404.
func (s *Service) loadChallenge(w http.ResponseWriter, r *http.Request, orgID int64) (store.Challenge, bool) {
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		httpx.Error(w, http.StatusNotFound, "challenge_not_found", "no such challenge")
		return store.Challenge{}, false
	}
	c, err := s.st.GetChallenge(r.Context(), orgID, strings.ToLower(id))
	if errors.Is(err, store.ErrNotFound) {
		httpx.Error(w, http.StatusNotFound, "challenge_not_found", "no such challenge")
		return store.Challenge{}, false
	}
	if err != nil {
		s.internal(w, "get challenge", err)
		return store.Challenge{}, false
	}
	return c, true
}

func alreadyVerified(w http.ResponseWriter) {
	httpx.Error(w, http.StatusConflict, "already_verified", "the challenge was already verified")
}

func (s *Service) resendChallenge(w http.ResponseWriter, r *http.Request) {
	org := orgOf(r)
	ctx := r.Context()
	// The body is optional: {"locale"} selects the message template and
	// {"clientIp"} the per-IP budget, as when starting (the challenge
	// keeps neither).
	var req struct {
		Locale   string `json:"locale"`
		ClientIP string `json:"clientIp"`
	}
	if r.ContentLength != 0 {
		if err := httpx.DecodeJSON(w, r, &req, 1<<10); err != nil {
			httpx.WriteDecodeError(w, err)
			return
		}
	}
	locale := ""
	if req.Locale != "" {
		var ok bool
		if locale, ok = canonicalLocale(req.Locale); !ok {
			httpx.Error(w, http.StatusBadRequest, "invalid_field", "locale: not a BCP 47 language tag (e.g. en, fr-CA)")
			return
		}
	}
	ip, msg := s.limitIP(r, req.ClientIP)
	if msg != "" {
		httpx.Error(w, http.StatusBadRequest, "invalid_field", msg)
		return
	}
	c, ok := s.loadChallenge(w, r, org.ID)
	if !ok {
		return
	}
	if !c.ConsumedAt.IsZero() {
		alreadyVerified(w)
		return
	}
	settings, err := s.settings(ctx, org.ID)
	if err != nil {
		s.internal(w, "get settings", err)
		return
	}
	now := s.cfg.Now()
	if s.lockedOut(ctx, w, org.ID, c.UserID, settings.MaxFailedAttempts, now, false) {
		return
	}
	if c.Resends >= settings.MaxResends {
		s.metrics.resends.WithLabelValues("limit_exceeded").Inc()
		httpx.Error(w, http.StatusTooManyRequests, "resend_limit_exceeded", fmt.Sprintf("no resends left (%d allowed); start a new challenge", settings.MaxResends))
		return
	}
	interval := time.Duration(settings.ResendIntervalSeconds) * time.Second
	if wait := c.LastSentAt.Add(interval).Sub(now); wait > 0 {
		s.metrics.resends.WithLabelValues("too_soon").Inc()
		retryAfter(w, wait)
		httpx.Error(w, http.StatusTooManyRequests, "resend_too_soon", "the previous OTP was sent too recently")
		return
	}
	if s.backlogged(ctx, w, org) {
		s.metrics.resends.WithLabelValues("backlogged").Inc()
		return
	}
	code, err := newOTP(settings.NumericOnly, settings.Length)
	if err != nil {
		s.internal(w, "generate otp", err)
		return
	}
	expiry := time.Duration(settings.ExpirySeconds) * time.Second
	expiresAt := now.Add(expiry).UTC()
	body, err := s.messageBody(ctx, org, locale, c.Application, code, expiry)
	if err != nil {
		s.internal(w, "render message", err)
		return
	}
	// Claim this resend's turn before sending anything: of concurrent
	// resends (a double click) one claims it and sends; the others answer
	// 429 and send nothing, so the user never holds an SMS whose code will
	// not verify. The previous OTP stays valid until the new one replaces it.
	sentAt := now.UTC()
	if err := s.st.ClaimResend(ctx, org.ID, c.ID, c.Resends, c.LastSentAt, sentAt); err != nil {
		s.resendRaced(ctx, w, org, c.ID, interval, err)
		return
	}
	// giveBack undoes the claim when nothing is sent after all.
	giveBack := func() {
		if err := s.st.ClaimResend(context.WithoutCancel(ctx), org.ID, c.ID, c.Resends, sentAt, c.LastSentAt); err != nil {
			s.log.Warn("giving back a resend's turn failed; the next resend waits the resend interval", "org", org.Name, "err", err)
		}
	}
	// The send budgets are charged only by the resend that holds the turn,
	// so the losers of a double click cost the user nothing.
	if scope, wait, err := s.spend(ctx, org, settings, c.Mobile, ip, now); err != nil {
		giveBack()
		s.internal(w, "abuse limits", err)
		return
	} else if scope != "" {
		giveBack()
		s.metrics.resends.WithLabelValues("rate_limited").Inc()
		retryAfter(w, wait)
		httpx.Error(w, http.StatusTooManyRequests, "rate_limited", "too many SMS sends for this "+scope+"; retry later")
		return
	}
	// The event is published before the code is replaced: if the log is
	// down the turn is given back and nothing changes (the previous OTP
	// stays valid, no resend is used).
	if err := s.publish(ctx, org, c.Mobile, body, now, expiresAt); err != nil {
		giveBack()
		s.metrics.resends.WithLabelValues("failed").Inc()
		s.log.Error("publishing the resent OTP event failed", "org", org.Name, "err", err)
		retryAfter(w, time.Second)
		httpx.Error(w, http.StatusServiceUnavailable, "log_unavailable", "the OTP could not be queued for delivery; the previous OTP stays valid")
		return
	}
	// Under the claim, only a verification (or, with no resend interval, a
	// later resend claiming after this one) can come between.
	err = s.st.ReplaceChallengeCode(ctx, org.ID, c.ID, c.Resends, s.codeHMAC(org.ID, c.ID, code), expiresAt, sentAt)
	if err != nil {
		s.resendRaced(ctx, w, org, c.ID, interval, err)
		return
	}
	s.metrics.resends.WithLabelValues("sent").Inc()
	httpx.JSON(w, http.StatusOK, challengeJSON{c.ID, expiresAt, max(0, settings.MaxResends-c.Resends-1)})
}

// resendRaced answers a resend whose conditional write found the challenge
// changed: verified meanwhile, or another resend took the turn.
func (s *Service) resendRaced(ctx context.Context, w http.ResponseWriter, org store.Org, id string, interval time.Duration, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound): // purged meanwhile
		httpx.Error(w, http.StatusNotFound, "challenge_not_found", "no such challenge")
		return
	case !errors.Is(err, store.ErrPrecondition):
		s.internal(w, "resend", err)
		return
	}
	if cur, gerr := s.st.GetChallenge(ctx, org.ID, id); gerr == nil && !cur.ConsumedAt.IsZero() {
		alreadyVerified(w)
		return
	}
	s.metrics.resends.WithLabelValues("too_soon").Inc()
	retryAfter(w, max(interval, time.Second))
	httpx.Error(w, http.StatusTooManyRequests, "resend_too_soon", "another resend of this challenge happened at the same time")
}

func (s *Service) verifyChallenge(w http.ResponseWriter, r *http.Request) {
	org := orgOf(r)
	ctx := r.Context()
	var req struct {
		Code       *string `json:"code"`
		BackupCode *string `json:"backupCode"`
	}
	if err := httpx.DecodeJSON(w, r, &req, 1<<10); err != nil {
		httpx.WriteDecodeError(w, err)
		return
	}
	switch {
	case (req.Code == nil) == (req.BackupCode == nil):
		httpx.Error(w, http.StatusBadRequest, "invalid_request", "give exactly one of code and backupCode")
		return
	case req.Code != nil && (*req.Code == "" || utf8.RuneCountInString(*req.Code) > maxCodeChars):
		httpx.Error(w, http.StatusBadRequest, "invalid_field", fmt.Sprintf("code: 1 to %d characters", maxCodeChars))
		return
	case req.BackupCode != nil && (*req.BackupCode == "" || utf8.RuneCountInString(*req.BackupCode) > maxCodeChars):
		httpx.Error(w, http.StatusBadRequest, "invalid_field", fmt.Sprintf("backupCode: 1 to %d characters", maxCodeChars))
		return
	}
	c, ok := s.loadChallenge(w, r, org.ID)
	if !ok {
		return
	}
	if !c.ConsumedAt.IsZero() {
		alreadyVerified(w)
		return
	}
	settings, err := s.settings(ctx, org.ID)
	if err != nil {
		s.internal(w, "get settings", err)
		return
	}
	now := s.cfg.Now()
	if s.lockedOut(ctx, w, org.ID, c.UserID, settings.MaxFailedAttempts, now, true) {
		return
	}
	if !now.Before(c.ExpiresAt) {
		s.metrics.verifications.WithLabelValues("expired").Inc()
		httpx.Error(w, http.StatusGone, "expired", "the OTP has expired; resend or start a new challenge")
		return
	}
	if req.BackupCode != nil && !settings.BackupCodesEnabled {
		backupCodesDisabled(w)
		return
	}
	attempt, ok := s.reserveAttempt(w, r, org, c, settings, now)
	if !ok {
		return
	}
	if req.BackupCode != nil {
		s.verifyBackupCode(w, r, org, c, *req.BackupCode, settings, attempt, now)
		return
	}
	if !hmacEqual(c.CodeHMAC, s.codeHMAC(org.ID, c.ID, normalizeCode(*req.Code))) {
		s.invalidCode(w, settings, attempt)
		return
	}
	switch err := s.st.ConsumeChallenge(ctx, org.ID, c.ID, c.CodeHMAC, now.UTC()); {
	case errors.Is(err, store.ErrPrecondition):
		// Consumed by a concurrent verify, or its code replaced by a resend.
		if cur, gerr := s.st.GetChallenge(ctx, org.ID, c.ID); gerr == nil && !cur.ConsumedAt.IsZero() {
			// The right code all the same: it resets the count as the
			// success did.
			s.resetFailedAttempts(ctx, org, c)
			alreadyVerified(w)
			return
		}
		s.invalidCode(w, settings, attempt)
		return
	case err != nil:
		s.internal(w, "consume challenge", err)
		return
	}
	s.succeed(w, r, org, c, "verified")
}

// reserveAttempt counts this verification as a failed attempt of the user
// before any code is compared, or answers 429 too_many_attempts when
// maxFailedAttempts are already counted. A burst of parallel guesses so
// gets at most maxFailedAttempts of them compared per lockout window; the
// lockout check above only answers early. A correct code resets the count
// (succeed), so the reservation only stays for a wrong one. It returns the
// user's count with this attempt.
func (s *Service) reserveAttempt(w http.ResponseWriter, r *http.Request, org store.Org, c store.Challenge, settings store.OTPSettings, now time.Time) (int, bool) {
	ctx := r.Context()
	n, err := s.st.ReserveFailedAttempt(ctx, org.ID, c.UserID, settings.MaxFailedAttempts, now.UTC(), now.Add(-s.cfg.LockoutDuration).UTC())
	if errors.Is(err, store.ErrPrecondition) {
		_, last, ferr := s.st.FailedAttempts(ctx, org.ID, c.UserID)
		if ferr != nil {
			s.internal(w, "check lockout", ferr)
			return 0, false
		}
		s.tooManyAttempts(w, last.Add(s.cfg.LockoutDuration).Sub(now), true)
		return 0, false
	}
	if err != nil {
		s.internal(w, "count failed attempt", err)
		return 0, false
	}
	return n, true
}

// lockedOut answers 429 too_many_attempts when the user is locked out (or
// 500 when that cannot be told) and reports whether it answered.
// verification counts the refusal as a verification result.
func (s *Service) lockedOut(ctx context.Context, w http.ResponseWriter, orgID int64, userID string, max int, now time.Time, verification bool) bool {
	locked, wait, err := s.lockout(ctx, orgID, userID, max, now)
	if err != nil {
		s.internal(w, "check lockout", err)
		return true
	}
	if locked {
		s.tooManyAttempts(w, wait, verification)
	}
	return locked
}

func (s *Service) tooManyAttempts(w http.ResponseWriter, wait time.Duration, verification bool) {
	if verification {
		s.metrics.verifications.WithLabelValues("too_many_attempts").Inc()
	}
	retryAfter(w, wait)
	httpx.Error(w, http.StatusTooManyRequests, "too_many_attempts", "too many failed verifications for this user; retry later")
}

// succeed resets the user's failed attempts (the reserved one included)
// and answers 200.
func (s *Service) succeed(w http.ResponseWriter, r *http.Request, org store.Org, c store.Challenge, result string) {
	s.resetFailedAttempts(r.Context(), org, c)
	s.metrics.verifications.WithLabelValues(result).Inc()
	httpx.JSON(w, http.StatusOK, map[string]bool{"verified": true})
}

func (s *Service) resetFailedAttempts(ctx context.Context, org store.Org, c store.Challenge) {
	if err := s.st.ResetFailedAttempts(context.WithoutCancel(ctx), org.ID, c.UserID); err != nil {
		s.log.Error("resetting failed attempts failed", "org", org.Name, "err", err)
	}
}

// invalidCode answers 400 invalid_code for a wrong code whose attempt,
// the user's attempt-th (across challenges; resends never reset it), was
// reserved before the comparison.
func (s *Service) invalidCode(w http.ResponseWriter, settings store.OTPSettings, attempt int) {
	s.metrics.verifications.WithLabelValues("invalid_code").Inc()
	httpx.ErrorWith(w, http.StatusBadRequest, "invalid_code", "the code is not valid",
		map[string]any{"attemptsRemaining": max(0, settings.MaxFailedAttempts-attempt)})
}

// backlogged answers 503 delivery_backlog, with Retry-After, when every
// destination of the org is backed up: the OTP would likely expire before
// it could be delivered, and the caller can fall back at once.
func (s *Service) backlogged(ctx context.Context, w http.ResponseWriter, org store.Org) bool {
	if s.cfg.Backlog == nil {
		return false
	}
	over, wait := s.cfg.Backlog.Over(ctx, org.ID, org.Name)
	if !over {
		return false
	}
	retryAfter(w, wait)
	httpx.Error(w, http.StatusServiceUnavailable, "delivery_backlog", "every delivery destination of this organization is backed up; the OTP was not sent, retry later")
	return true
}
