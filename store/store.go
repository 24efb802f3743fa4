// Package store owns otphub's state of record: one port (Store), the domain
// records it keeps, and its errors. Adapters live in store/sqlite (embedded
// default) and store/postgres (scale-out); store/storetest is the
// conformance suite both must pass.
//
// Secrets (SMS provider configs, subscription secrets, signing keys) are
// encrypted at rest by the adapter with AES-GCM under Options.EncryptionKey:
// callers pass and receive them in clear, the database never holds them so.
// LoadOrCreateKey and ParseKey (key.go) provide that key. docs/store.md
// describes the schema, durability and concurrency choices.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Errors every adapter returns (wrapped or not; test with errors.Is).
var (
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a unique constraint would be violated (duplicate name…).
	ErrConflict = errors.New("store: conflict")
	// ErrPrecondition: a conditional update did not apply (already consumed,
	// code replaced, lease lost…).
	ErrPrecondition = errors.New("store: precondition failed")
	// ErrLimit: a create would take an org past a per-org limit.
	ErrLimit = errors.New("store: limit reached")
)

// Options configure an adapter.
type Options struct {
	// EncryptionKey is the 32-byte AES-256-GCM key for secrets at rest. Required.
	// Every value is written under it.
	EncryptionKey []byte
	// PreviousEncryptionKeys are keys that were current before (rotation):
	// values sealed under them still open, and Reseal moves them to
	// EncryptionKey.
	PreviousEncryptionKeys [][]byte
	// NextEncryptionKey is the key a rotation is about to make current:
	// values sealed under it open, nothing is sealed under it, and Reseal
	// refuses to run (it would move them back). Not with previous keys.
	NextEncryptionKey []byte
}

// Org is a tenant.
type Org struct {
	ID        int64
	Name      string // unique; [a-z0-9][a-z0-9-]{0,62}
	CreatedAt time.Time
}

// Client is an OAuth 2.0 client (client credentials grant).
type Client struct {
	ClientID      string
	OrgID         int64 // 0 for a platform admin client
	Name          string
	SecretHash    []byte // salted hash computed by package oauth; never the secret
	Scopes        []string
	PlatformAdmin bool
	CreatedAt     time.Time
}

// OTPSettings are an org's SMS OTP settings (docs/auth.md).
type OTPSettings struct {
	OrgID                 int64
	ExpirySeconds         int
	NumericOnly           bool
	Length                int
	MaxResends            int
	ResendIntervalSeconds int
	MaxFailedAttempts     int
	BackupCodesEnabled    bool
	// WebOTP ends the SMS sent by the hosted login prompt with the WICG
	// WebOTP origin-bound line (@host #code) so browsers can autofill it.
	WebOTP bool
	// AllowedCountryCodes limits mobile numbers to these calling codes
	// (e.g. 94, 1); empty allows all.
	AllowedCountryCodes []int
	UpdatedAt           time.Time

	// AllowedNumberTypes limits numbers to these libphonenumber number
	// types (authcore's names: mobile, fixed_line_or_mobile, fixed_line,
	// toll_free, premium_rate, voip, …); empty is the built-in policy,
	// mobile and fixed_line_or_mobile.
	AllowedNumberTypes []string
	// SendLimitPerNumber, SendLimitPerIP and SendLimitPerOrg are the org's
	// own send budgets per window of the server-wide limit of the same
	// scope, which is their ceiling; 0 is the ceiling itself.
	SendLimitPerNumber int
	SendLimitPerIP     int
	SendLimitPerOrg    int
}

// MessageTemplate is an org's override of the SMS message template for a locale.
type MessageTemplate struct {
	OrgID     int64
	Locale    string // BCP 47, e.g. "en", "fr-CA"; "" is the org default
	Body      string
	UpdatedAt time.Time
}

// Provider slots.
const (
	ProviderPrimary  = "primary"
	ProviderFallback = "fallback"
)

// SMSProvider is an org's SMS provider configuration in one slot. Config is
// the provider's JSON configuration (owned by package smsprovider), secrets
// included: the adapter encrypts the whole of it at rest.
type SMSProvider struct {
	OrgID     int64
	Slot      string // ProviderPrimary or ProviderFallback
	Type      string // twilio | vonage | custom | console
	Config    json.RawMessage
	UpdatedAt time.Time
}

// Subscription states.
const (
	SubPending  = "pending"  // intent verification in progress
	SubActive   = "active"   // verified, lease running
	SubDisabled = "disabled" // ended by the callback answering 410 Gone
)

// Subscription is a WebSub subscription.
type Subscription struct {
	ID           string // UUID
	OrgID        int64
	Topic        string // canonical topic URL
	Callback     string // unique per (OrgID, Topic)
	Secret       []byte // hub.secret; encrypted at rest; empty when none
	State        string
	LeaseSeconds int
	ExpiresAt    time.Time // lease end; zero while pending
	Format       string    // body format: asgardeo (default) | set | set-jwt | cloudevents
	SignatureAlg string    // sha1 | sha256 (default) | sha384 | sha512
	// AutoRenew: the subscriber asked for no lease, so the hub renews it by
	// verifying intent again before it ends (docs/websub.md).
	AutoRenew bool
	CreatedAt time.Time
	UpdatedAt time.Time

	// PreviousSecret is the secret a re-subscription replaced (encrypted
	// at rest): deliveries are signed under both until PreviousSecretUntil.
	PreviousSecret      []byte
	PreviousSecretUntil time.Time
}

// Challenge is one SMS OTP challenge.
type Challenge struct {
	ID     string // UUID
	OrgID  int64
	UserID string
	Mobile string // E.164
	// CountryCode is the ITU calling code of Mobile (94, 1…), 0 when
	// unknown (and for challenges from before migration 0010): OTPStats
	// groups by it.
	CountryCode int
	Application string
	CodeHMAC    []byte // HMAC of the current OTP; never the OTP
	EventID     string // jti of the current OTP's event; "" for challenges from before migration 0007
	ExpiresAt   time.Time
	Resends     int       // resends used
	LastSentAt  time.Time // when the current OTP was issued
	ConsumedAt  time.Time // zero until verified
	CreatedAt   time.Time
}

// CounterHit is one HitCounter call made inside another write
// (CreateChallenge). With Max > 0 it is a budget: a hit that takes the
// counter past Max refuses the write (see CreateChallenge).
type CounterHit struct {
	Key         string
	WindowStart time.Time
	ExpiresAt   time.Time
	Max         int64 // 0: no limit
}

// Lockout is CreateChallenge's check of the user's failed verifications
// (FailedAttempts): a user with at least Max of them, the last one after
// Since, is locked out. A zero Max checks nothing.
type Lockout struct {
	Max   int
	Since time.Time
}

// LockedOutError is CreateChallenge's answer for a user its Lockout found
// locked out: Attempts failures, the last at LastFailure.
type LockedOutError struct {
	Attempts    int
	LastFailure time.Time
}

func (e *LockedOutError) Error() string {
	return fmt.Sprintf("store: locked out after %d failed attempts", e.Attempts)
}

// OverBudgetError is CreateChallenge's answer when hits[Hit] took its
// counter past its Max.
type OverBudgetError struct{ Hit int }

func (e *OverBudgetError) Error() string {
	return fmt.Sprintf("store: counter hit %d is over its budget", e.Hit)
}

// BackupCode is one of a user's backup codes.
type BackupCode struct {
	ID     int64
	OrgID  int64
	UserID string
	Hash   []byte // salted hash computed by package authcore; salt included
	UsedAt time.Time
}

// Application is a relying party of the hosted login step: an OAuth 2.0
// client of the authorization code flow (never of the admin API).
type Application struct {
	ID       string // UUID
	OrgID    int64
	Name     string
	ClientID string // unique across orgs
	// ClientSecret authenticates the application at the token endpoint and
	// is the HS256 key of its request objects, so it is kept (sealed at
	// rest), not hashed.
	ClientSecret []byte
	RedirectURIs []string // exact match
	// FirstFactors are the amr values of the first factors it accepts
	// (pwd, magic_link, fed).
	FirstFactors []string
	// BackupCodes lets its users finish the step with a backup code.
	BackupCodes bool
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Login flow completion methods.
const (
	LoginBySMS        = "sms"
	LoginByBackupCode = "backup_code"
)

// LoginFlow is one run of the hosted login step, from the authorization
// request to the redemption of its authorization code.
type LoginFlow struct {
	ID            string // UUID
	OrgID         int64
	ApplicationID string
	ClientID      string
	// BrowserHash is the SHA-256 of the secret in the browser's cookie:
	// only that browser may drive the flow.
	BrowserHash   []byte
	RedirectURI   string
	State         string
	Nonce         string
	CodeChallenge string // PKCE S256
	UserID        string
	Mobile        string   // E.164
	AMR           []string // the first factor's, from the request object
	Locale        string   // BCP 47; "" for the default
	ChallengeID   string   // "" until the first SMS is sent
	ExpiresAt     time.Time
	CreatedAt     time.Time
	// CompletedAt is when the second factor succeeded (zero until then);
	// Method is how (LoginBySMS or LoginByBackupCode).
	CompletedAt time.Time
	Method      string
	// CodeHash is the SHA-256 of the authorization code issued on
	// completion; the code itself is never stored.
	CodeHash      []byte
	CodeExpiresAt time.Time
	CodeUsedAt    time.Time
}

// SigningKey is a JWT signing key of the token issuer. The private key is
// encrypted at rest.
type SigningKey struct {
	KID        string
	Algorithm  string // e.g. ES256
	PrivateKey []byte // PKCS#8 DER
	CreatedAt  time.Time
	// RetiredAt is when the key stopped signing; it stays in the JWKS until
	// tokens it signed have expired. Zero while current.
	RetiredAt time.Time
}

// Delivery statuses.
const (
	DeliveryPending   = "pending"   // waiting for its next attempt
	DeliveryDelivered = "delivered" // a destination answered 2xx
	DeliveryFailed    = "failed"    // permanent error
	DeliveryExpired   = "expired"   // the OTP expired before delivery
	DeliveryDead      = "dead"      // retries exhausted; on the dead-letter list
)

// DeliveryTask is one event's delivery to one destination. First attempts
// run from memory; a task row is written when an attempt fails (a durable
// retry task) or completes, and is the record the deliveries API shows.
type DeliveryTask struct {
	ID    string // UUID
	OrgID int64
	// EventSource and EventID are the producer (iss, ce_source) and its
	// event ID (jti, ce_id): IDs are free-form, chosen by each producer, so
	// the idempotency key (OrgID, EventSource, EventID, DestinationType,
	// DestinationID) names both. Unique.
	EventSource     string
	EventID         string
	DestinationType string // webhook | twilio | vonage | custom | console
	DestinationID   string // subscription ID, or provider slot
	Event           []byte // the event, encoded by the dispatcher, so a retry needs nothing else
	Status          string
	Attempts        int
	NextAttemptAt   time.Time
	ExpiresAt       time.Time // the OTP's expiry: no attempt after it
	LeaseOwner      string
	LeaseUntil      time.Time
	LastError       string
	LastStatusCode  int
	CreatedAt       time.Time
	UpdatedAt       time.Time
	// Handset is what delivery receipts said of an SMS delivery (nil when
	// nothing is known). Filled by GetDelivery and ListDeliveries only.
	Handset *SMSReceipt
}

// DeliveryAttempt is one entry in a task's attempt log.
type DeliveryAttempt struct {
	TaskID     string
	Number     int // 1-based
	StartedAt  time.Time
	Duration   time.Duration
	StatusCode int    // 0 when no HTTP answer
	Outcome    string // success | retry | permanent
	Error      string // bounded length; never a secret
}

// TaskUpdate is the new state of a task after an attempt.
type TaskUpdate struct {
	Status         string
	NextAttemptAt  time.Time
	LastError      string
	LastStatusCode int
}

// AttemptCompletion is one task's completed attempt, for CompleteAttempts.
type AttemptCompletion struct {
	TaskID  string
	Attempt DeliveryAttempt
	Update  TaskUpdate
}

// DeliveryFilter selects deliveries to list.
type DeliveryFilter struct {
	Status string // "" for all
	// DestinationType and DestinationID select one destination's tasks
	// ("webhook" and a subscription ID, a provider type and
	// ProviderPrimary…); "" for all. An ID is only used with a type.
	DestinationType, DestinationID string
	// Since keeps only the tasks created at or after it (zero: no bound).
	Since time.Time
	Limit int // <= 0 means 100; capped at 1000
	// Before is a pagination cursor: only tasks created strictly before it
	// (ordered by CreatedAt desc, ID desc).
	Before   time.Time
	BeforeID string
}

// DeliveryStats summarise the task table for metrics: the tasks waiting
// (pending) and the dead letters. Finished tasks are not counted: they are
// kept for the retention (days of traffic), and the delivery counters
// already count them as they finish.
type DeliveryStats struct {
	Pending, Dead   int64
	OldestPendingAt time.Time // zero when none pending
}

// OrgDeliveryStats is what Deliveries.OrgDeliveryStats returns: one
// org's deliveries of a window, per hour from its start (every hour,
// empty ones too).
type OrgDeliveryStats struct {
	Hours []DeliveryHourStats
}

// DeliveryHourStats are the org's delivery tasks created in the hour from
// Start. A task counts once, in the hour it was created (by its first
// attempt's outcome: a task is written when its first attempt ends or
// fails), whatever its later retries, replays and receipts.
type DeliveryHourStats struct {
	Start time.Time
	// Webhook counts webhook deliveries, SMS those to an SMS provider
	// (every destination type but webhook), by their status now.
	Webhook, SMS DeliveryOutcomes
	// WebhookLatency is, for the delivered webhook deliveries, the time
	// from the start of the task's first attempt to the end of its first
	// successful one: the receiver's answer time when the first attempt
	// succeeded, plus the retries' backoff when it took several.
	WebhookLatency LatencyHistogram
	// Handset is what delivery receipts said of the SMS deliveries (those
	// with a receipt record); HandsetLatency is, for the ones delivered to
	// the handset, the time from the provider's acceptance to the
	// handset's delivery receipt.
	Handset        HandsetCounts
	HandsetLatency LatencyHistogram
}

// DeliveryOutcomes count deliveries by status.
type DeliveryOutcomes struct {
	Delivered int64
	Failed    int64 // failed, dead or expired
	Pending   int64 // waiting for a retry
}

// Add adds o's counts to d's.
func (d *DeliveryOutcomes) Add(o DeliveryOutcomes) {
	d.Delivered, d.Failed, d.Pending = d.Delivered+o.Delivered, d.Failed+o.Failed, d.Pending+o.Pending
}

// HandsetCounts count SMS deliveries with a receipt record by handset state.
type HandsetCounts struct {
	Records   int64 // with a receipt record: the sum of the three below
	Delivered int64 // HandsetDelivered
	Failed    int64 // HandsetUndelivered or HandsetFailed
	Awaiting  int64 // no final receipt yet (queued, sent, or only accepted)
}

// Add adds o's counts to h's.
func (h *HandsetCounts) Add(o HandsetCounts) {
	h.Records, h.Delivered, h.Failed, h.Awaiting = h.Records+o.Records, h.Delivered+o.Delivered, h.Failed+o.Failed, h.Awaiting+o.Awaiting
}

// LatencyBounds are the upper bounds (exclusive) of a LatencyHistogram's
// buckets but the last, which holds everything from the last bound up:
// 1-2-5 steps from 1 ms to 1 h.
var LatencyBounds = []time.Duration{
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 20 * time.Minute, 30 * time.Minute, time.Hour,
}

// LatencyBucket counts the latencies of one bucket, with the least and
// the greatest of them.
type LatencyBucket struct {
	Count    int64
	Min, Max time.Duration
}

// LatencyHistogram counts latencies in the buckets of LatencyBounds:
// len(LatencyBounds)+1 of them, or none (nil) when it counts nothing. The
// store aggregates it in SQL, so a statistic never loads one row per
// delivery; Quantile estimates percentiles from it.
type LatencyHistogram []LatencyBucket

// Count is how many latencies h counts.
func (h LatencyHistogram) Count() int64 {
	var n int64
	for _, b := range h {
		n += b.Count
	}
	return n
}

// Add merges o into h (a nil h becomes a copy of o).
func (h *LatencyHistogram) Add(o LatencyHistogram) {
	if o.Count() == 0 {
		return
	}
	if *h == nil {
		*h = make(LatencyHistogram, len(LatencyBounds)+1)
	}
	for i, b := range o {
		(*h)[i].AddBucket(b)
	}
}

// AddBucket merges o into b.
func (b *LatencyBucket) AddBucket(o LatencyBucket) {
	if o.Count == 0 {
		return
	}
	if b.Count == 0 || o.Min < b.Min {
		b.Min = o.Min
	}
	if b.Count == 0 || o.Max > b.Max {
		b.Max = o.Max
	}
	b.Count += o.Count
}

// Quantile estimates the q-quantile (0 <= q <= 1) of the latencies h
// counts: the latency of rank floor(q*n) (0-based, n the count, capped at
// n-1) in ascending order, placed within its bucket by linear
// interpolation between the bucket's least and greatest latency. It is
// exact for buckets of one or two latencies, and otherwise within the
// bucket's range (a 1-2-5 step). 0 when h counts nothing.
func (h LatencyHistogram) Quantile(q float64) time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	rank := min(int64(q*float64(n)), n-1)
	for _, b := range h {
		if rank >= b.Count {
			rank -= b.Count
			continue
		}
		if b.Count == 1 {
			return b.Min
		}
		return b.Min + time.Duration(float64(b.Max-b.Min)*float64(rank)/float64(b.Count-1))
	}
	return h[len(h)-1].Max
}

// Max is the greatest latency h counts (0 when none).
func (h LatencyHistogram) Max() time.Duration {
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].Count > 0 {
			return h[i].Max
		}
	}
	return 0
}

// Destination is one destination of an org's deliveries, as its tasks
// name it: the unit back-pressure counts in (a dead webhook must not hold
// back the org's working SMS provider).
type Destination struct {
	OrgID int64
	Type  string // DeliveryTask.DestinationType
	ID    string // DeliveryTask.DestinationID
}

// Store is the state-of-record port. Methods are safe for concurrent use by
// many goroutines and, for PostgreSQL, by many processes. Records are
// scoped by OrgID wherever they belong to an org: an adapter never returns
// a record of another org than the one asked for.
type Store interface {
	Orgs
	Clients
	OTP
	Providers
	Subscriptions
	Deliveries
	Receipts
	SigningKeys
	Keys
	Applications
	LoginFlows
	PayloadEncryption
	Console
	Audit
	// Ping checks the database is reachable; /readyz uses it.
	Ping(ctx context.Context) error
	Close() error
}

// Orgs keeps tenants.
type Orgs interface {
	CreateOrg(ctx context.Context, name string) (Org, error) // ErrConflict on a duplicate name
	GetOrg(ctx context.Context, name string) (Org, error)
	GetOrgByID(ctx context.Context, id int64) (Org, error)
	ListOrgs(ctx context.Context) ([]Org, error)
}

// Clients keeps OAuth clients.
type Clients interface {
	CreateClient(ctx context.Context, c Client) error // ErrConflict on a duplicate ClientID
	GetClient(ctx context.Context, clientID string) (Client, error)
	ListClients(ctx context.Context, orgID int64) ([]Client, error)
	DeleteClient(ctx context.Context, orgID int64, clientID string) error
	// CountPlatformAdmins tells whether a first start must create one.
	CountPlatformAdmins(ctx context.Context) (int, error)
}

// OTP keeps SMS OTP settings, templates, challenges, failed-attempt
// counters, backup codes and abuse-limit counters.
type OTP interface {
	// GetOTPSettings returns ErrNotFound when the org never saved settings.
	GetOTPSettings(ctx context.Context, orgID int64) (OTPSettings, error)
	PutOTPSettings(ctx context.Context, s OTPSettings) error

	GetMessageTemplate(ctx context.Context, orgID int64, locale string) (MessageTemplate, error)
	PutMessageTemplate(ctx context.Context, t MessageTemplate) error
	DeleteMessageTemplate(ctx context.Context, orgID int64, locale string) error
	ListMessageTemplates(ctx context.Context, orgID int64) ([]MessageTemplate, error)

	// CreateChallenge checks lock (a user locked out gets a
	// *LockedOutError, and nothing is written), makes each of hits in
	// order (as HitCounter would) and stores c, all or nothing. (On SQLite
	// that is one transaction; on PostgreSQL the hits commit in one of
	// their own after c's, without waiting for its flush, and a c they
	// refuse is deleted again: a budget counter is a row every challenge
	// of an org updates.) A hit that takes
	// its counter past its Max ends it there: the hits made so far, that
	// one included, are committed, c and the later hits are not, and the
	// answer is an *OverBudgetError naming it (so a refused send is
	// charged to the budgets up to the one it exhausted, as HitCounter
	// calls in turn would be).
	CreateChallenge(ctx context.Context, c Challenge, lock Lockout, hits ...CounterHit) error
	GetChallenge(ctx context.Context, orgID int64, id string) (Challenge, error)
	// ClaimResend moves LastSentAt from from to to if the challenge still
	// has resends resends used, LastSentAt from, and is not consumed (else
	// ErrPrecondition). A resend claims its turn so before it sends (a
	// concurrent resend then finds the turn taken and sends nothing) and
	// gives it back the same way if the send fails. Of concurrent claims
	// of one turn at most one succeeds.
	ClaimResend(ctx context.Context, orgID int64, id string, resends int, from, to time.Time) error
	// ReplaceChallengeCode installs a resent OTP (its HMAC and its event's
	// jti) if the challenge still has prevResends resends used, LastSentAt
	// sentAt (the resend's claim) and is not consumed (else
	// ErrPrecondition): Resends becomes prevResends+1.
	ReplaceChallengeCode(ctx context.Context, orgID int64, id string, prevResends int, codeHMAC []byte, eventID string, expiresAt, sentAt time.Time) error
	// ConsumeChallenge marks the challenge consumed at now if it is not
	// consumed yet and its code is still codeHMAC (else ErrPrecondition).
	// Of concurrent calls at most one succeeds.
	ConsumeChallenge(ctx context.Context, orgID int64, id string, codeHMAC []byte, now time.Time) error
	// DeleteChallenge removes the org's challenge id (ErrNotFound when it
	// has none): authcore withdraws a challenge whose event could not be
	// queued (its ID was never disclosed, its OTP never sent) this way, so
	// that it neither verifies nor counts in OTPStats.
	DeleteChallenge(ctx context.Context, orgID int64, id string) error

	// ReserveFailedAttempt counts one verification attempt for the user
	// before its code is compared, if fewer than max (at least 1) are
	// counted, and returns the new count; a count whose last attempt is at
	// or before forgetAt (the lockout window ended) starts over at 1. The
	// attempt's time, now, becomes the last failure. When max are already
	// counted it changes nothing and returns ErrPrecondition. Of concurrent
	// reservations at most max succeed per window, so a burst of guesses
	// cannot outrun the lockout; a correct code then resets the count.
	ReserveFailedAttempt(ctx context.Context, orgID int64, userID string, max int, now, forgetAt time.Time) (int, error)
	// FailedAttempts returns 0 and the zero time (no error) for a user
	// without recorded failures.
	FailedAttempts(ctx context.Context, orgID int64, userID string) (count int, lastFailure time.Time, err error)
	ResetFailedAttempts(ctx context.Context, orgID int64, userID string) error

	// ReplaceBackupCodes deletes the user's codes and stores hashes, atomically.
	ReplaceBackupCodes(ctx context.Context, orgID int64, userID string, hashes [][]byte) error
	ListBackupCodes(ctx context.Context, orgID int64, userID string) ([]BackupCode, error)
	// UseBackupCode marks an unused code used (else ErrPrecondition); of
	// concurrent calls at most one succeeds.
	UseBackupCode(ctx context.Context, orgID int64, userID string, id int64, now time.Time) error

	// HitCounter adds one to the fixed-window counter (key, windowStart)
	// and returns the new value; rows past expiresAt may be purged.
	HitCounter(ctx context.Context, key string, windowStart, expiresAt time.Time) (int64, error)

	// OTPStats sums up the org's challenges started in [since, until), at
	// most MaxStatsWindow long (else an error), per hour from since (every
	// hour, empty ones too) and per country calling code (by Sent, then
	// code). A challenge counts in the hour it started, with its resends:
	// the store keeps how many, not when (resends come within minutes,
	// bounded by the OTP's expiry).
	OTPStats(ctx context.Context, orgID int64, since, until time.Time) (OTPStats, error)
}

// MaxStatsWindow bounds the window of OTPStats and OrgDeliveryStats; challenges are kept at least
// this long (plus a day) after their expiry so that it reads all of them.
const MaxStatsWindow = 7 * 24 * time.Hour

// OTPStats is what OTPStats returns.
type OTPStats struct {
	Hours     []OTPHourStats
	Countries []OTPCountryStats
}

// OTPHourStats are the challenges started in the hour from Start.
type OTPHourStats struct {
	Start time.Time
	// Sent counts SMS OTPs issued: one per challenge and one per resend.
	Sent int64
	// Verified counts challenges verified (consumed), with the SMS code or
	// a backup code.
	Verified int64
}

// OTPCountryStats are the window's challenges to one country calling code.
type OTPCountryStats struct {
	CountryCode int // 0: unknown
	Sent        int64
	Verified    int64
	// Delivered counts challenges whose current OTP's SMS a delivery
	// receipt reports delivered to the handset (from either provider
	// slot); Receipts those whose current SMS has any receipt at all, so
	// 0 means no receipts are configured rather than no SMS arrived.
	Delivered int64
	Receipts  int64
}

// Providers keeps SMS provider configurations.
type Providers interface {
	GetSMSProvider(ctx context.Context, orgID int64, slot string) (SMSProvider, error)
	PutSMSProvider(ctx context.Context, p SMSProvider) error
	DeleteSMSProvider(ctx context.Context, orgID int64, slot string) error
}

// Subscriptions keeps WebSub subscriptions.
type Subscriptions interface {
	// UpsertSubscription creates or updates in place the subscription of
	// (OrgID, Topic, Callback), keeping its ID, and returns the stored record.
	UpsertSubscription(ctx context.Context, s Subscription) (Subscription, error)
	// UpsertSubscriptionWithin is UpsertSubscription, except that creating
	// a subscription fails with ErrLimit when the org already has max
	// whose lease has not ended at now (an update always passes). The
	// count and the insert are one atomic step: of concurrent creations in
	// any number of processes, the org never ends up with more than max.
	UpsertSubscriptionWithin(ctx context.Context, s Subscription, max int, now time.Time) (Subscription, error)
	GetSubscription(ctx context.Context, orgID int64, id string) (Subscription, error)
	FindSubscription(ctx context.Context, orgID int64, topic, callback string) (Subscription, error)
	ListSubscriptions(ctx context.Context, orgID int64) ([]Subscription, error)
	// ActiveSubscriptions returns the active subscriptions of topic whose
	// lease has not expired at now.
	ActiveSubscriptions(ctx context.Context, orgID int64, topic string, now time.Time) ([]Subscription, error)
	SetSubscriptionState(ctx context.Context, orgID int64, id, state string) error
	DeleteSubscription(ctx context.Context, orgID int64, id string) error
	// ExpireSubscriptions deletes subscriptions whose lease ended before now
	// and returns how many.
	ExpireSubscriptions(ctx context.Context, now time.Time) (int, error)
}

// Deliveries keeps delivery tasks and their attempt log.
type Deliveries interface {
	// InsertDeliveryTasks stores tasks (with their attempt logs) in one
	// transaction; a task whose (OrgID, EventSource, EventID,
	// DestinationType, DestinationID) exists already is skipped. Returns how
	// many were inserted. The key includes the org and the producer: jtis
	// are chosen by publishers and provider destination IDs are slot names,
	// so two orgs, or two producers, may share both.
	InsertDeliveryTasks(ctx context.Context, tasks []DeliveryTask, attempts []DeliveryAttempt) (int, error)
	// LeaseDueTasks leases up to limit pending tasks due at now (and not
	// leased by another owner) to owner until now+lease, oldest due first.
	// Two owners never hold the same task. A task whose lease has not run
	// out is not returned again, not even to its own owner (so a loop that
	// leases repeatedly never runs a task twice at once); once the lease
	// has run out any owner may take it.
	LeaseDueTasks(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]DeliveryTask, error)
	// CompleteAttempt appends attempt to the task's log, applies u, adds one
	// to Attempts and releases the lease, if owner still holds it (else
	// ErrPrecondition).
	CompleteAttempt(ctx context.Context, taskID, owner string, attempt DeliveryAttempt, u TaskUpdate) error
	// DeferDelivery releases owner's lease on a pending task and makes it
	// due at nextAttemptAt without counting an attempt or appending to its
	// log (the dispatcher defers a task whose endpoint's circuit is open or
	// whose endpoint is at its concurrency cap). ErrPrecondition if owner no
	// longer holds the lease.
	DeferDelivery(ctx context.Context, taskID, owner string, nextAttemptAt time.Time) error
	// CompleteAttempts applies CompleteAttempt to each item, for owner, in
	// one transaction (one commit, however many items: the retry path's
	// group commit). errs[i] is items[i]'s outcome: nil, ErrPrecondition or
	// ErrNotFound, which do not stop the others. A non-nil err means the
	// transaction failed and nothing was applied.
	CompleteAttempts(ctx context.Context, owner string, items []AttemptCompletion) (errs []error, err error)
	GetDelivery(ctx context.Context, orgID int64, id string) (DeliveryTask, []DeliveryAttempt, error)
	// FindDelivery returns the org's task of (source, eventID, destType,
	// destID) (ErrNotFound when there is none, even if another org or
	// another producer has one).
	FindDelivery(ctx context.Context, orgID int64, source, eventID, destType, destID string) (DeliveryTask, error)
	ListDeliveries(ctx context.Context, orgID int64, f DeliveryFilter) ([]DeliveryTask, error)
	// RequeueDelivery makes a non-pending task pending again, due at now,
	// with expiresAt as its new bound.
	RequeueDelivery(ctx context.Context, orgID int64, id string, now, expiresAt time.Time) error
	// RequeueDeliveries does the same for every task of the org with one of
	// statuses created at or after since; returns how many.
	RequeueDeliveries(ctx context.Context, orgID int64, statuses []string, since, now, expiresAt time.Time) (int, error)
	// RequeueDeliveriesOfType is RequeueDeliveries for the tasks of one
	// destination type (the replay API requeues webhook deliveries in
	// bulk, and SMS ones one by one, each charged to the SMS budgets).
	RequeueDeliveriesOfType(ctx context.Context, orgID int64, destType string, statuses []string, since, now, expiresAt time.Time) (int, error)
	// DeliveryStats counts every org's pending and dead tasks, for
	// metrics; it reads those rows only (through partial indexes), never
	// the finished ones kept for the retention.
	DeliveryStats(ctx context.Context) (DeliveryStats, error)
	// OrgDeliveryStats sums up the org's delivery tasks created in [since,
	// until), at most MaxStatsWindow long (else an error), per hour from
	// since (every hour, empty ones too): outcomes of webhook and SMS
	// deliveries, what delivery receipts said of the SMS, and latency
	// histograms of delivered webhooks and of SMS to the handset. A few
	// GROUP BYs over the window's tasks; finished tasks are kept
	// dispatcher.Config.Retention (7 days by default) after their last
	// update, so a shorter retention leaves the oldest hours short.
	OrgDeliveryStats(ctx context.Context, orgID int64, since, until time.Time) (OrgDeliveryStats, error)
	// PendingByDestination counts pending tasks per destination and returns
	// the destinations with more than over of them (over 0: every
	// destination with any). One GROUP BY over the pending tasks: the
	// publish back-pressure gate runs it every few seconds.
	PendingByDestination(ctx context.Context, over int64) (map[Destination]int64, error)
	// PurgeDeliveries deletes finished (non-pending) tasks updated before
	// cutoff, with their attempts; returns how many.
	PurgeDeliveries(ctx context.Context, cutoff time.Time) (int, error)
}

// PayloadSettings are an org's payload encryption settings.
type PayloadSettings struct {
	// Enabled: the org's Asgardeo-format deliveries are encrypted.
	Enabled bool
	// KeyGeneration is the current key's generation (0 until the first
	// rotation); the keys themselves are data keys.
	KeyGeneration int64
	UpdatedAt     time.Time
}

// PayloadEncryption keeps the orgs' payload encryption settings.
type PayloadEncryption interface {
	// GetPayloadSettings returns the zero settings (no error) for an org
	// that never set them.
	GetPayloadSettings(ctx context.Context, orgID int64) (PayloadSettings, error)
	// SetPayloadEncryption turns encryption on or off, keeping the key
	// generation.
	SetPayloadEncryption(ctx context.Context, orgID int64, enabled bool) error
	// RotatePayloadKey makes the next key generation current, atomically
	// (of concurrent rotations each moves it one step), and returns the
	// new settings.
	RotatePayloadKey(ctx context.Context, orgID int64) (PayloadSettings, error)
}

// Handset states of an SMS, as delivery receipts report them. Receipts
// may arrive out of order and more than once: a state never goes back to
// one of lower rank (queued < sent < undelivered = failed < delivered;
// a carrier's late "delivered" overrides an earlier failure).
const (
	HandsetQueued      = "queued"      // the provider holds the message
	HandsetSent        = "sent"        // handed to the carrier; no handset receipt yet
	HandsetDelivered   = "delivered"   // the handset got it
	HandsetUndelivered = "undelivered" // the carrier could not deliver it
	HandsetFailed      = "failed"      // the provider could not send it
)

// Failover outcomes of an SMS receipt record.
const (
	FailoverSent       = "sent"        // a fallback delivery task was created
	FailoverNoFallback = "no_fallback" // the org has no fallback provider
)

// ReceiptKey names one SMS delivery: the key of its delivery task.
type ReceiptKey struct {
	OrgID           int64
	EventID         string // jti
	DestinationType string // twilio | vonage | custom
	DestinationID   string // provider slot
}

// SMSReceipt is what otphub knows of one SMS after it was handed to a
// provider: the provider's message ID, the handset state and when each
// state was first reported, and whether it failed over.
type SMSReceipt struct {
	ReceiptKey
	// EventSource is the producer (iss) of the accepted SMS's event: with
	// the key it names the delivery task a failover copies the event of.
	// "" until the acceptance is recorded.
	EventSource       string
	ProviderMessageID string
	CountryCode       int       // calling code of the recipient; 0 unknown
	AcceptedAt        time.Time // the provider's API accepted it; zero when a receipt came first
	ExpiresAt         time.Time // the OTP's expiry
	// ReceiptDueAt: with no final receipt by then the SMS fails over.
	// Zero when no receipt is expected (receipts not configured).
	ReceiptDueAt  time.Time
	State         string // a Handset* state; "" before any receipt
	ErrorCode     string // the provider's error code of the latest failure, if any
	QueuedAt      time.Time
	SentAt        time.Time
	DeliveredAt   time.Time
	FailedAt      time.Time // undelivered or failed
	LastReceiptAt time.Time // when the latest receipt was received
	Receipts      int       // receipts applied (duplicates not counted)
	// FailoverStatus is "" until the record failed over (Failover*).
	FailoverStatus string
	FailoverReason string // undelivered | failed | no_receipt
	FailoverAt     time.Time
	UpdatedAt      time.Time
}

// Receipt is one delivery receipt, as a provider's callback reports it.
type Receipt struct {
	ReceiptKey
	ProviderMessageID string // "" when the callback does not carry it
	State             string // a Handset* state
	ErrorCode         string
	At                time.Time // the provider's time of the state; zero: ReceivedAt
	ReceivedAt        time.Time
	CountryCode       int // 0 when unknown
}

// ReceiptResult is what ApplyReceipt did.
type ReceiptResult struct {
	Receipt  SMSReceipt // the record after the receipt
	Previous string     // State before it
	// Changed: the state or one of its timestamps moved (false for a
	// duplicate or a stale, lower-ranked receipt).
	Changed bool
}

// Failover is the outcome FailOver records for a receipt record: Status
// (Failover*), Reason, At, and for FailoverSent the fallback's delivery
// task (ID, DestinationType, DestinationID, NextAttemptAt, ExpiresAt; the
// event is copied from the primary's task).
type Failover struct {
	Status string
	Reason string
	At     time.Time
	Task   *DeliveryTask
}

// Receipts keeps what SMS delivery receipts report.
type Receipts interface {
	// RecordSMSAccepted stores that the provider accepted the SMS of r's
	// key: ProviderMessageID, CountryCode, AcceptedAt, ExpiresAt and
	// ReceiptDueAt. Receipts that arrived first are kept (their state
	// wins); a record whose ProviderMessageID differs is replaced.
	RecordSMSAccepted(ctx context.Context, r SMSReceipt) error
	// ApplyReceipt merges one receipt into its record (creating it when
	// the receipt came first), atomically: a state of lower rank than the
	// record's is not applied, but the first time of each state is kept
	// (a late "sent" still stamps SentAt). ErrPrecondition when both the
	// record and the receipt name a provider message ID and they differ.
	ApplyReceipt(ctx context.Context, rc Receipt) (ReceiptResult, error)
	GetSMSReceipt(ctx context.Context, key ReceiptKey) (SMSReceipt, error)
	// SMSReceiptsOfEvent returns the org's receipt records of eventID.
	SMSReceiptsOfEvent(ctx context.Context, orgID int64, eventID string) ([]SMSReceipt, error)
	// DueFailovers returns up to limit primary-slot records that have not
	// failed over, whose OTP has not expired at now, and that either
	// ended undelivered or failed, or expected a final receipt by now and
	// have none.
	DueFailovers(ctx context.Context, now time.Time, limit int) ([]SMSReceipt, error)
	// FailOver records f on key's record if it has not failed over yet
	// (else ErrPrecondition) and, for FailoverSent, inserts f.Task in the
	// same transaction with the event of the record's own delivery task
	// (ErrNotFound when that task does not exist). Of concurrent calls at
	// most one succeeds: an SMS fails over once.
	FailOver(ctx context.Context, key ReceiptKey, f Failover) error
}

// Keys keeps data keys and moves secrets to the current encryption key
// after a rotation.
type Keys interface {
	// DataKey returns the data key stored (sealed) under name. The first call
	// for a name stores initial()'s result; of concurrent first calls, in any
	// process, one value wins and every caller gets it.
	DataKey(ctx context.Context, name string, initial func() ([]byte, error)) ([]byte, error)
	// Reseal re-encrypts under the current encryption key every stored
	// secret sealed under a previous one, in small transactions that never
	// overwrite a concurrent change. It makes one pass and reports what it
	// did and what is left (values written meanwhile under an old key by a
	// process still configured with it, or values no configured key opens).
	Reseal(ctx context.Context) (ResealResult, error)
}

// ResealResult reports one Reseal pass.
type ResealResult struct {
	Resealed int64 // values re-encrypted under the current key
	// Remaining counts values still not under the current key after the
	// pass; Unreadable of them open under no configured key.
	Remaining  int64
	Unreadable int64
}

// Applications keeps the relying parties of the hosted login step.
type Applications interface {
	// CreateApplication stores a; ErrConflict on a duplicate ID or ClientID.
	CreateApplication(ctx context.Context, a Application) error
	GetApplication(ctx context.Context, orgID int64, id string) (Application, error)
	// GetApplicationByClientID finds an application of any org by its
	// client id (the authorization and token endpoints know only that).
	GetApplicationByClientID(ctx context.Context, clientID string) (Application, error)
	ListApplications(ctx context.Context, orgID int64) ([]Application, error) // by creation
	// UpdateApplication replaces Name, RedirectURIs, FirstFactors,
	// BackupCodes and UpdatedAt of the org's application a.ID.
	UpdateApplication(ctx context.Context, a Application) error
	// SetApplicationSecret replaces the org's application's client secret
	// (a rotation); the old one stops working at once.
	SetApplicationSecret(ctx context.Context, orgID int64, id string, secret []byte, at time.Time) error
	DeleteApplication(ctx context.Context, orgID int64, id string) error
}

// LoginFlows keeps hosted login flows and their authorization codes.
type LoginFlows interface {
	// CreateLoginFlow stores f; flows long past their expiry are purged
	// now and then.
	CreateLoginFlow(ctx context.Context, f LoginFlow) error
	GetLoginFlow(ctx context.Context, id string) (LoginFlow, error)
	// SetLoginFlowChallenge records the flow's SMS challenge if it has none
	// and is not completed (else ErrPrecondition): of concurrent first
	// sends one wins.
	SetLoginFlowChallenge(ctx context.Context, id, challengeID string) error
	// CompleteLoginFlow marks the flow completed at by method and installs
	// its authorization code, if it is not completed yet (else
	// ErrPrecondition).
	CompleteLoginFlow(ctx context.Context, id, method string, at time.Time, codeHash []byte, codeExpiresAt time.Time) error
	// RedeemAuthorizationCode marks the code of hash used at now and returns
	// its flow: ErrNotFound for an unknown code, ErrPrecondition for a code
	// already used or expired. Of concurrent redemptions at most one
	// succeeds.
	RedeemAuthorizationCode(ctx context.Context, codeHash []byte, now time.Time) (LoginFlow, error)
}

// SigningKeys keeps the token issuer's keys.
type SigningKeys interface {
	InsertSigningKey(ctx context.Context, k SigningKey) error
	ListSigningKeys(ctx context.Context) ([]SigningKey, error) // newest first
	RetireSigningKey(ctx context.Context, kid string, at time.Time) error
	DeleteSigningKey(ctx context.Context, kid string) error
}

// ConsoleUser is a person who signs in to the console: an org admin
// (OrgID set) or a platform admin (OrgID 0).
type ConsoleUser struct {
	ID           int64
	Email        string // unique, lower case
	OrgID        int64  // 0 for a platform admin
	Name         string
	PasswordHash string // PHC-encoded argon2id hash computed by package console; never the password
	Mobile       string // E.164, for the SMS OTP second factor; "" when none
	CreatedAt    time.Time
}

// Invitation is a single-use, expiring link that lets its holder create a
// console user. Only a hash of its token is stored.
type Invitation struct {
	ID        int64
	TokenHash []byte // SHA-256 of the token in the link
	Email     string
	OrgID     int64  // 0 invites a platform admin
	CreatedBy string // who made it: a console user's email, "setup" for the first admin
	ExpiresAt time.Time
	UsedAt    time.Time // zero until accepted
	CreatedAt time.Time
}

// ConsoleSession is a signed-in browser. Only a hash of the cookie's
// session ID is stored.
type ConsoleSession struct {
	IDHash     []byte // SHA-256 of the session ID
	UserID     int64
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time // absolute end, however active the session
	IP         string
}

// Console keeps console users, invitations and sessions.
type Console interface {
	// CreateInvitation stores inv (TokenHash unique; ErrConflict otherwise)
	// and returns it with its ID and CreatedAt.
	CreateInvitation(ctx context.Context, inv Invitation) (Invitation, error)
	// GetInvitation returns the invitation with tokenHash, used or not.
	GetInvitation(ctx context.Context, tokenHash []byte) (Invitation, error)
	// ListInvitations returns unused invitations not expired at now, newest first.
	ListInvitations(ctx context.Context, now time.Time) ([]Invitation, error)
	// AcceptInvitation marks the invitation with tokenHash used at now and
	// creates u from it (OrgID is the invitation's, and so is Email unless
	// the invitation names none: the first admin's setup link, which is
	// refused once a platform admin exists), in one transaction:
	// ErrNotFound for no such invitation, ErrPrecondition when it is used
	// or expired at now, ErrConflict when the email has a user. Of
	// concurrent calls at most one succeeds.
	AcceptInvitation(ctx context.Context, tokenHash []byte, now time.Time, u ConsoleUser) (ConsoleUser, error)
	GetConsoleUser(ctx context.Context, id int64) (ConsoleUser, error)
	GetConsoleUserByEmail(ctx context.Context, email string) (ConsoleUser, error)
	// ListConsoleUsers returns every console user, by ID.
	ListConsoleUsers(ctx context.Context) ([]ConsoleUser, error)
	// CountConsolePlatformAdmins tells whether the first admin's setup link is needed.
	CountConsolePlatformAdmins(ctx context.Context) (int, error)
	// SetConsolePassword replaces the user's password hash and ends every
	// session of the user but keepSession (the one that changed it; nil
	// for none), in one transaction.
	SetConsolePassword(ctx context.Context, userID int64, hash string, keepSession []byte) error
	// DeleteConsoleUser removes the user and their sessions.
	DeleteConsoleUser(ctx context.Context, userID int64) error

	// CreateConsoleSession stores s; sessions expired (absolute end) long
	// ago may be purged meanwhile.
	CreateConsoleSession(ctx context.Context, s ConsoleSession) error
	GetConsoleSession(ctx context.Context, idHash []byte) (ConsoleSession, error)
	// TouchConsoleSession sets LastSeenAt (idle timeout).
	TouchConsoleSession(ctx context.Context, idHash []byte, now time.Time) error
	DeleteConsoleSession(ctx context.Context, idHash []byte) error
	// DeleteConsoleSessions ends every session of the user (sign out
	// everywhere) and returns how many.
	DeleteConsoleSessions(ctx context.Context, userID int64) (int, error)

	// CreatePortalLink stores l and returns it with its ID and CreatedAt.
	CreatePortalLink(ctx context.Context, l PortalLink) (PortalLink, error)
	// UsePortalLink marks the link with tokenHash used at now and returns
	// it: ErrNotFound for no such link, ErrPrecondition when it is used or
	// expired at now. Of concurrent calls at most one succeeds.
	UsePortalLink(ctx context.Context, tokenHash []byte, now time.Time) (PortalLink, error)
	// GetPortalLink returns the org's link with id.
	GetPortalLink(ctx context.Context, orgID, id int64) (PortalLink, error)
}

// PortalLink is a single-use, short-lived link that opens chosen console
// sections of one org without an account. Only a hash of its token is stored.
type PortalLink struct {
	ID             int64
	TokenHash      []byte
	OrgID          int64
	Sections       []string // e.g. webhooks, deliveries
	FrameAncestors []string // origins that may frame the portal; empty: none
	CreatedBy      string   // the audit actor that made it
	ExpiresAt      time.Time
	UsedAt         time.Time
	CreatedAt      time.Time
}

// AuditEntry is one change made through the API or the console.
type AuditEntry struct {
	ID        int64 // increasing; assigned by the store
	At        time.Time
	Org       string // the org's name; "" for platform-wide changes
	Actor     string // "client:<id>" or "user:<email>"
	Action    string // e.g. "PUT /api/v1/orgs/{org}/sms-otp/settings", "console.sign_in"
	Target    string // the path or object acted on
	Status    int    // HTTP status of the change; 0 when not an HTTP request
	IP        string
	RequestID string
}

// AuditFilter selects audit entries, newest first.
type AuditFilter struct {
	Org      string // "" with AllOrgs false: platform-wide entries only
	AllOrgs  bool   // every entry (the platform admin's view)
	BeforeID int64  // pagination cursor: entries with ID < BeforeID; 0 for the newest
	Limit    int    // <= 0 means 100; capped at 1000
}

// Audit keeps the audit log (append only).
type Audit interface {
	AppendAudit(ctx context.Context, e AuditEntry) error
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, error)
}
