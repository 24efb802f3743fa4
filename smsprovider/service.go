// Package smsprovider owns each org's SMS provider configuration: the
// provider config API (/api/v1/orgs/{org}/sms-provider, its fallback slot
// and a test send) and the delivery.Resolver that turns an org's stored
// configuration into its provider's Sender. What a provider type is (its
// fields, their validation, its secrets, its Sender) belongs to the
// provider's own package (smsprovider/twilio, vonage, custom, console),
// registered in registry.go.
package smsprovider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/internal/orgs"
	"github.com/otphub/otphub/receipts"
	"github.com/otphub/otphub/smsprovider/provider"
	"github.com/otphub/otphub/store"
)

// URLChecker checks a URL before it is saved (the egress client's
// CheckURL: scheme, host, and an address the SSRF guard allows).
type URLChecker = provider.URLChecker

// Config configures the Service.
type Config struct {
	// AllowConsole permits provider type "console", which writes OTP SMS
	// to Stdout (--allow-console-provider). Default false: refused on save,
	// and a stored console provider fails every delivery as invalid.
	AllowConsole bool
	// AllowHTTP permits http:// provider URLs (a gateway on a network the
	// egress allow-list opens, e.g. 127.0.0.0/8). Default false: https only.
	AllowHTTP bool
	// Stdout is where the console provider writes. Default os.Stdout.
	Stdout io.Writer
	// CacheTTL is how long Resolve trusts its per-org cache; PUT and
	// DELETE on this replica invalidate it at once, other replicas see a
	// change within CacheTTL. Default 5 s.
	CacheTTL time.Duration
	// TestTimeout bounds a test send. Default 15 s.
	TestTimeout time.Duration
	// TestSendsPerMinute caps test sends per org and minute on this
	// replica (each one is a real, billed SMS). Default 10.
	TestSendsPerMinute int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Providers are the provider types offered. Default Registered().
	Providers []provider.Provider
	// Policy, if set, is checked before every send of every provider
	// (deliveries and test sends alike): the org's number policy and SMS
	// budgets (*smspolicy.Guard). A refusal is a permanent
	// delivery.ReasonPolicyRefused; nothing is sent.
	Policy Policy
	// Receipts, if set, turns delivery receipts on for the configurations
	// that ask for them: their SMS are sent with its callback URLs, and
	// each SMS a provider accepted is recorded with it. Nil: no receipts.
	Receipts Receipts
}

// Receipts is the delivery receipt service (package receipts) as the
// provider configurations use it.
type Receipts interface {
	// CallbackURL is the per-message receipt URL of an SMS ("" when the
	// provider type takes none).
	CallbackURL(typ, org, slot, jti string) string
	// ReceiptURL is the slot's fixed receipt URL ("" when none).
	ReceiptURL(typ, org, slot string) string
	RecordAccepted(ctx context.Context, a receipts.Accepted) error
}

// receiptConfig is a provider configuration whose provider reports
// delivery receipts.
type receiptConfig interface {
	ReceiptCredentials() receipts.Credentials
}

// receiptCredentials are what authenticates sp's receipts (a zero value
// but for the type when its provider reports none).
func receiptCredentials(sp stored) receipts.Credentials {
	if rc, ok := sp.cfg.(receiptConfig); ok {
		return rc.ReceiptCredentials()
	}
	return receipts.Credentials{Type: sp.row.Type}
}

// ReceiptCredentials returns what authenticates the receipts of org's
// slot (receipts.CredentialSource; store.ErrNotFound when it is empty).
func (s *Service) ReceiptCredentials(ctx context.Context, orgID int64, slot string) (receipts.Credentials, error) {
	sp, err := s.load(ctx, orgID, slot)
	if err != nil {
		return receipts.Credentials{}, err
	}
	return receiptCredentials(sp), nil
}

// onDelivered records, for receipts, each SMS that slot's provider
// accepted (nil without a receipt service or for a provider without
// receipts, like the console).
func (s *Service) onDelivered(sp stored) func(context.Context, *event.SmsOtpNotificationEvent, delivery.Result, time.Time) {
	rc := s.cfg.Receipts
	if _, ok := sp.cfg.(receiptConfig); rc == nil || !ok {
		return nil
	}
	typ, slot, expect := sp.row.Type, sp.row.Slot, receiptCredentials(sp).ExpectsReceipts()
	return func(ctx context.Context, ev *event.SmsOtpNotificationEvent, r delivery.Result, expires time.Time) {
		err := rc.RecordAccepted(ctx, receipts.Accepted{OrgID: ev.OrganizationID, EventSource: ev.Issuer, EventID: ev.ID, Type: typ, Slot: slot,
			ProviderMessageID: r.ProviderID, Mobile: ev.SendTo, At: s.cfg.Now(), ExpiresAt: expires, ExpectReceipts: expect})
		if err != nil {
			// Receipts for it still update a record they create; only the
			// no-receipt failover and the conversion count are lost.
			s.log.Warn("recording an accepted SMS for receipts", "org_id", ev.OrganizationID, "slot", slot, "err", err)
		}
	}
}

// Service is the SMS provider configuration service and resolver.
type Service struct {
	cfg       Config
	st        store.Store
	env       *provider.Env
	providers *registry
	log       *slog.Logger
	tests     *prometheus.CounterVec

	mu    sync.Mutex
	cache map[int64]*orgProviders
	gen   uint64 // bumped by every invalidation

	testCap *orgs.MinuteCap // test sends per org and minute
}

// New returns a Service. client sends SMS (the egress client's HTTP());
// urls checks provider URLs on save (the egress client).
func New(cfg Config, st store.Store, client *http.Client, urls URLChecker, logger *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if st == nil || client == nil || urls == nil {
		return nil, errors.New("smsprovider: store, HTTP client and URL checker are required")
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 5 * time.Second
	}
	if cfg.TestTimeout <= 0 {
		cfg.TestTimeout = 15 * time.Second
	}
	if cfg.TestSendsPerMinute <= 0 {
		cfg.TestSendsPerMinute = 10
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Providers == nil {
		cfg.Providers = Registered()
	}
	providers, err := newRegistry(cfg.Providers)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	env := &provider.Env{Client: client, URLs: urls, AllowHTTP: cfg.AllowHTTP, AllowConsole: cfg.AllowConsole, Stdout: cfg.Stdout, Now: cfg.Now}
	s := &Service{cfg: cfg, st: st, env: env, providers: providers, log: logger.With("component", "smsprovider"),
		cache: map[int64]*orgProviders{}, testCap: orgs.NewMinuteCap(cfg.TestSendsPerMinute, cfg.Now)}
	s.tests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "otphub_sms_provider_tests_total",
		Help: "Test SMS sent through the provider config API, by outcome.",
	}, []string{"outcome"})
	if reg != nil {
		if err := reg.Register(s.tests); err != nil {
			return nil, fmt.Errorf("smsprovider: metrics: %w", err)
		}
	}
	for _, o := range []string{"ok", "failed"} {
		s.tests.WithLabelValues(o)
	}
	return s, nil
}

// sender builds the Sender of a stored configuration, asking for
// receipts when withReceipts (not for a test send). A configuration
// that no longer builds (or a console provider on a server that disallows
// it, or a type no longer offered) yields a Sender failing every attempt
// as invalid, so deliveries record why instead of vanishing.
func (s *Service) sender(sp stored, withReceipts bool) (delivery.Sender, string) {
	if sp.p == nil {
		return invalid{fmt.Errorf("unknown provider type %q", sp.row.Type)}, "unknown:"
	}
	env := s.env
	if rc := s.cfg.Receipts; withReceipts && rc != nil && receiptCredentials(sp).ExpectsReceipts() {
		e := *s.env
		typ, slot := sp.row.Type, sp.row.Slot
		e.ReceiptURL = func(ev *event.SmsOtpNotificationEvent) string {
			return rc.CallbackURL(typ, ev.OrganizationName, slot, ev.ID)
		}
		env = &e
	}
	snd, err := sp.cfg.NewSender(env)
	if err != nil {
		return invalid{err}, sp.p.Type() + ":"
	}
	if s.cfg.Policy != nil {
		return guarded{snd, s.cfg.Policy}, snd.Endpoint()
	}
	return snd, snd.Endpoint()
}

// guarded sends only what the org's SMS policy lets through.
type guarded struct {
	next   delivery.Sender
	policy Policy
}

func (g guarded) Send(ctx context.Context, ev *event.SmsOtpNotificationEvent) delivery.Result {
	refusal, err := g.policy.CheckSend(ctx, ev)
	if err != nil {
		return delivery.Result{Retry: true, Reason: delivery.ReasonServerError, Err: fmt.Errorf("checking the SMS policy: %w", err)}
	}
	if refusal != "" {
		return delivery.Result{Reason: delivery.ReasonPolicyRefused, Err: errors.New(refusal)}
	}
	return g.next.Send(ctx, ev)
}

// invalid is the Sender of a configuration that cannot send.
type invalid struct{ err error }

func (i invalid) Send(context.Context, *event.SmsOtpNotificationEvent) delivery.Result {
	return delivery.Result{Reason: delivery.ReasonInvalid, Err: i.err}
}

// Policy decides whether the SMS of an event may be sent; refusal says
// why not (never the number). *smspolicy.Guard implements it.
type Policy interface {
	CheckSend(ctx context.Context, ev *event.SmsOtpNotificationEvent) (refusal string, err error)
}
