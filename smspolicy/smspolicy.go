// Package smspolicy is the one place an org's SMS policy is decided, for
// every SMS otphub sends whatever produced it (an OTP challenge, a resend,
// a hub publish, a replay): which numbers may receive one (the org's
// country allow-list and number types, screened with libphonenumber) and
// the send budgets (per number, per client IP, per org), which are per-org
// settings within server-wide ceilings.
//
// Budgets are fixed-window counters in the store (store.OTP.HitCounter),
// keyed by org, so one tenant never spends another's, and shared by every
// replica. An event is charged once: authcore charges a challenge's SMS
// when it is requested (and answers 429 there) and marks the event
// charged; the provider send path charges whatever is not marked (hub
// publishes), once per event however many attempts or fallbacks it takes.
// A replay of an SMS already delivered is a new send and is charged again.
package smspolicy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
)

// Limit is a fixed-window budget: at most Max sends per Window.
type Limit struct {
	// Max sends per window; 0 takes the default, negative disables.
	Max int
	// Window is the fixed window length.
	Window time.Duration
}

// Limits are the send budgets. Keys are scoped by org so one tenant cannot
// spend another's budget.
type Limits struct {
	// PerNumber limits sends to one mobile number. Default 10 per hour.
	PerNumber Limit
	// PerIP limits sends for one client IP (challenge starts and resends
	// only: a hub publish has no end-user address). Default 100 per 10 min.
	PerIP Limit
	// PerOrg limits every send of one org. Default 1000 per minute.
	PerOrg Limit
}

// DefaultLimits are what a zero Limit (Max 0, Window 0) takes.
var DefaultLimits = Limits{
	PerNumber: Limit{Max: 10, Window: time.Hour},
	PerIP:     Limit{Max: 100, Window: 10 * time.Minute},
	PerOrg:    Limit{Max: 1000, Window: time.Minute},
}

// WithDefaults fills zero fields from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	set := func(l *Limit, def Limit) {
		if l.Max == 0 {
			l.Max = def.Max
		}
		if l.Window <= 0 {
			l.Window = def.Window
		}
	}
	set(&l.PerNumber, DefaultLimits.PerNumber)
	set(&l.PerIP, DefaultLimits.PerIP)
	set(&l.PerOrg, DefaultLimits.PerOrg)
	return l
}

// ForOrg returns the budgets of an org with settings s under the
// server-wide ceilings (after WithDefaults): an org's own value replaces
// the ceiling's Max when set (it was validated to lie within it).
func (l Limits) ForOrg(s store.OTPSettings) Limits {
	own := func(c Limit, v int) Limit {
		if v > 0 && (c.Max < 0 || v < c.Max) {
			c.Max = v
		}
		return c
	}
	return Limits{
		PerNumber: own(l.PerNumber, s.SendLimitPerNumber),
		PerIP:     own(l.PerIP, s.SendLimitPerIP),
		PerOrg:    own(l.PerOrg, s.SendLimitPerOrg),
	}
}

// ValidateOrgLimit checks an org's own budget v against its ceiling c:
// 0 (the ceiling) or from 1 to c.Max (-1 too when the ceiling is
// unlimited). msg says what is wrong.
func ValidateOrgLimit(v int, c Limit) (msg string) {
	switch {
	case v == -1 && c.Max < 0: // what GET shows for an unlimited ceiling
	case v < 0:
		return "must not be negative (0 is the server's limit)"
	case c.Max >= 0 && v > c.Max:
		return fmt.Sprintf("must be at most %d, the server's limit per %s (0 is that limit)", c.Max, c.Window)
	}
	return ""
}

// Number types an org may allow (libphonenumber's, in snake case).
const (
	TypeMobile            = "mobile"
	TypeFixedLineOrMobile = "fixed_line_or_mobile"
	TypeFixedLine         = "fixed_line"
	TypeTollFree          = "toll_free"
	TypePremiumRate       = "premium_rate"
	TypeSharedCost        = "shared_cost"
	TypeVoIP              = "voip"
	TypePersonalNumber    = "personal_number"
	TypePager             = "pager"
	TypeUAN               = "uan"
	TypeVoicemail         = "voicemail"
	TypeUnknown           = "unknown"
)

// DefaultNumberTypes is the policy of an org that chose none: mobile
// numbers, and those libphonenumber cannot tell from fixed lines (most of
// North America's). Premium-rate, toll-free and fixed-line numbers are SMS
// pumping's favourite targets.
var DefaultNumberTypes = []string{TypeMobile, TypeFixedLineOrMobile}

var numberTypes = map[phonenumbers.PhoneNumberType]string{
	phonenumbers.MOBILE:               TypeMobile,
	phonenumbers.FIXED_LINE_OR_MOBILE: TypeFixedLineOrMobile,
	phonenumbers.FIXED_LINE:           TypeFixedLine,
	phonenumbers.TOLL_FREE:            TypeTollFree,
	phonenumbers.PREMIUM_RATE:         TypePremiumRate,
	phonenumbers.SHARED_COST:          TypeSharedCost,
	phonenumbers.VOIP:                 TypeVoIP,
	phonenumbers.PERSONAL_NUMBER:      TypePersonalNumber,
	phonenumbers.PAGER:                TypePager,
	phonenumbers.UAN:                  TypeUAN,
	phonenumbers.VOICEMAIL:            TypeVoicemail,
	phonenumbers.UNKNOWN:              TypeUnknown,
}

// ValidNumberType reports whether t is one of the Type* names.
func ValidNumberType(t string) bool {
	for _, name := range numberTypes {
		if name == t {
			return true
		}
	}
	return false
}

// NumberTypes lists the Type* names, sorted.
func NumberTypes() []string {
	out := make([]string, 0, len(numberTypes))
	for _, name := range numberTypes {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// NumberType is libphonenumber's type of a valid number.
func NumberType(num *phonenumbers.PhoneNumber) string {
	return typeName(phonenumbers.GetNumberType(num))
}

func typeName(t phonenumbers.PhoneNumberType) string {
	if name, ok := numberTypes[t]; ok {
		return name
	}
	return TypeUnknown
}

// Screen checks a number the org's settings s would send an SMS to: a
// valid E.164 number, of an allowed country calling code and number type.
// It returns the number in E.164 form, or why it is refused (a sentence
// that names the number's country code or type, never its digits).
func Screen(number string, s store.OTPSettings) (e164, refusal string) {
	n, refusal := ScreenNumber(number, s)
	return n.E164, refusal
}

// Number is a number Screen accepted.
type Number struct {
	E164 string
	// CallingCode is its ITU country calling code (as CallingCode gives it).
	CallingCode int
}

// ScreenNumber is Screen, also giving the number's calling code, from the
// one parse.
func ScreenNumber(number string, s store.OTPSettings) (n Number, refusal string) {
	if !strings.HasPrefix(number, "+") || len(number) > 16 {
		return Number{}, "not an E.164 number"
	}
	num, err := phonenumbers.Parse(number, "")
	if err != nil {
		return Number{}, "not a valid phone number"
	}
	// A number is valid exactly when its type is known (IsValidNumber is
	// GetNumberType != UNKNOWN over the same metadata): one pass over the
	// region's patterns instead of two, on every challenge start.
	t := phonenumbers.GetNumberType(num)
	if t == phonenumbers.UNKNOWN {
		return Number{}, "not a valid phone number"
	}
	typ := typeName(t)
	cc := int(num.GetCountryCode())
	if len(s.AllowedCountryCodes) > 0 && !slices.Contains(s.AllowedCountryCodes, cc) {
		return Number{}, fmt.Sprintf("country calling code +%d is not allowed for this organization", cc)
	}
	allowed := s.AllowedNumberTypes
	if len(allowed) == 0 {
		allowed = DefaultNumberTypes
	}
	if !slices.Contains(allowed, typ) {
		return Number{}, fmt.Sprintf("%s numbers are not allowed for this organization (allowed: %s)", strings.ReplaceAll(typ, "_", "-"), strings.Join(allowed, ", "))
	}
	// A valid number's calling code has a region (CallingCode's 0 is for
	// numbers libphonenumber does not know, which are never valid).
	return Number{E164: phonenumbers.Format(num, phonenumbers.E164), CallingCode: cc}, ""
}

// CallingCode returns the ITU country calling code of an E.164 number, 0
// when it has none libphonenumber knows: what the store keeps of a
// number for statistics and metrics (never its other digits).
func CallingCode(e164 string) int {
	n, err := phonenumbers.Parse(e164, "")
	if err != nil {
		return 0
	}
	cc := int(n.GetCountryCode())
	if phonenumbers.GetRegionCodeForCountryCode(cc) == phonenumbers.UNKNOWN_REGION {
		return 0
	}
	return cc
}

// Counter is the store's fixed-window counter (store.OTP.HitCounter).
type Counter interface {
	HitCounter(ctx context.Context, key string, windowStart, expiresAt time.Time) (int64, error)
}

// Budget scopes, as Spend reports them.
const (
	ScopeNumber = "number"
	ScopeIP     = "ip"
	ScopeOrg    = "org"
)

// Spend charges one send to the number, IP (skipped when ip is "") and
// org budgets of l; the first one exhausted is returned with how long
// until its window ends. Every budget before it was charged.
func Spend(ctx context.Context, c Counter, orgID int64, mobile, ip string, l Limits, now time.Time) (scope string, retry time.Duration, err error) {
	for _, h := range Charges(orgID, mobile, ip, l, now) {
		n, err := c.HitCounter(ctx, h.Key, h.WindowStart, h.ExpiresAt)
		if err != nil {
			return "", 0, fmt.Errorf("count %s sends: %w", scopeOf(h), err)
		}
		if n > h.Max {
			scope, retry := Refused(h, now)
			return scope, retry, nil
		}
	}
	return "", 0, nil
}

// Charges are the counter hits one send makes against the number, IP
// (skipped when ip is "") and org budgets of l, in that order, each with
// its budget as Max: what Spend makes one by one, and what a write that
// makes them in its own transaction takes (store.Store.CreateChallenge).
func Charges(orgID int64, mobile, ip string, l Limits, now time.Time) []store.CounterHit {
	org := strconv.FormatInt(orgID, 10)
	checks := []struct {
		key string
		l   Limit
	}{
		{scopeNumber + org + ":" + mobile, l.PerNumber},
		{scopeIP + org + ":" + ip, l.PerIP},
		{scopeOrg + org, l.PerOrg},
	}
	if ip == "" {
		checks = slices.Delete(checks, 1, 2)
	}
	hits := make([]store.CounterHit, 0, len(checks))
	for _, ch := range checks {
		if ch.l.Max < 0 {
			continue
		}
		start := now.Truncate(ch.l.Window)
		// Max is at least 1 here (WithDefaults); a 0 must not read as the
		// store's "no limit".
		hits = append(hits, store.CounterHit{Key: ch.key, WindowStart: start, ExpiresAt: start.Add(ch.l.Window), Max: int64(max(ch.l.Max, 1))})
	}
	return hits
}

// Key prefixes of the budget counters, by scope.
const (
	scopeNumber = "otp-number:"
	scopeIP     = "otp-ip:"
	scopeOrg    = "otp-org:"
)

// scopeOf is the scope (ScopeNumber, ScopeIP, ScopeOrg) of one of Charges'
// hits.
func scopeOf(h store.CounterHit) string {
	switch {
	case strings.HasPrefix(h.Key, scopeNumber):
		return ScopeNumber
	case strings.HasPrefix(h.Key, scopeIP):
		return ScopeIP
	}
	return ScopeOrg
}

// Refused is the scope of one of Charges' hits that went over its budget,
// and how long until its window ends.
func Refused(h store.CounterHit, now time.Time) (scope string, retry time.Duration) {
	return scopeOf(h), h.ExpiresAt.Sub(now)
}

// chargedKey is the counter that records that an event's SMS was charged.
func chargedKey(orgID int64, eventID string) string {
	return "sms-charged:" + strconv.FormatInt(orgID, 10) + ":" + eventID
}

// markWindow is the one window of charged-event markers: they are keyed by
// event ID alone and purged after the event expires.
var markWindow = time.Unix(0, 0).UTC()

// MarkCharged records that the SMS of event eventID (which expires at
// expiresAt) was charged already, so ChargeOnce does not charge it again.
func MarkCharged(ctx context.Context, c Counter, orgID int64, eventID string, expiresAt time.Time) error {
	h := ChargedMark(orgID, eventID, expiresAt)
	_, err := c.HitCounter(ctx, h.Key, h.WindowStart, h.ExpiresAt)
	return err
}

// ChargedMark is MarkCharged as a counter hit for another write to make
// in its own transaction (store.Store.CreateChallenge).
func ChargedMark(orgID int64, eventID string, expiresAt time.Time) store.CounterHit {
	return store.CounterHit{Key: chargedKey(orgID, eventID), WindowStart: markWindow, ExpiresAt: expiresAt.Add(time.Hour)}
}

// ChargeOnce charges the SMS of event eventID to mobile against the number
// and org budgets of l unless it was charged before (MarkCharged, or an
// earlier attempt of the same event: a retry or a fallback provider costs
// nothing more). It returns the exhausted scope, if any.
func ChargeOnce(ctx context.Context, c Counter, orgID int64, eventID, mobile string, expiresAt time.Time, l Limits, now time.Time) (scope string, err error) {
	n, err := c.HitCounter(ctx, chargedKey(orgID, eventID), markWindow, expiresAt.Add(time.Hour))
	if err != nil {
		return "", fmt.Errorf("mark the event charged: %w", err)
	}
	if n > 1 {
		return "", nil
	}
	scope, _, err = Spend(ctx, c, orgID, mobile, "", l, now)
	return scope, err
}

// Settings reads an org's SMS OTP settings (store.OTP); ErrNotFound means
// the org never saved any, and the built-in policy applies.
type Settings interface {
	Counter
	GetOTPSettings(ctx context.Context, orgID int64) (store.OTPSettings, error)
}

// Guard applies the policy on the send paths other than a challenge's:
// the provider send path (CheckSend) and the replay of an SMS (Replay).
// It reads an org's settings on every call: the app's store serves them
// from memory (store.CacheSettings).
type Guard struct {
	st       Settings
	ceilings Limits
	now      func() time.Time
}

// NewGuard returns the guard of the server-wide ceilings (defaults filled).
// now is the clock (nil: time.Now).
func NewGuard(st Settings, ceilings Limits, now func() time.Time) *Guard {
	if now == nil {
		now = time.Now
	}
	return &Guard{st: st, ceilings: ceilings.WithDefaults(), now: now}
}

func (g *Guard) settings(ctx context.Context, orgID int64) (store.OTPSettings, error) {
	s, err := g.st.GetOTPSettings(ctx, orgID)
	if errors.Is(err, store.ErrNotFound) {
		return store.OTPSettings{OrgID: orgID}, nil
	}
	return s, err
}

// CheckSend decides whether a built-in provider may send the SMS of ev:
// its number must pass Screen, and the event is charged to the number and
// org budgets unless it was before (ChargeOnce: authcore's challenges, an
// earlier attempt, a replay charged by Replay). refusal is "" when it may,
// else a sentence for the attempt log (never the number).
func (g *Guard) CheckSend(ctx context.Context, ev *event.SmsOtpNotificationEvent) (refusal string, err error) {
	s, err := g.settings(ctx, ev.OrganizationID)
	if err != nil {
		return "", err
	}
	e164, why := Screen(ev.SendTo, s)
	if why != "" {
		return "refused by the organization's SMS policy: " + why, nil
	}
	now := g.now()
	scope, err := ChargeOnce(ctx, g.st, ev.OrganizationID, ev.ID, e164, later(ev.Expiry(), now), g.ceilings.ForOrg(s), now)
	if err != nil || scope == "" {
		return "", err
	}
	return "refused by the organization's SMS policy: its budget per " + scope + " is spent for this window", nil
}

// Replay charges one more SMS of event eventID to number (a replayed
// delivery sends it again, until at most until) against the org's number
// and org budgets, and marks the event charged so the send path does not
// charge it again. refusal says why the replay may not go ahead, "" when
// it may; overBudget tells a spent budget from the org's current policy
// refusing the number.
func (g *Guard) Replay(ctx context.Context, orgID int64, eventID, number string, until time.Time) (refusal string, overBudget bool, err error) {
	s, err := g.settings(ctx, orgID)
	if err != nil {
		return "", false, err
	}
	e164, why := Screen(number, s)
	if why != "" {
		return "the organization's SMS policy refuses it: " + why, false, nil
	}
	now := g.now()
	scope, _, err := Spend(ctx, g.st, orgID, e164, "", g.ceilings.ForOrg(s), now)
	if err != nil {
		return "", false, err
	}
	if scope != "" {
		return "the organization's SMS budget per " + scope + " is spent for this window", true, nil
	}
	return "", false, MarkCharged(ctx, g.st, orgID, eventID, later(until, now))
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
