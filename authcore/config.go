package authcore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/otphub/otphub/smspolicy"
	"github.com/otphub/otphub/store"
)

// Limit is a fixed-window budget: at most Max sends per Window.
type Limit = smspolicy.Limit

// Limits are the abuse (SMS pumping) budgets for sends: challenge starts and
// resends both count. They are the server-wide ceilings: an org may set
// lower ones of its own (maxSendsPerNumber, …). Keys are scoped by org so
// one tenant cannot spend another's budget.
type Limits = smspolicy.Limits

// DefaultLimits are what a zero Limit (Max 0, Window 0) of Config.Limits
// takes.
var DefaultLimits = smspolicy.DefaultLimits

// BacklogGate tells whether an org's next event should be refused because
// every destination it would go to is backed up, and how long to wait
// before trying again.
type BacklogGate interface {
	Over(ctx context.Context, orgID int64, orgName string) (bool, time.Duration)
}

// Admission bounds the requests doing their store and log work at once
// (admit.Gate): Enter waits a bounded time for a slot, fairly across keys
// (orgs), and fails when none freed in time.
type Admission interface {
	Enter(ctx context.Context, key string) (release func(), err error)
}

// Config configures the Service.
type Config struct {
	// PublicURL is otphub's public base URL: the events' iss and the base of
	// their aud (the topic URL). Required.
	PublicURL string
	// Backlog, if set, refuses an org's sends (503 delivery_backlog) while
	// every one of its destinations is backed up (backlog.Gate).
	Backlog BacklogGate
	// Admission, if set, bounds the challenge starts, resends and
	// verifications doing their work at once; one it cannot admit in time
	// is refused (503 overloaded, Retry-After), so an overloaded store
	// sheds what it cannot do instead of queueing every request until
	// all are late.
	Admission Admission
	// HMACKey keys the OTP and backup code HMACs; at least 32 bytes.
	// Required. Changing it invalidates every pending OTP and backup code.
	HMACKey []byte
	// DefaultSettings apply to orgs that never saved settings. Zero value:
	// expiry 300 s, numeric, length 6, 3 resends, 30 s resend interval,
	// 5 failed attempts, backup codes off, every country allowed.
	DefaultSettings store.OTPSettings
	// MaxExpiry caps the expirySeconds setting. Default 10 min.
	MaxExpiry time.Duration
	// LockoutDuration is how long a user stays locked out after
	// maxFailedAttempts failed verifications; failures also stop counting
	// this long after the last one. Default 15 min.
	LockoutDuration time.Duration
	// Limits are the send budgets.
	Limits Limits
	// TrustProxyHeaders makes the client IP of the per-IP limit the
	// right-most address of X-Forwarded-For (the one the trusted proxy in
	// front of otphub saw) instead of the TCP peer. Default false.
	TrustProxyHeaders bool
	// PublishTimeout bounds how long a request waits for the log to make
	// an event durable before answering 503. Default 10 s.
	PublishTimeout time.Duration
	// OnVerified, if set, is told the org and event jti of every OTP
	// verified with its code (receipts counts conversion by provider). It
	// runs after the answer is decided and must not block for long.
	OnVerified func(ctx context.Context, orgID int64, eventID string)
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// BuiltinSettings are the settings an org has until it saves its own.
var BuiltinSettings = store.OTPSettings{
	ExpirySeconds:         300,
	NumericOnly:           true,
	Length:                6,
	MaxResends:            3,
	ResendIntervalSeconds: 30,
	MaxFailedAttempts:     5,
	BackupCodesEnabled:    false,
}

func (c *Config) defaults() error {
	if c.PublicURL == "" {
		return errors.New("authcore: Config.PublicURL is required")
	}
	if u, err := url.Parse(c.PublicURL); err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("authcore: Config.PublicURL %q is not an absolute URL", c.PublicURL)
	}
	if len(c.HMACKey) < 32 {
		return errors.New("authcore: Config.HMACKey must be at least 32 bytes")
	}
	if c.MaxExpiry <= 0 {
		c.MaxExpiry = 10 * time.Minute
	}
	if c.MaxExpiry < time.Second {
		return errors.New("authcore: Config.MaxExpiry must be at least 1s")
	}
	if c.LockoutDuration <= 0 {
		c.LockoutDuration = 15 * time.Minute
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.Limits = c.Limits.WithDefaults()
	if c.DefaultSettings.Length == 0 {
		c.DefaultSettings = BuiltinSettings
	}
	if f, msg := validateSettings(c.DefaultSettings, c.MaxExpiry, c.Limits); f != "" {
		return fmt.Errorf("authcore: Config.DefaultSettings.%s: %s", f, msg)
	}
	return nil
}

const maxCountryCodes = 300

// validateSettings returns the JSON name of the first invalid field and why.
func validateSettings(s store.OTPSettings, maxExpiry time.Duration, ceilings Limits) (field, msg string) {
	maxSecs := int(maxExpiry / time.Second)
	switch {
	case s.ExpirySeconds < 1 || s.ExpirySeconds > maxSecs:
		return "expirySeconds", fmt.Sprintf("must be between 1 and %d", maxSecs)
	case s.Length < 4 || s.Length > 10:
		return "length", "must be between 4 and 10"
	case s.MaxResends < 0 || s.MaxResends > 10:
		return "maxResends", "must be between 0 and 10"
	case s.ResendIntervalSeconds < 0 || s.ResendIntervalSeconds > 3600:
		return "resendIntervalSeconds", "must be between 0 and 3600"
	case s.MaxFailedAttempts < 1 || s.MaxFailedAttempts > 100:
		return "maxFailedAttempts", "must be between 1 and 100"
	case len(s.AllowedCountryCodes) > maxCountryCodes:
		return "allowedCountryCodes", fmt.Sprintf("at most %d entries", maxCountryCodes)
	}
	supported := phonenumbers.GetSupportedCallingCodes()
	for _, cc := range s.AllowedCountryCodes {
		if !supported[cc] {
			return "allowedCountryCodes", fmt.Sprintf("%d is not a country calling code", cc)
		}
	}
	for _, t := range s.AllowedNumberTypes {
		if !smspolicy.ValidNumberType(t) {
			return "allowedNumberTypes", fmt.Sprintf("%q is not a number type; one of %s", t, strings.Join(smspolicy.NumberTypes(), ", "))
		}
	}
	for _, l := range []struct {
		field string
		v     int
		c     Limit
	}{
		{"maxSendsPerNumber", s.SendLimitPerNumber, ceilings.PerNumber},
		{"maxSendsPerIp", s.SendLimitPerIP, ceilings.PerIP},
		{"maxSendsPerOrg", s.SendLimitPerOrg, ceilings.PerOrg},
	} {
		if msg := smspolicy.ValidateOrgLimit(l.v, l.c); msg != "" {
			return l.field, msg
		}
	}
	return "", ""
}
