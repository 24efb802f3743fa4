// Package vonage delivers an org's OTP SMS through the Vonage (Nexmo) SMS
// API: a form POST to <base>/sms/json. An HTTP 200 is not success by
// itself; every part's messages[].status must be "0".
package vonage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/event"
)

// DefaultBaseURL is the Vonage SMS API origin.
const DefaultBaseURL = "https://rest.nexmo.com"

const maxResponseBody = 64 << 10

// Config is one Vonage account's sending configuration, as the provider
// config API reads and writes it (JSON) and the store keeps it.
type Config struct {
	APIKey    string `json:"apiKey,omitempty"`    // required
	APISecret string `json:"apiSecret,omitempty"` // secret; required
	// From is the sender: a number (a leading '+' is dropped, Vonage wants
	// digits) or an alphanumeric sender ID. Required.
	From string `json:"sender,omitempty"`
	// BaseURL replaces https://rest.nexmo.com (test server, local gateway).
	// Default DefaultBaseURL.
	BaseURL string `json:"baseUrl,omitempty"`
	// SignatureSecret and SignatureMethod verify the account's signed
	// delivery receipts (its dashboard's settings); receipts need them.
	SignatureSecret string `json:"signatureSecret,omitempty"` // secret
	SignatureMethod string `json:"signatureMethod,omitempty"`
	// Callback, if set, returns the delivery receipt URL of ev's SMS (the
	// SMS API's per-message callback, overriding the dashboard's); ""
	// sends none. Not configuration: NewSender sets it.
	Callback func(ev *event.SmsOtpNotificationEvent) string `json:"-"`
}

// Sender sends OTP SMS through one Vonage account. Safe for concurrent use.
type Sender struct {
	cfg      Config
	endpoint string // <base>/sms/json
	origin   string // scheme://host#apikey: the breaker key
	client   *http.Client
}

// New returns a Sender for cfg that sends with client (nil: a client that
// never follows redirects).
func New(cfg Config, client *http.Client) (*Sender, error) {
	if cfg.APIKey == "" || cfg.APISecret == "" || cfg.From == "" {
		return nil, errors.New("vonage: API key, API secret and sender are required")
	}
	base, origin, ok := delivery.ProviderBase(cfg.BaseURL, DefaultBaseURL)
	if !ok {
		return nil, fmt.Errorf("vonage: base URL %q is not an absolute http(s) URL", cfg.BaseURL)
	}
	if client == nil {
		client = delivery.SenderClient()
	}
	return &Sender{cfg: cfg, endpoint: base + "/sms/json", origin: origin + "#" + cfg.APIKey, client: client}, nil
}

// Endpoint keys the circuit breaker and concurrency cap: the host and the
// API key, since Vonage throttles per account. Orgs with their own
// accounts never share a breaker. (The API key is an identifier; the
// secret is never part of it.)
func (s *Sender) Endpoint() string { return s.origin }

// Form returns the form fields Send posts for ev.
func (s *Sender) Form(ev *event.SmsOtpNotificationEvent) url.Values {
	f := url.Values{
		"api_key":    {s.cfg.APIKey},
		"api_secret": {s.cfg.APISecret},
		"from":       {strings.TrimPrefix(s.cfg.From, "+")},
		"to":         {strings.TrimPrefix(ev.SendTo, "+")},
		"text":       {ev.MessageBody},
	}
	if ev.ID != "" {
		f.Set("client-ref", ev.ID)
	}
	if !IsGSM7(ev.MessageBody) {
		f.Set("type", "unicode")
	}
	if s.cfg.Callback != nil {
		if u := s.cfg.Callback(ev); u != "" {
			f.Set("callback", u)
		}
	}
	return f
}

// response is the SMS API's answer.
type response struct {
	MessageCount string    `json:"message-count"`
	Messages     []message `json:"messages"`
}

type message struct {
	Status    string `json:"status"`
	MessageID string `json:"message-id"`
	ErrorText string `json:"error-text"`
}

// Send submits ev. ProviderID is the first part's message-id.
func (s *Sender) Send(ctx context.Context, ev *event.SmsOtpNotificationEvent) delivery.Result {
	if ev.SendTo == "" || ev.MessageBody == "" {
		return delivery.Result{Reason: delivery.ReasonInvalid, Err: errors.New("vonage: the event has no recipient or no message body")}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, strings.NewReader(s.Form(ev).Encode()))
	if err != nil {
		return delivery.Result{Reason: delivery.ReasonInvalid, Err: fmt.Errorf("vonage: %w", err)}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return delivery.ClassifyTransport(ctx, "vonage", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		r := delivery.ClassifyTransport(ctx, "vonage", err)
		r.StatusCode = resp.StatusCode
		return r
	}
	if resp.StatusCode != http.StatusOK {
		r := classifier.Classify(resp.StatusCode, resp.Header, time.Now())
		r.Err = fmt.Errorf("vonage: HTTP %d", resp.StatusCode)
		return r
	}
	var out response
	if err := json.Unmarshal(body, &out); err != nil || len(out.Messages) == 0 {
		return delivery.Result{Retry: true, Reason: delivery.ReasonServerError, StatusCode: resp.StatusCode,
			Err: errors.New("vonage: HTTP 200 without a messages[] answer")}
	}
	for _, m := range out.Messages {
		if m.Status != "0" {
			r := ClassifyStatus(m.Status)
			r.StatusCode = resp.StatusCode
			r.Err = fmt.Errorf("vonage: status %s: %s", m.Status, m.ErrorText)
			return r
		}
	}
	return delivery.Result{OK: true, StatusCode: resp.StatusCode, ProviderID: out.Messages[0].MessageID}
}

// Vonage SMS API statuses (developer.vonage.com/messaging/sms/guides/troubleshooting-sms).
const (
	StatusSuccess              = "0"
	StatusThrottled            = "1"
	StatusInvalidCredentials   = "4"
	StatusInternalError        = "5"
	StatusTooManyExistingBinds = "10"
	StatusInvalidSignature     = "14"
	StatusSignatureAndSecret   = "32"
)

// statuses classifies messages[].status: 1 and 10 are throttling and 5 a
// platform error (retry); 4, 14 and 32 are credential errors; every other
// non-zero status is a permanent refusal.
var statuses = map[string]delivery.Rule{
	StatusSuccess:              {},
	StatusThrottled:            {Retry: true, Reason: delivery.ReasonRateLimited},
	StatusTooManyExistingBinds: {Retry: true, Reason: delivery.ReasonRateLimited},
	StatusInternalError:        {Retry: true, Reason: delivery.ReasonServerError},
	StatusInvalidCredentials:   {Reason: delivery.ReasonAuthError},
	StatusInvalidSignature:     {Reason: delivery.ReasonAuthError},
	StatusSignatureAndSecret:   {Reason: delivery.ReasonAuthError},
}

// ClassifyStatus maps a messages[].status by the statuses table.
func ClassifyStatus(status string) delivery.Result {
	rule, ok := statuses[status]
	if !ok {
		rule = delivery.Rule{Reason: delivery.ReasonProviderRefused}
	}
	return delivery.Result{OK: rule.Reason == delivery.ReasonNone, Retry: rule.Retry, Reason: rule.Reason}
}

// classifier is the table of an answer other than 200 (the documented
// one): the providers' table, where another 2xx is not the documented
// answer (retried).
var classifier = delivery.Provider.With(map[int]delivery.Rule{2: {Retry: true, Reason: delivery.ReasonServerError}})

// ClassifyHTTP maps an HTTP status other than 200 by classifier.
func ClassifyHTTP(status int) delivery.Result {
	return classifier.Classify(status, nil, time.Time{})
}
