package authcore

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/internal/ids"
	"github.com/otphub/otphub/smspolicy"
	"github.com/otphub/otphub/store"
)

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
// form with its calling code; msg names what is wrong.
func parseMobile(s string, settings store.OTPSettings) (n smspolicy.Number, msg string) {
	// The shape every event's sendTo has (event.ValidMobile); libphonenumber
	// then checks it is a valid number (it would otherwise accept vanity
	// letters) and its type.
	if !event.ValidMobile(s) {
		return n, "mobile: must be an E.164 number: + then the country calling code and number"
	}
	n, refusal := smspolicy.ScreenNumber(s, settings)
	if refusal != "" {
		return n, "mobile: " + refusal
	}
	return n, ""
}

// StartRequest starts a challenge. Start validates every field.
type StartRequest struct {
	Mobile      string // E.164
	UserID      string
	Application string // the application name the SMS template shows
	Locale      string // BCP 47; "" for the org default
	// IP is the address the per-IP budget counts ("" skips it).
	IP string
	// WebOTP ends the SMS with the WebOTP origin-bound line of otphub's
	// public host when the org enables WebOTP (the hosted prompt's pages
	// are on that origin; an API caller's are not).
	WebOTP bool
}

// ResendRequest resends a challenge's OTP: Locale, IP and WebOTP as in
// StartRequest (the challenge keeps none of them).
type ResendRequest struct {
	Locale string
	IP     string
	WebOTP bool
}

// ChallengeState is what a caller may know of a challenge.
type ChallengeState struct {
	ID               string
	UserID           string
	Mobile           string
	ExpiresAt        time.Time
	ResendsRemaining int
	// NextResendAt is when a resend is allowed (the resend interval after
	// the last send).
	NextResendAt time.Time
	Verified     bool
}

func (s *Service) state(c store.Challenge, settings store.OTPSettings) ChallengeState {
	return ChallengeState{
		ID: c.ID, UserID: c.UserID, Mobile: c.Mobile, ExpiresAt: c.ExpiresAt,
		ResendsRemaining: max(0, settings.MaxResends-c.Resends),
		NextResendAt:     c.LastSentAt.Add(time.Duration(settings.ResendIntervalSeconds) * time.Second),
		Verified:         !c.ConsumedAt.IsZero(),
	}
}

func invalidField(msg string) *Error { return refuse(http.StatusBadRequest, "invalid_field", msg) }

func parseLocale(l string) (string, error) {
	if l == "" {
		return "", nil
	}
	locale, ok := canonicalLocale(l)
	if !ok {
		return "", invalidField("locale: not a BCP 47 language tag (e.g. en, fr-CA)")
	}
	return locale, nil
}

func (s *Service) startChallenge(w http.ResponseWriter, r *http.Request) {
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
	ip, msg := s.limitIP(r, req.ClientIP)
	var (
		c   ChallengeState
		err error
	)
	if msg != "" {
		err = invalidField(msg)
	} else {
		c, err = s.Start(r.Context(), orgOf(r), StartRequest{Mobile: req.Mobile, UserID: req.UserID,
			Application: req.Application, Locale: req.Locale, IP: ip})
	}
	if err != nil {
		s.writeError(w, "start challenge", err)
		return
	}
	httpx.JSON(w, http.StatusCreated, challengeJSON{c.ID, c.ExpiresAt, c.ResendsRemaining})
}

// Start validates req, applies the lockout, back-pressure and send
// budgets, and sends a new OTP to req.Mobile: the event is durable in the
// log when it returns.
func (s *Service) Start(ctx context.Context, org store.Org, req StartRequest) (ChallengeState, error) {
	settings, err := s.Settings(ctx, org.ID)
	if err != nil {
		return ChallengeState{}, wrapf(err, "get settings")
	}
	number, msg := parseMobile(req.Mobile, settings)
	if msg == "" && !validText(req.UserID, maxUserIDChars) {
		msg = fmt.Sprintf("userId: required, 1 to %d characters, no control characters", maxUserIDChars)
	}
	if msg == "" && !validText(req.Application, maxApplicationChars) {
		msg = fmt.Sprintf("application: required, 1 to %d characters, no control characters", maxApplicationChars)
	}
	if msg != "" {
		return ChallengeState{}, invalidField(msg)
	}
	locale, err := parseLocale(req.Locale)
	if err != nil {
		return ChallengeState{}, err
	}
	now := s.cfg.Now()
	if err := s.checkBacklog(ctx, org); err != nil {
		return ChallengeState{}, err
	}
	release, err := s.admit(ctx, org, "start")
	if err != nil {
		return ChallengeState{}, err
	}
	defer release()
	mobile := number.E164
	code, err := newOTP(settings.NumericOnly, settings.Length)
	if err != nil {
		return ChallengeState{}, wrapf(err, "generate otp")
	}
	expiry := time.Duration(settings.ExpirySeconds) * time.Second
	body, err := s.messageBody(ctx, org, locale, req.Application, code, expiry, req.WebOTP && settings.WebOTP)
	if err != nil {
		return ChallengeState{}, wrapf(err, "render message")
	}
	c := store.Challenge{
		ID: ids.Ordered(), OrgID: org.ID, UserID: req.UserID, Mobile: mobile, CountryCode: number.CallingCode,
		Application: req.Application, EventID: ids.Ordered(), ExpiresAt: now.Add(expiry).UTC(),
		LastSentAt: now.UTC(), CreatedAt: now.UTC(),
	}
	c.CodeHMAC = s.codeHMAC(org.ID, c.ID, code)
	// The challenge is stored before the event is published so an SMS never
	// carries a code the store does not know. If publishing fails the
	// challenge is deleted at once: its id was never disclosed, its code
	// can never verify, and it does not count as sent in the statistics.
	// The same transaction refuses a user locked out by failed
	// verifications (before any budget is charged), charges the send
	// budgets (a budget it exhausts refuses the challenge) and marks the
	// event charged: the provider send path must not charge it again.
	lock := store.Lockout{Max: settings.MaxFailedAttempts, Since: now.Add(-s.cfg.LockoutDuration).UTC()}
	hits := append([]store.CounterHit{smspolicy.ChargedMark(org.ID, c.EventID, c.ExpiresAt)},
		smspolicy.Charges(org.ID, mobile, req.IP, s.cfg.Limits.ForOrg(settings), now)...)
	if err := s.st.CreateChallenge(ctx, c, lock, hits...); err != nil {
		if locked, ok := errors.AsType[*store.LockedOutError](err); ok {
			return ChallengeState{}, s.tooManyAttempts(locked.LastFailure.Add(s.cfg.LockoutDuration).Sub(now), false)
		}
		if over, ok := errors.AsType[*store.OverBudgetError](err); ok {
			return ChallengeState{}, s.overBudget(smspolicy.Refused(hits[over.Hit], now))
		}
		return ChallengeState{}, wrapf(err, "create challenge")
	}
	if err := s.publish(ctx, org, c.EventID, mobile, body, now, c.ExpiresAt); err != nil {
		s.log.Error("publishing the OTP event failed; challenge withdrawn", "org", org.Name, "challenge_id", c.ID, "err", err)
		if cerr := s.st.DeleteChallenge(context.WithoutCancel(ctx), org.ID, c.ID); cerr != nil {
			s.log.Error("withdrawing the challenge failed", "err", cerr)
		}
		return ChallengeState{}, refuseAfter(http.StatusServiceUnavailable, "log_unavailable", "the OTP could not be queued for delivery; start a new challenge", time.Second)
	}
	s.metrics.challengesStarted.Inc()
	return s.state(c, settings), nil
}

var errChallengeNotFound = refuse(http.StatusNotFound, "challenge_not_found", "no such challenge")

var errAlreadyVerified = refuse(http.StatusConflict, "already_verified", "the challenge was already verified")

// getChallenge reads the org's challenge id; unknown, malformed and other
// orgs' ids are all the same challenge_not_found.
func (s *Service) getChallenge(ctx context.Context, orgID int64, id string) (store.Challenge, error) {
	if _, err := uuid.Parse(id); err != nil || len(id) != 36 {
		return store.Challenge{}, errChallengeNotFound
	}
	c, err := s.st.GetChallenge(ctx, orgID, strings.ToLower(id))
	if errors.Is(err, store.ErrNotFound) {
		return store.Challenge{}, errChallengeNotFound
	}
	if err != nil {
		return store.Challenge{}, wrapf(err, "get challenge")
	}
	return c, nil
}

// Challenge returns the state of the org's challenge id.
func (s *Service) Challenge(ctx context.Context, org store.Org, id string) (ChallengeState, error) {
	c, err := s.getChallenge(ctx, org.ID, id)
	if err != nil {
		return ChallengeState{}, err
	}
	settings, err := s.Settings(ctx, org.ID)
	if err != nil {
		return ChallengeState{}, wrapf(err, "get settings")
	}
	return s.state(c, settings), nil
}

func (s *Service) resendChallenge(w http.ResponseWriter, r *http.Request) {
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
	if _, err := parseLocale(req.Locale); err != nil {
		s.writeError(w, "resend", err)
		return
	}
	ip, msg := s.limitIP(r, req.ClientIP)
	if msg != "" {
		s.writeError(w, "resend", invalidField(msg))
		return
	}
	c, err := s.Resend(r.Context(), orgOf(r), r.PathValue("id"), ResendRequest{Locale: req.Locale, IP: ip})
	if err != nil {
		s.writeError(w, "resend", err)
		return
	}
	httpx.JSON(w, http.StatusOK, challengeJSON{c.ID, c.ExpiresAt, c.ResendsRemaining})
}

// Resend sends a new OTP for the org's challenge id, which replaces the
// previous one, within the resend count and interval.
func (s *Service) Resend(ctx context.Context, org store.Org, id string, req ResendRequest) (ChallengeState, error) {
	locale, err := parseLocale(req.Locale)
	if err != nil {
		return ChallengeState{}, err
	}
	release, err := s.admit(ctx, org, "resend")
	if err != nil {
		return ChallengeState{}, err
	}
	defer release()
	c, err := s.getChallenge(ctx, org.ID, id)
	if err != nil {
		return ChallengeState{}, err
	}
	if !c.ConsumedAt.IsZero() {
		return ChallengeState{}, errAlreadyVerified
	}
	settings, err := s.Settings(ctx, org.ID)
	if err != nil {
		return ChallengeState{}, wrapf(err, "get settings")
	}
	now := s.cfg.Now()
	if err := s.checkLockout(ctx, org.ID, c.UserID, settings.MaxFailedAttempts, now, false); err != nil {
		return ChallengeState{}, err
	}
	if c.Resends >= settings.MaxResends {
		s.metrics.resends.WithLabelValues("limit_exceeded").Inc()
		return ChallengeState{}, refuse(http.StatusTooManyRequests, "resend_limit_exceeded", fmt.Sprintf("no resends left (%d allowed); start a new challenge", settings.MaxResends))
	}
	interval := time.Duration(settings.ResendIntervalSeconds) * time.Second
	if wait := c.LastSentAt.Add(interval).Sub(now); wait > 0 {
		s.metrics.resends.WithLabelValues("too_soon").Inc()
		return ChallengeState{}, refuseAfter(http.StatusTooManyRequests, "resend_too_soon", "the previous OTP was sent too recently", wait)
	}
	if err := s.checkBacklog(ctx, org); err != nil {
		s.metrics.resends.WithLabelValues("backlogged").Inc()
		return ChallengeState{}, err
	}
	code, err := newOTP(settings.NumericOnly, settings.Length)
	if err != nil {
		return ChallengeState{}, wrapf(err, "generate otp")
	}
	expiry := time.Duration(settings.ExpirySeconds) * time.Second
	expiresAt := now.Add(expiry).UTC()
	body, err := s.messageBody(ctx, org, locale, c.Application, code, expiry, req.WebOTP && settings.WebOTP)
	if err != nil {
		return ChallengeState{}, wrapf(err, "render message")
	}
	// Claim this resend's turn before sending anything: of concurrent
	// resends (a double click) one claims it and sends; the others answer
	// 429 and send nothing, so the user never holds an SMS whose code will
	// not verify. The previous OTP stays valid until the new one replaces it.
	sentAt := now.UTC()
	if err := s.st.ClaimResend(ctx, org.ID, c.ID, c.Resends, c.LastSentAt, sentAt); err != nil {
		return ChallengeState{}, s.resendRaced(ctx, org, c.ID, interval, err)
	}
	// giveBack undoes the claim when nothing is sent after all.
	giveBack := func() {
		if err := s.st.ClaimResend(context.WithoutCancel(ctx), org.ID, c.ID, c.Resends, sentAt, c.LastSentAt); err != nil {
			s.log.Warn("giving back a resend's turn failed; the next resend waits the resend interval", "org", org.Name, "err", err)
		}
	}
	// The send budgets are charged only by the resend that holds the turn,
	// so the losers of a double click cost the user nothing.
	if err := s.spend(ctx, org, settings, c.Mobile, req.IP, now); err != nil {
		giveBack()
		if AsError(err) != nil {
			s.metrics.resends.WithLabelValues("rate_limited").Inc()
		}
		return ChallengeState{}, err
	}
	// The event is published before the code is replaced: if the log is
	// down the turn is given back and nothing changes (the previous OTP
	// stays valid, no resend is used). spend charged this SMS: it is marked
	// so that the send path does not charge it again.
	jti := ids.Ordered()
	err = smspolicy.MarkCharged(ctx, s.st, org.ID, jti, expiresAt)
	if err == nil {
		err = s.publish(ctx, org, jti, c.Mobile, body, now, expiresAt)
	}
	if err != nil {
		giveBack()
		s.metrics.resends.WithLabelValues("failed").Inc()
		s.log.Error("publishing the resent OTP event failed", "org", org.Name, "err", err)
		return ChallengeState{}, refuseAfter(http.StatusServiceUnavailable, "log_unavailable", "the OTP could not be queued for delivery; the previous OTP stays valid", time.Second)
	}
	// Under the claim, only a verification (or, with no resend interval, a
	// later resend claiming after this one) can come between.
	err = s.st.ReplaceChallengeCode(ctx, org.ID, c.ID, c.Resends, s.codeHMAC(org.ID, c.ID, code), jti, expiresAt, sentAt)
	if err != nil {
		return ChallengeState{}, s.resendRaced(ctx, org, c.ID, interval, err)
	}
	s.metrics.resends.WithLabelValues("sent").Inc()
	c.Resends++
	c.ExpiresAt, c.LastSentAt = expiresAt, sentAt
	return s.state(c, settings), nil
}

// resendRaced explains a resend whose conditional write found the
// challenge changed: verified meanwhile, or another resend took the turn.
func (s *Service) resendRaced(ctx context.Context, org store.Org, id string, interval time.Duration, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound): // purged meanwhile
		return errChallengeNotFound
	case !errors.Is(err, store.ErrPrecondition):
		return wrapf(err, "resend")
	}
	if cur, gerr := s.st.GetChallenge(ctx, org.ID, id); gerr == nil && !cur.ConsumedAt.IsZero() {
		return errAlreadyVerified
	}
	s.metrics.resends.WithLabelValues("too_soon").Inc()
	return refuseAfter(http.StatusTooManyRequests, "resend_too_soon", "another resend of this challenge happened at the same time", interval)
}

func (s *Service) verifyChallenge(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Code       *string `json:"code"`
		BackupCode *string `json:"backupCode"`
	}
	if err := httpx.DecodeJSON(w, r, &req, 1<<10); err != nil {
		httpx.WriteDecodeError(w, err)
		return
	}
	var err error
	switch {
	case (req.Code == nil) == (req.BackupCode == nil):
		err = refuse(http.StatusBadRequest, "invalid_request", "give exactly one of code and backupCode")
	case req.Code != nil:
		err = s.Verify(r.Context(), orgOf(r), r.PathValue("id"), *req.Code)
	default:
		err = s.VerifyWithBackupCode(r.Context(), orgOf(r), r.PathValue("id"), *req.BackupCode)
	}
	if err != nil {
		s.writeError(w, "verify", err)
		return
	}
	httpx.JSON(w, http.StatusOK, map[string]bool{"verified": true})
}

func checkCode(field, code string) error {
	if code == "" || utf8.RuneCountInString(code) > maxCodeChars {
		return invalidField(fmt.Sprintf("%s: 1 to %d characters", field, maxCodeChars))
	}
	return nil
}

// openChallenge loads a challenge to verify and checks it can be: not
// verified yet, its user not locked out, not expired.
func (s *Service) openChallenge(ctx context.Context, org store.Org, id string) (store.Challenge, store.OTPSettings, time.Time, error) {
	c, err := s.getChallenge(ctx, org.ID, id)
	if err != nil {
		return c, store.OTPSettings{}, time.Time{}, err
	}
	if !c.ConsumedAt.IsZero() {
		return c, store.OTPSettings{}, time.Time{}, errAlreadyVerified
	}
	settings, err := s.Settings(ctx, org.ID)
	if err != nil {
		return c, settings, time.Time{}, wrapf(err, "get settings")
	}
	now := s.cfg.Now()
	if err := s.checkLockout(ctx, org.ID, c.UserID, settings.MaxFailedAttempts, now, true); err != nil {
		return c, settings, now, err
	}
	if !now.Before(c.ExpiresAt) {
		s.metrics.verifications.WithLabelValues("expired").Inc()
		return c, settings, now, refuse(http.StatusGone, "expired", "the OTP has expired; resend or start a new challenge")
	}
	return c, settings, now, nil
}

// Verify checks code against the org's challenge id and, when right,
// consumes the challenge. Every attempt counts against the user's lockout
// until a right one resets it.
func (s *Service) Verify(ctx context.Context, org store.Org, id, code string) error {
	if err := checkCode("code", code); err != nil {
		return err
	}
	release, err := s.admit(ctx, org, "verify")
	if err != nil {
		return err
	}
	defer release()
	c, settings, now, err := s.openChallenge(ctx, org, id)
	if err != nil {
		return err
	}
	attempt, err := s.reserveAttempt(ctx, org, c.UserID, settings, now)
	if err != nil {
		return err
	}
	if !hmacEqual(c.CodeHMAC, s.codeHMAC(org.ID, c.ID, normalizeCode(code))) {
		return s.invalidCode(settings, attempt)
	}
	switch err := s.st.ConsumeChallenge(ctx, org.ID, c.ID, c.CodeHMAC, now.UTC()); {
	case errors.Is(err, store.ErrPrecondition):
		// Consumed by a concurrent verify, or its code replaced by a resend.
		if cur, gerr := s.st.GetChallenge(ctx, org.ID, c.ID); gerr == nil && !cur.ConsumedAt.IsZero() {
			// The right code all the same: it resets the count as the
			// success did.
			s.resetFailedAttempts(ctx, org, c.UserID)
			return errAlreadyVerified
		}
		return s.invalidCode(settings, attempt)
	case err != nil:
		return wrapf(err, "consume challenge")
	}
	s.succeed(ctx, org, c.UserID, "verified")
	if s.cfg.OnVerified != nil && c.EventID != "" {
		s.cfg.OnVerified(context.WithoutCancel(ctx), org.ID, c.EventID)
	}
	return nil
}

// reserveAttempt counts this verification as a failed attempt of the user
// before any code is compared, or refuses with too_many_attempts when
// maxFailedAttempts are already counted. A burst of parallel guesses so
// gets at most maxFailedAttempts of them compared per lockout window; the
// lockout check before only answers early. A correct code resets the count
// (succeed), so the reservation only stays for a wrong one. It returns the
// user's count with this attempt.
func (s *Service) reserveAttempt(ctx context.Context, org store.Org, userID string, settings store.OTPSettings, now time.Time) (int, error) {
	n, err := s.st.ReserveFailedAttempt(ctx, org.ID, userID, settings.MaxFailedAttempts, now.UTC(), now.Add(-s.cfg.LockoutDuration).UTC())
	if errors.Is(err, store.ErrPrecondition) {
		_, last, ferr := s.st.FailedAttempts(ctx, org.ID, userID)
		if ferr != nil {
			return 0, wrapf(ferr, "check lockout")
		}
		return 0, s.tooManyAttempts(last.Add(s.cfg.LockoutDuration).Sub(now), true)
	}
	if err != nil {
		return 0, wrapf(err, "count failed attempt")
	}
	return n, nil
}

// checkLockout refuses with too_many_attempts when the user is locked out.
// verification counts the refusal as a verification result.
func (s *Service) checkLockout(ctx context.Context, orgID int64, userID string, max int, now time.Time, verification bool) error {
	locked, wait, err := s.lockout(ctx, orgID, userID, max, now)
	if err != nil {
		return wrapf(err, "check lockout")
	}
	if locked {
		return s.tooManyAttempts(wait, verification)
	}
	return nil
}

func (s *Service) tooManyAttempts(wait time.Duration, verification bool) error {
	if verification {
		s.metrics.verifications.WithLabelValues("too_many_attempts").Inc()
	}
	return refuseAfter(http.StatusTooManyRequests, "too_many_attempts", "too many failed verifications for this user; retry later", wait)
}

// succeed resets the user's failed attempts (the reserved one included)
// and counts the result.
func (s *Service) succeed(ctx context.Context, org store.Org, userID, result string) {
	s.resetFailedAttempts(ctx, org, userID)
	s.metrics.verifications.WithLabelValues(result).Inc()
}

func (s *Service) resetFailedAttempts(ctx context.Context, org store.Org, userID string) {
	if err := s.st.ResetFailedAttempts(context.WithoutCancel(ctx), org.ID, userID); err != nil {
		s.log.Error("resetting failed attempts failed", "org", org.Name, "err", err)
	}
}

// invalidCode refuses a wrong code whose attempt, the user's attempt-th
// (across challenges; resends never reset it), was reserved before the
// comparison.
func (s *Service) invalidCode(settings store.OTPSettings, attempt int) error {
	s.metrics.verifications.WithLabelValues("invalid_code").Inc()
	e := refuse(http.StatusBadRequest, "invalid_code", "the code is not valid")
	e.AttemptsRemaining = max(0, settings.MaxFailedAttempts-attempt)
	return e
}

// admit takes an admission slot for org's operation (Config.Admission),
// or refuses with overloaded when none freed in time.
func (s *Service) admit(ctx context.Context, org store.Org, operation string) (release func(), err error) {
	if s.cfg.Admission == nil {
		return func() {}, nil
	}
	release, err = s.cfg.Admission.Enter(ctx, strconv.FormatInt(org.ID, 10))
	if err == nil {
		return release, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	s.metrics.overloaded.WithLabelValues(operation).Inc()
	return nil, refuseAfter(http.StatusServiceUnavailable, "overloaded", "otphub is doing as much as it can; the request was not started, retry later", time.Second)
}

// checkBacklog refuses with delivery_backlog, with Retry-After, when every
// destination of the org is backed up or its events wait in the log
// (backlog.Gate): the OTP would likely arrive late or expire before it
// could be delivered, and the caller can fall back at once.
func (s *Service) checkBacklog(ctx context.Context, org store.Org) error {
	if s.cfg.Backlog == nil {
		return nil
	}
	over, wait := s.cfg.Backlog.Over(ctx, org.ID, org.Name)
	if !over {
		return nil
	}
	return refuseAfter(http.StatusServiceUnavailable, "delivery_backlog", "this organization's deliveries are backed up (at every destination, or in the delivery log); the OTP was not sent, retry later", wait)
}
