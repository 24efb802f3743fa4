// Package twilio delivers an org's OTP SMS through Twilio's Programmable
// Messaging API (CreateMessage) with the official twilio-go client, and
// classifies Twilio's answers into delivery.Result.
//
// twilio-go is used for what it is good at (request encoding, credentials,
// Twilio's error body); otphub keeps control of the wire: every request goes
// through the caller's *http.Client (the SSRF-guarded egress client), honours
// the Send context (twilio-go itself builds requests without one), may be
// sent to a configured base URL instead of https://api.twilio.com, and its
// response body is size-limited.
package twilio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	twclient "github.com/twilio/twilio-go/client"
	api "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/event"
)

// DefaultBaseURL is Twilio's REST API origin; the generated client
// hard-codes it, Sender rewrites it to Config.BaseURL.
const DefaultBaseURL = "https://api.twilio.com"

// Validity period bounds Twilio accepts (seconds).
const (
	MinValidityPeriod = 1
	MaxValidityPeriod = 36000
)

// maxResponseBody caps how much of a Twilio answer is read.
const maxResponseBody = 256 << 10

// Config is one Twilio account's sending configuration, as the provider
// config API reads and writes it (JSON) and the store keeps it.
type Config struct {
	AccountSID string `json:"accountSid,omitempty"` // AC + 32 hex digits; required
	AuthToken  string `json:"authToken,omitempty"`  // secret; required; alphanumeric (twilio-go refuses anything else)
	// MessagingServiceSID (MG…), when set, is sent instead of From and lets
	// Twilio pick the sender from the service's pool.
	MessagingServiceSID string `json:"messagingServiceSid,omitempty"`
	// From is the sender: an E.164 number, a short code or an alphanumeric
	// sender ID. Required unless MessagingServiceSID is set.
	From string `json:"sender,omitempty"`
	// BaseURL replaces https://api.twilio.com (regional edge, test server).
	// Default DefaultBaseURL.
	BaseURL string `json:"baseUrl,omitempty"`
	// DeliveryReceipts asks Twilio for status callbacks (docs/providers.md,
	// "Delivery receipts"); they are signed with AuthToken.
	DeliveryReceipts bool `json:"deliveryReceipts,omitempty"`
	// StatusCallback, if set, returns the StatusCallback URL of ev's
	// message: Twilio posts each status change of the message there. ""
	// sends none. Not configuration: NewSender sets it.
	StatusCallback func(ev *event.SmsOtpNotificationEvent) string `json:"-"`
}

// Sender sends OTP SMS through one Twilio account. It is safe for
// concurrent use.
type Sender struct {
	cfg    Config
	base   string // without trailing slash
	origin string // scheme://host of base
	client *http.Client
	now    func() time.Time
}

// New returns a Sender for cfg that sends with client (nil: a client that
// never follows redirects). now is the clock used for ValidityPeriod (nil:
// time.Now).
func New(cfg Config, client *http.Client, now func() time.Time) (*Sender, error) {
	if cfg.AccountSID == "" || cfg.AuthToken == "" {
		return nil, errors.New("twilio: account SID and auth token are required")
	}
	if cfg.From == "" && cfg.MessagingServiceSID == "" {
		return nil, errors.New("twilio: a sender or a messaging service SID is required")
	}
	base, origin, ok := delivery.ProviderBase(cfg.BaseURL, DefaultBaseURL)
	if !ok {
		return nil, fmt.Errorf("twilio: base URL %q is not an absolute http(s) URL", cfg.BaseURL)
	}
	if client == nil {
		client = delivery.SenderClient()
	}
	if now == nil {
		now = time.Now
	}
	return &Sender{cfg: cfg, base: base, origin: origin, client: client, now: now}, nil
}

// Endpoint keys the circuit breaker and concurrency cap: the host and the
// account, since Twilio throttles (429, 20429) and fails per account. Orgs
// with their own accounts never share a breaker, however many use
// api.twilio.com. (The account SID is an identifier, not a secret.)
func (s *Sender) Endpoint() string { return s.origin + "#" + s.cfg.AccountSID }

// Send creates one Message for ev. ProviderID is the message SID.
func (s *Sender) Send(ctx context.Context, ev *event.SmsOtpNotificationEvent) delivery.Result {
	if ev.SendTo == "" || ev.MessageBody == "" {
		return delivery.Result{Reason: delivery.ReasonInvalid, Err: errors.New("twilio: the event has no recipient or no message body")}
	}
	params := &api.CreateMessageParams{}
	params.SetTo(ev.SendTo)
	if s.cfg.MessagingServiceSID != "" {
		params.SetMessagingServiceSid(s.cfg.MessagingServiceSID)
	} else {
		params.SetFrom(s.cfg.From)
	}
	params.SetBody(ev.MessageBody)
	params.SetValidityPeriod(ValidityPeriod(ev.Expiry(), s.now()))
	if s.cfg.StatusCallback != nil {
		if u := s.cfg.StatusCallback(ev); u != "" {
			params.SetStatusCallback(u)
		}
	}

	rec := &recorder{}
	svc := api.NewApiService(s.handler(ctx, rec))
	msg, err := svc.CreateMessage(params)
	// twilio-go does not close the body of an error answer.
	rec.closeBody()
	return classify(ctx, rec, msg, err)
}

// ValidityPeriod is the number of whole seconds until expiry, clamped to
// the range Twilio accepts: an OTP that expires sooner is not worth
// delivering later.
func ValidityPeriod(expiry, now time.Time) int {
	left := int(expiry.Sub(now) / time.Second)
	return max(MinValidityPeriod, min(MaxValidityPeriod, left))
}

// handler builds a per-send twilio-go request handler whose HTTP client
// carries ctx and records the raw answer, and whose URLs point at s.base.
func (s *Sender) handler(ctx context.Context, rec *recorder) *twclient.RequestHandler {
	base := s.client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	hc := &http.Client{
		Transport:     &ctxTransport{ctx: ctx, base: base, rec: rec},
		CheckRedirect: s.client.CheckRedirect,
		Timeout:       s.client.Timeout,
	}
	if hc.CheckRedirect == nil {
		hc.CheckRedirect = delivery.NoRedirect
	}
	tc := &twclient.Client{
		Credentials: twclient.NewCredentials(s.cfg.AccountSID, s.cfg.AuthToken),
		HTTPClient:  hc,
	}
	tc.SetAccountSid(s.cfg.AccountSID)
	// Edge and region come from our base URL, never from TWILIO_EDGE /
	// TWILIO_REGION in the server's environment.
	return &twclient.RequestHandler{Client: &rebased{Client: tc, base: s.base}}
}

// rebased sends twilio-go's requests to base instead of api.twilio.com.
type rebased struct {
	*twclient.Client
	base string
}

func (r *rebased) SendRequest(method, rawURL string, data url.Values, headers map[string]any, body ...byte) (*http.Response, error) {
	if rest, ok := strings.CutPrefix(rawURL, DefaultBaseURL); ok {
		rawURL = r.base + rest
	}
	return r.Client.SendRequest(method, rawURL, data, headers, body...)
}

// recorder keeps what the one request of a send got back.
type recorder struct {
	mu     sync.Mutex
	status int
	header http.Header
	body   io.Closer
}

func (r *recorder) closeBody() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.body != nil {
		_ = r.body.Close()
	}
}

func (r *recorder) get() (int, http.Header) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status, r.header
}

// ctxTransport gives twilio-go's context-less requests the send's context,
// records the status, and caps the body.
type ctxTransport struct {
	ctx  context.Context
	base http.RoundTripper
	rec  *recorder
}

func (t *ctxTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req.WithContext(t.ctx))
	if err != nil {
		return nil, err
	}
	t.rec.mu.Lock()
	t.rec.status = resp.StatusCode
	t.rec.header = resp.Header
	t.rec.body = resp.Body
	t.rec.mu.Unlock()
	resp.Body = &limitedBody{r: io.LimitReader(resp.Body, maxResponseBody), c: resp.Body}
	return resp, nil
}

type limitedBody struct {
	r io.Reader
	c io.Closer
}

func (b *limitedBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *limitedBody) Close() error               { return b.c.Close() }

// Twilio error codes with a classification of their own.
const (
	CodeAuthenticate     = 20003 // bad credentials
	CodeTooManyRequests  = 20429 // throttled
	CodeInvalidTo        = 21211 // invalid 'To' number
	CodeRegionDisabled   = 21408 // permission to send to this region not enabled
	CodeUnsubscribed     = 21610 // recipient replied STOP
	CodePremiumForbidden = 21268 // premium numbers cannot receive
)

func classify(ctx context.Context, rec *recorder, msg *api.ApiV2010Message, err error) delivery.Result {
	status, header := rec.get()
	if err == nil {
		if status >= 300 && status < 400 {
			return delivery.Result{Reason: delivery.ReasonRedirect, StatusCode: status,
				Err: fmt.Errorf("twilio: answered %d; redirects are not followed", status)}
		}
		res := delivery.Result{OK: true, StatusCode: status}
		if msg != nil && msg.Sid != nil {
			res.ProviderID = *msg.Sid
		}
		return res
	}
	var te *twclient.TwilioRestError
	if errors.As(err, &te) {
		if status == 0 {
			status = te.Status
		}
		r := classifyAnswer(status, te.Code, header, time.Now())
		r.Err = fmt.Errorf("twilio: %d error %d: %s", status, te.Code, te.Message)
		return r
	}
	if status != 0 {
		// An answer that is not Twilio's error JSON (a proxy's HTML 502,
		// a truncated body…).
		if status >= 200 && status < 300 {
			// Twilio created the message; only its description was lost.
			// Retrying would send the OTP twice.
			return delivery.Result{OK: true, StatusCode: status}
		}
		r := classifyAnswer(status, 0, header, time.Now())
		r.Err = fmt.Errorf("twilio: %d answer without a Twilio error body", status)
		return r
	}
	return transportError(ctx, err)
}

// classifier is Twilio's status table: the providers' table, where a 2xx
// that is not a Message (an error body with a success status) is Twilio
// misbehaving, worth a retry.
var classifier = delivery.Provider.With(map[int]delivery.Rule{2: {Retry: true, Reason: delivery.ReasonServerError}})

// codes refine a 4xx answer by its Twilio error code; any other code on a
// permanent 4xx is the provider refusing the message.
var codes = map[int]delivery.Rule{
	CodeTooManyRequests: {Retry: true, Reason: delivery.ReasonRateLimited},
	CodeAuthenticate:    {Reason: delivery.ReasonAuthError},
}

// Classify maps a Twilio HTTP status and error code (0 when none) to a
// Result: the providers' table (429, 408, 425 and 5xx retry; 401/403 are
// credential errors; other 4xx permanent), refined by the error code
// (20429 throttled, 20003 credentials, any other code on a permanent 4xx:
// the provider refused the message).
func Classify(status, code int) delivery.Result {
	return classifyAnswer(status, code, nil, time.Time{})
}

func classifyAnswer(status, code int, header http.Header, now time.Time) delivery.Result {
	rule := classifier.Rule(status)
	if status >= 400 && status < 500 && code != 0 {
		if c, ok := codes[code]; ok {
			rule = c
		} else if !rule.Retry && rule.Reason == delivery.ReasonClientError {
			rule.Reason = delivery.ReasonProviderRefused
		}
	}
	return rule.Result(status, header, now)
}

// transportError classifies a send that got no usable answer; an
// unreadable error body from Twilio is its server's fault, worth a retry.
func transportError(ctx context.Context, err error) delivery.Result {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return delivery.Result{Retry: true, Reason: delivery.ReasonServerError, Err: fmt.Errorf("twilio: %w", err)}
	}
	return delivery.ClassifyTransport(ctx, "twilio", err)
}
