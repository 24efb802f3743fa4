// Package receipts owns SMS delivery receipts: the callback endpoints that
// Twilio (status callbacks), Vonage (SMS API delivery receipts) and custom
// gateways post to, each authenticated as its provider documents it; the
// mapping of their statuses onto one handset state (store.Handset*); the
// record of each SMS's handset state and its timestamps (store.Receipts,
// which merges out-of-order and repeated receipts); failover to the org's
// fallback provider when an SMS is undelivered or no final receipt comes
// within the window, once, while the OTP is valid; and the handset
// delivery, receipt latency and conversion metrics. docs/providers.md
// describes the contract.
package receipts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/internal/ids"
	"github.com/otphub/otphub/internal/orgs"
	"github.com/otphub/otphub/smspolicy"
	"github.com/otphub/otphub/store"
)

// Provider types that report receipts (dispatcher.Type* values).
const (
	TypeTwilio = "twilio"
	TypeVonage = "vonage"
	TypeCustom = "custom"
)

// Defaults.
const (
	DefaultWindow        = 60 * time.Second
	DefaultSweepInterval = time.Second
	// DefaultMaxSkew bounds the age (and future skew) of a signed Vonage
	// receipt's timestamp and of a custom receipt's webhook-timestamp, as
	// Vonage's own libraries do: a captured callback cannot be replayed later.
	DefaultMaxSkew = 5 * time.Minute
	// MaxBody caps a callback body.
	MaxBody = 16 << 10
)

// Config configures the receipts Service. Zero fields take the defaults.
type Config struct {
	// PublicURL is otphub's public base URL: status callback URLs derive
	// from it, and Twilio signs the URL it posts to. Required.
	PublicURL string
	// Window is how long after a provider accepted an SMS a final receipt
	// (delivered, undelivered, failed) may take before the SMS fails over
	// to the fallback provider. Default DefaultWindow; negative disables
	// the no-receipt failover (undelivered and failed still fail over).
	Window time.Duration
	// SweepInterval is how often Run looks for SMS due to fail over.
	// Default DefaultSweepInterval.
	SweepInterval time.Duration
	// MaxSkew: see DefaultMaxSkew.
	MaxSkew time.Duration
	// CacheTTL is how long a slot's credentials are reused (callbacks are
	// unauthenticated until checked: a flood of forged ones must not each
	// cost a store read). A changed secret is seen within it. Default 5 s.
	CacheTTL time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Credentials authenticate one org slot's receipts: the fields of its
// provider's configuration that sign callbacks. Empty secrets mean the
// slot does not take receipts.
type Credentials struct {
	Type string // twilio | vonage | custom | console
	// Twilio: status callbacks are signed with the account's auth token;
	// TwilioReceipts says the org asked for them (its configuration's
	// deliveryReceipts), so every message is sent with a StatusCallback.
	TwilioReceipts bool
	AccountSID     string
	AuthToken      string
	// Vonage: signed delivery receipts (the account's signature secret and
	// the method chosen in its dashboard: md5hash, md5, sha1, sha256, sha512).
	APIKey          string
	SignatureSecret string
	SignatureMethod string
	// Custom gateway: the per-org receipt secret (Standard Webhooks HMAC).
	ReceiptSecret string
}

// ExpectsReceipts tells whether SMS sent with c report receipts, so their
// silence past the window means they were lost.
func (c Credentials) ExpectsReceipts() bool {
	switch c.Type {
	case TypeTwilio:
		return c.TwilioReceipts && c.AuthToken != ""
	case TypeVonage:
		return c.SignatureSecret != ""
	case TypeCustom:
		return c.ReceiptSecret != ""
	}
	return false
}

// CredentialSource finds the receipt credentials of an org's provider
// slot (store.ErrNotFound when the slot is empty). smsprovider implements it.
type CredentialSource interface {
	ReceiptCredentials(ctx context.Context, orgID int64, slot string) (Credentials, error)
}

// CredentialFunc adapts a function to CredentialSource.
type CredentialFunc func(ctx context.Context, orgID int64, slot string) (Credentials, error)

// ReceiptCredentials calls f.
func (f CredentialFunc) ReceiptCredentials(ctx context.Context, orgID int64, slot string) (Credentials, error) {
	return f(ctx, orgID, slot)
}

// Service serves the receipt endpoints, records what providers accepted,
// and fails undelivered SMS over.
type Service struct {
	cfg   Config
	base  string // PublicURL without a trailing slash
	st    store.Store
	creds CredentialSource
	log   *slog.Logger
	m     *metrics

	mu    sync.Mutex
	cache map[credKey]credEntry
}

type credKey struct {
	orgID int64
	slot  string
}

type credEntry struct {
	c      Credentials
	loaded time.Time
}

// maxCachedSlots bounds the credential cache; past it, it starts over.
const maxCachedSlots = 10000

// credentials returns org's slot's credentials (a zero Credentials for an
// empty slot), from the cache when fresh.
func (s *Service) credentials(ctx context.Context, orgID int64, slot string) (Credentials, error) {
	k, now := credKey{orgID, slot}, s.cfg.Now()
	s.mu.Lock()
	e, ok := s.cache[k]
	s.mu.Unlock()
	if ok && now.Sub(e.loaded) < s.cfg.CacheTTL && !now.Before(e.loaded) {
		return e.c, nil
	}
	c, err := s.creds.ReceiptCredentials(ctx, orgID, slot)
	if errors.Is(err, store.ErrNotFound) {
		c, err = Credentials{}, nil
	}
	if err != nil {
		return Credentials{}, err
	}
	s.mu.Lock()
	if len(s.cache) >= maxCachedSlots {
		clear(s.cache)
	}
	s.cache[k] = credEntry{c: c, loaded: now}
	s.mu.Unlock()
	return c, nil
}

// New returns a Service over st, authenticating callbacks with creds'
// secrets. reg receives the otphub_sms_* metrics.
func New(cfg Config, st store.Store, creds CredentialSource, logger *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if st == nil || creds == nil || reg == nil {
		return nil, errors.New("receipts: store, credential source and registerer are required")
	}
	u, err := url.Parse(cfg.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("receipts: public URL %q is not an absolute http(s) URL", cfg.PublicURL)
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.MaxSkew <= 0 {
		cfg.MaxSkew = DefaultMaxSkew
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 5 * time.Second
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("receipts: metrics: %w", err)
	}
	return &Service{cfg: cfg, base: strings.TrimRight(cfg.PublicURL, "/"), st: st, creds: creds,
		log: logger.With("component", "receipts"), m: m, cache: map[credKey]credEntry{}}, nil
}

// Register adds the callback endpoints to mux. They carry no bearer token:
// each is authenticated by its provider's signature.
//
//	POST     /receipts/twilio/{org}/{slot}/{jti}   Twilio status callback (X-Twilio-Signature)
//	GET|POST /receipts/vonage/{org}/{slot}         Vonage delivery receipt (signed: sig)
//	POST     /receipts/custom/{org}/{slot}         custom gateway receipt (Standard Webhooks)
func (s *Service) Register(mux httpx.Mux) {
	mux.Handle("POST /receipts/twilio/{org}/{slot}/{jti}", http.HandlerFunc(s.twilio))
	mux.Handle("GET /receipts/vonage/{org}/{slot}", http.HandlerFunc(s.vonage))
	mux.Handle("POST /receipts/vonage/{org}/{slot}", http.HandlerFunc(s.vonage))
	mux.Handle("POST /receipts/custom/{org}/{slot}", http.HandlerFunc(s.custom))
}

// CallbackURL is the URL an SMS of jti sent through org's slot by a
// provider of type typ asks its provider to report receipts to: Twilio's
// per-message StatusCallback, Vonage's per-message callback; "" for other
// types (a custom gateway is given ReceiptURL once).
func (s *Service) CallbackURL(typ, org, slot, jti string) string {
	switch typ {
	case TypeTwilio:
		return s.TwilioCallbackURL(org, slot, jti)
	case TypeVonage:
		return s.VonageCallbackURL(org, slot)
	}
	return ""
}

// ReceiptURL is the fixed receipt URL of org's slot for a provider of
// type typ, to configure at the provider (Vonage's dashboard, a custom
// gateway); "" for Twilio, whose callback URL names each message.
func (s *Service) ReceiptURL(typ, org, slot string) string {
	switch typ {
	case TypeVonage:
		return s.VonageCallbackURL(org, slot)
	case TypeCustom:
		return s.CustomCallbackURL(org, slot)
	}
	return ""
}

// TwilioCallbackURL is the StatusCallback of an SMS sent for org's slot:
// Twilio posts every status change of the message there, signed.
func (s *Service) TwilioCallbackURL(org, slot, jti string) string {
	return s.base + "/receipts/twilio/" + url.PathEscape(org) + "/" + url.PathEscape(slot) + "/" + url.PathEscape(jti)
}

// VonageCallbackURL is the callback of an SMS sent for org's slot (the SMS
// API's per-message override of the dashboard's delivery receipt URL).
func (s *Service) VonageCallbackURL(org, slot string) string {
	return s.base + "/receipts/vonage/" + url.PathEscape(org) + "/" + url.PathEscape(slot)
}

// CustomCallbackURL is where a custom gateway posts receipts for org's slot.
func (s *Service) CustomCallbackURL(org, slot string) string {
	return s.base + "/receipts/custom/" + url.PathEscape(org) + "/" + url.PathEscape(slot)
}

// Callback results (the result label of otphub_sms_receipt_callbacks_total).
const (
	resultApplied        = "applied"         // the record changed
	resultDuplicate      = "duplicate"       // repeated or stale: nothing changed
	resultForged         = "forged"          // missing or wrong signature
	resultExpired        = "expired"         // signed timestamp outside MaxSkew (replay)
	resultMalformed      = "malformed"       // unreadable or missing fields
	resultUnknownMessage = "unknown_message" // names another message than the one recorded
	resultNotConfigured  = "not_configured"  // the slot takes no receipts from this provider
	resultError          = "error"           // store failure (answered 503: the provider retries)
)

var results = []string{resultApplied, resultDuplicate, resultForged, resultExpired, resultMalformed,
	resultUnknownMessage, resultNotConfigured, resultError}

// target resolves a callback's org and slot and the slot's credentials,
// answering the request itself when it cannot go on.
func (s *Service) target(w http.ResponseWriter, r *http.Request, provider string) (store.Org, string, Credentials, bool) {
	org, err := orgs.Resolve(r.Context(), s.st, r.PathValue("org"))
	if err != nil {
		if errors.Is(err, orgs.ErrNotFound) {
			s.m.callbacks.WithLabelValues(provider, resultNotConfigured).Inc()
			httpx.Error(w, http.StatusNotFound, "org_not_found", "no such organization")
		} else {
			s.unavailable(w, provider, "resolve org", err)
		}
		return store.Org{}, "", Credentials{}, false
	}
	slot := r.PathValue("slot")
	if slot != store.ProviderPrimary && slot != store.ProviderFallback {
		s.m.callbacks.WithLabelValues(provider, resultNotConfigured).Inc()
		httpx.Error(w, http.StatusNotFound, "provider_not_configured", "slot must be primary or fallback")
		return store.Org{}, "", Credentials{}, false
	}
	c, err := s.credentials(r.Context(), org.ID, slot)
	if err != nil {
		s.unavailable(w, provider, "receipt credentials", err)
		return store.Org{}, "", Credentials{}, false
	}
	if c.Type != provider || !c.ExpectsReceipts() {
		// Nothing to verify the callback with: refuse it rather than trust it.
		s.m.callbacks.WithLabelValues(provider, resultNotConfigured).Inc()
		httpx.Error(w, http.StatusNotFound, "receipts_not_configured",
			fmt.Sprintf("the %s slot of this organization takes no %s receipts", slot, provider))
		return store.Org{}, "", Credentials{}, false
	}
	return org, slot, c, true
}

func (s *Service) unavailable(w http.ResponseWriter, provider, what string, err error) {
	s.log.Error("receipt callback", "provider", provider, "op", what, "err", err)
	s.m.callbacks.WithLabelValues(provider, resultError).Inc()
	w.Header().Set("Retry-After", "5")
	httpx.Error(w, http.StatusServiceUnavailable, "unavailable", "try again later")
}

func (s *Service) refuse(w http.ResponseWriter, provider, result string, status int, code, msg string) {
	s.m.callbacks.WithLabelValues(provider, result).Inc()
	httpx.Error(w, status, code, msg)
}

// apply records one authenticated receipt and answers the provider: 204
// when it is recorded or nothing new (so the provider stops retrying),
// 503 when the store failed (so it retries).
func (s *Service) apply(w http.ResponseWriter, r *http.Request, org store.Org, rc store.Receipt) {
	rc.OrgID = org.ID
	rc.ReceivedAt = s.cfg.Now()
	res, err := s.st.ApplyReceipt(r.Context(), rc)
	switch {
	case errors.Is(err, store.ErrPrecondition):
		// A signed receipt for another message of this key: not ours to apply.
		s.m.callbacks.WithLabelValues(rc.DestinationType, resultUnknownMessage).Inc()
		w.WriteHeader(http.StatusNoContent)
		return
	case err != nil:
		s.unavailable(w, rc.DestinationType, "apply receipt", err)
		return
	}
	if !res.Changed {
		s.m.callbacks.WithLabelValues(rc.DestinationType, resultDuplicate).Inc()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	s.m.callbacks.WithLabelValues(rc.DestinationType, resultApplied).Inc()
	s.observe(res)
	if rec := res.Receipt; store.HandsetFinal(rec.State) && rec.State != store.HandsetDelivered &&
		rec.DestinationID == store.ProviderPrimary && rec.FailoverStatus == "" {
		// Fail over at once; the sweep retries if this does not get through.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
		s.failOver(ctx, rec, rec.State)
		cancel()
	}
	w.WriteHeader(http.StatusNoContent)
}

// observe counts a record's first final state and its latency.
func (s *Service) observe(res store.ReceiptResult) {
	rec := res.Receipt
	if !store.HandsetFinal(rec.State) || store.HandsetFinal(res.Previous) {
		return
	}
	country := countryLabel(rec.CountryCode)
	s.m.outcomes.WithLabelValues(providerLabel(rec.DestinationType), country, rec.State).Inc()
	if rec.AcceptedAt.IsZero() {
		return
	}
	at := rec.DeliveredAt
	if rec.State != store.HandsetDelivered {
		at = rec.FailedAt
	}
	s.m.latency.WithLabelValues(providerLabel(rec.DestinationType), country).Observe(max(0, at.Sub(rec.AcceptedAt).Seconds()))
}

// Accepted is one SMS a provider's API accepted, as the dispatcher
// reports it.
type Accepted struct {
	OrgID             int64
	EventSource       string // the event's producer (iss)
	EventID           string
	Type              string // provider type
	Slot              string
	ProviderMessageID string
	Mobile            string // E.164; only its calling code is kept
	At                time.Time
	ExpiresAt         time.Time // the OTP's
	// ExpectReceipts: the slot's provider was asked for receipts, so
	// silence past Config.Window fails the SMS over.
	ExpectReceipts bool
}

// RecordAccepted stores a provider's acceptance of an SMS and counts it
// for the conversion rate.
func (s *Service) RecordAccepted(ctx context.Context, a Accepted) error {
	cc := smspolicy.CallingCode(a.Mobile)
	rec := store.SMSReceipt{
		ReceiptKey:  store.ReceiptKey{OrgID: a.OrgID, EventID: a.EventID, DestinationType: a.Type, DestinationID: a.Slot},
		EventSource: a.EventSource, ProviderMessageID: a.ProviderMessageID, CountryCode: cc, AcceptedAt: a.At, ExpiresAt: a.ExpiresAt,
	}
	if a.ExpectReceipts && s.cfg.Window > 0 {
		rec.ReceiptDueAt = a.At.Add(s.cfg.Window)
	}
	if err := s.st.RecordSMSAccepted(ctx, rec); err != nil {
		return err
	}
	s.m.accepted.WithLabelValues(providerLabel(a.Type), countryLabel(cc)).Inc()
	return nil
}

// Verified counts a verified OTP whose event was eventID against the
// provider that delivered it (the delivered one when it failed over),
// for the conversion rate: otphub_sms_otp_verified_total ÷
// otphub_sms_accepted_total.
func (s *Service) Verified(ctx context.Context, orgID int64, eventID string) {
	recs, err := s.st.SMSReceiptsOfEvent(ctx, orgID, eventID)
	if err != nil || len(recs) == 0 {
		if err != nil {
			s.log.Warn("conversion: reading receipts", "err", err)
		}
		return
	}
	pick := recs[0]
	for _, r := range recs {
		if r.State == store.HandsetDelivered || (pick.State != store.HandsetDelivered && r.AcceptedAt.After(pick.AcceptedAt)) {
			pick = r
		}
	}
	s.m.verified.WithLabelValues(providerLabel(pick.DestinationType), countryLabel(pick.CountryCode)).Inc()
}

// Run fails over, every SweepInterval, the SMS whose receipts say they
// were not delivered or that stayed silent past the window, until ctx ends.
// Any number of processes may run it: FailOver lets one win per SMS.
func (s *Service) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		s.sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) sweep(ctx context.Context) {
	due, err := s.st.DueFailovers(ctx, s.cfg.Now(), 100)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("looking for SMS to fail over", "err", err)
		}
		return
	}
	for _, rec := range due {
		reason := rec.State
		if !store.HandsetFinal(rec.State) {
			reason = ReasonNoReceipt
			if s.cfg.Window < 0 {
				continue
			}
		}
		s.failOver(ctx, rec, reason)
	}
}

// Failover reasons (the reason label of otphub_sms_failovers_total).
const (
	ReasonUndelivered = store.HandsetUndelivered
	ReasonFailed      = store.HandsetFailed
	ReasonNoReceipt   = "no_receipt"
)

// failOver hands rec's OTP to the org's fallback provider, once: a
// pending delivery task of the fallback slot, due now, bounded by the
// OTP's expiry, which the dispatcher's retry loop sends.
func (s *Service) failOver(ctx context.Context, rec store.SMSReceipt, reason string) {
	now := s.cfg.Now()
	if !now.Before(rec.ExpiresAt) {
		return // the OTP is no longer valid: nothing worth sending
	}
	f := store.Failover{Status: store.FailoverNoFallback, Reason: reason, At: now}
	fb, err := s.st.GetSMSProvider(ctx, rec.OrgID, store.ProviderFallback)
	switch {
	case err == nil:
		f.Status = store.FailoverSent
		f.Task = &store.DeliveryTask{ID: ids.Ordered(), DestinationType: fb.Type, DestinationID: store.ProviderFallback,
			NextAttemptAt: now, ExpiresAt: rec.ExpiresAt, CreatedAt: now}
	case !errors.Is(err, store.ErrNotFound):
		s.log.Warn("failover: reading the fallback provider", "org_id", rec.OrgID, "err", err)
		return
	}
	err = s.st.FailOver(ctx, rec.ReceiptKey, f)
	switch {
	case errors.Is(err, store.ErrPrecondition):
		return // another process (or the callback) did it
	case errors.Is(err, store.ErrNotFound):
		// The primary's delivery task is not written yet (the receipt
		// raced it): the sweep tries again.
		return
	case err != nil:
		s.log.Warn("failover", "org_id", rec.OrgID, "jti", rec.EventID, "err", err)
		return
	}
	if reason == ReasonNoReceipt {
		s.m.outcomes.WithLabelValues(providerLabel(rec.DestinationType), countryLabel(rec.CountryCode), ReasonNoReceipt).Inc()
	}
	s.m.failovers.WithLabelValues(providerLabel(rec.DestinationType), reason, f.Status).Inc()
	s.log.Info("SMS failed over", "org_id", rec.OrgID, "jti", rec.EventID, "provider", rec.DestinationType,
		"reason", reason, "outcome", f.Status)
}
