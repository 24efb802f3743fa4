// Package authcore owns the SMS OTP authenticator (docs/auth.md): per-org
// settings and message templates, the challenge lifecycle (start, resend,
// verify), failed-attempt lockout, backup codes, abuse limits, and its
// HTTP API under /api/v1/orgs/{org}/…. Each OTP sent is an
// SmsOtpNotificationEvent appended to the log before the API answers.
// Decisions are written down in docs/auth.md.
package authcore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/internal/orgs"
	"github.com/otphub/otphub/smspolicy"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/templates"
)

// Service is the SMS OTP authenticator.
type Service struct {
	cfg     Config
	st      store.Store
	pub     bus.Publisher
	log     *slog.Logger
	metrics *metrics
	// webOTPHost is the host of PublicURL, the origin WebOTP binds to.
	webOTPHost string
}

// New returns a Service storing state in st and publishing OTP events to pub.
func New(cfg Config, st store.Store, pub bus.Publisher, logger *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if st == nil || pub == nil {
		return nil, errors.New("authcore: nil store or publisher")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(cfg.PublicURL) // checked by defaults
	return &Service{cfg: cfg, st: st, pub: pub, log: logger.With("component", "authcore"), metrics: m, webOTPHost: u.Hostname()}, nil
}

// Register adds the SMS OTP routes to mux. Scopes: challenges, backup
// codes (generate, count, revoke, verify) and reading settings need otp; changing settings and
// templates, and reading the statistics, needs admin (which implies otp).
func (s *Service) Register(mux httpx.Mux, v access.Verifier) {
	route := func(pattern, scope string, h http.HandlerFunc) {
		mux.Handle(pattern, orgs.Scoped(v, scope, s.st, s.log)(h))
	}
	const base = "/api/v1/orgs/{org}"
	route("GET "+base+"/sms-otp/settings", access.ScopeOTP, s.getSettings)
	route("PUT "+base+"/sms-otp/settings", access.ScopeAdmin, s.putSettings)
	route("GET "+base+"/sms-otp/templates", access.ScopeAdmin, s.listTemplates)
	route("GET "+base+"/sms-otp/templates/{locale}", access.ScopeAdmin, s.getTemplate)
	route("PUT "+base+"/sms-otp/templates/{locale}", access.ScopeAdmin, s.putTemplate)
	route("DELETE "+base+"/sms-otp/templates/{locale}", access.ScopeAdmin, s.deleteTemplate)
	route("POST "+base+"/sms-otp/challenges", access.ScopeOTP, s.startChallenge)
	route("POST "+base+"/sms-otp/challenges/{id}/resend", access.ScopeOTP, s.resendChallenge)
	route("POST "+base+"/sms-otp/challenges/{id}/verify", access.ScopeOTP, s.verifyChallenge)
	route("GET "+base+"/sms-otp/stats", access.ScopeAdmin, s.getStats)
	route("POST "+base+"/users/{userId}/backup-codes", access.ScopeOTP, s.generateBackupCodes)
	route("GET "+base+"/users/{userId}/backup-codes", access.ScopeOTP, s.countBackupCodes)
	route("DELETE "+base+"/users/{userId}/backup-codes", access.ScopeOTP, s.revokeBackupCodes)
	route("POST "+base+"/users/{userId}/backup-codes/verify", access.ScopeOTP, s.verifyUserBackupCode)
}

// Settings returns the org's SMS OTP settings, or the defaults.
func (s *Service) Settings(ctx context.Context, orgID int64) (store.OTPSettings, error) {
	st, err := s.st.GetOTPSettings(ctx, orgID)
	if errors.Is(err, store.ErrNotFound) {
		st = s.cfg.DefaultSettings
		st.OrgID = orgID
		return st, nil
	}
	return st, err
}

// lockout reports whether userID is locked out by failed verifications,
// and for how long. Failures stop counting LockoutDuration after the last
// one; such a count is only read as 0 here (the next reservation starts it
// over atomically: deleting it here could erase a concurrent reservation).
func (s *Service) lockout(ctx context.Context, orgID int64, userID string, max int, now time.Time) (locked bool, wait time.Duration, err error) {
	n, last, err := s.st.FailedAttempts(ctx, orgID, userID)
	if err != nil || n == 0 {
		return false, 0, err
	}
	if until := last.Add(s.cfg.LockoutDuration); now.Before(until) && n >= max {
		return true, until.Sub(now), nil
	}
	return false, 0, nil
}

// spend charges one send to the number, IP and org budgets (the org's
// own, within the server's ceilings); the first one exhausted refuses
// with rate_limited until its window ends.
func (s *Service) spend(ctx context.Context, org store.Org, settings store.OTPSettings, mobile, ip string, now time.Time) error {
	scope, retry, err := smspolicy.Spend(ctx, s.st, org.ID, mobile, ip, s.cfg.Limits.ForOrg(settings), now)
	if err != nil || scope == "" {
		return err
	}
	return s.overBudget(scope, retry)
}

// overBudget is the refusal of a send whose scope budget is exhausted
// until retry from now.
func (s *Service) overBudget(scope string, retry time.Duration) error {
	s.metrics.sendLimited.WithLabelValues(scope).Inc()
	return refuseAfter(http.StatusTooManyRequests, "rate_limited", "too many SMS sends for this "+scope+"; retry later", retry)
}

// limitIP is the key the per-IP limit counts: clientIP, the end user's
// address a login server passes in the body (it is the caller, so without
// it all its users would share one budget), else the caller's address.
// msg says what is wrong with a clientIP that is not an IP address.
func (s *Service) limitIP(r *http.Request, clientIP string) (ip, msg string) {
	if clientIP == "" {
		return httpx.ClientIP(r, s.cfg.TrustProxyHeaders), ""
	}
	addr := net.ParseIP(clientIP)
	if addr == nil {
		return "", "clientIp: not an IP address (e.g. 203.0.113.7 or 2001:db8::1)"
	}
	return httpx.LimitKeyIP(addr), ""
}

// messageBody renders the OTP message: the org's override for the locale,
// its base language, or its default (""), else the built-in default. With
// webOTP it ends with the WebOTP origin-bound line of otphub's public host
// (WICG WebOTP: the last line, "@host #code").
func (s *Service) messageBody(ctx context.Context, org store.Org, locale, application, code string, expiry time.Duration, webOTP bool) (string, error) {
	overrides, err := s.st.ListMessageTemplates(ctx, org.ID)
	if err != nil {
		return "", fmt.Errorf("list templates: %w", err)
	}
	body := ""
	candidates := []string{locale}
	if base, _, ok := strings.Cut(locale, "-"); ok {
		candidates = append(candidates, base)
	}
	candidates = append(candidates, "")
pick:
	for _, want := range candidates {
		for _, t := range overrides {
			if strings.EqualFold(t.Locale, want) {
				body = t.Body
				break pick
			}
		}
	}
	if body == "" {
		body = templates.Default(locale)
	}
	msg, err := templates.Render(body, templates.Vars{
		Application:   application,
		OTP:           code,
		Org:           org.Name,
		ExpiryMinutes: templates.Minutes(expiry),
	})
	if err != nil || !webOTP {
		return msg, err
	}
	return msg + "\n\n@" + s.webOTPHost + " #" + code, nil
}

// publish appends the OTP event and returns once it is durable. The
// caller has marked the event charged (smspolicy.ChargedMark or
// MarkCharged).
// jti is the event's ID: the challenge keeps it, so a verification can be
// related to the SMS that carried the code.
func (s *Service) publish(ctx context.Context, org store.Org, jti, mobile, body string, now, expiresAt time.Time) error {
	ev := &event.SmsOtpNotificationEvent{
		Issuer:           s.cfg.PublicURL,
		ID:               jti,
		IssuedAt:         now,
		Audience:         event.TopicURL(s.cfg.PublicURL, org.Name),
		OrganizationID:   org.ID,
		OrganizationName: org.Name,
		SendTo:           mobile,
		MessageBody:      body,
		ExpiresAt:        expiresAt,
	}
	if err := ev.Validate(); err != nil {
		return err
	}
	key, headers, value, err := event.EncodeBinary(ev)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	if err := s.pub.Publish(ctx, bus.NotificationsTopic, bus.Message{Key: key, Value: value, Headers: headers}); err != nil {
		s.metrics.publishFailures.Inc()
		return err
	}
	s.metrics.eventsPublished.Inc()
	return nil
}

func (s *Service) internal(w http.ResponseWriter, what string, err error) {
	s.log.Error(what+" failed", "err", err)
	httpx.Error(w, http.StatusInternalServerError, "internal", "internal error")
}

func orgOf(r *http.Request) store.Org {
	o, _ := orgs.From(r.Context())
	return o
}
