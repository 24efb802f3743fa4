// Package custom delivers an org's OTP SMS to a custom HTTP gateway, as the
// seed's "Configuring a Custom Provider" describes: a URL, a content type
// (JSON or FORM), a method (POST or PUT), a payload template with {{body}}
// and {{mobile}}, and static headers. Any 2xx answer is success.
package custom

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/smsprovider/provider"
)

const maxResponseBody = 64 << 10

// Config is a custom gateway's configuration, as entered by the org admin
// in the provider config API (JSON) and kept by the store.
type Config struct {
	URL string `json:"url,omitempty"` // absolute http(s) URL; required
	// ContentType is ContentJSON or ContentFORM (case-insensitive). Default JSON.
	ContentType string `json:"contentType,omitempty"`
	// Method is POST or PUT (case-insensitive). Default POST.
	Method          string `json:"method,omitempty"`
	PayloadTemplate string `json:"payloadTemplate,omitempty"` // required; see ParseTemplate
	// Headers is "name: value, name2: value2"; optional; see ParseHeaders.
	// The values are secrets.
	Headers string `json:"headers,omitempty"`
	// ReceiptSecret signs the gateway's delivery receipts (Standard
	// Webhooks; docs/providers.md); receipts need it.
	ReceiptSecret string `json:"receiptSecret,omitempty"` // secret
}

// Normalize applies the defaults and upper-cases ContentType and Method.
func (c Config) Normalize() Config {
	c.ContentType = strings.ToUpper(strings.TrimSpace(c.ContentType))
	if c.ContentType == "" {
		c.ContentType = ContentJSON
	}
	c.Method = strings.ToUpper(strings.TrimSpace(c.Method))
	if c.Method == "" {
		c.Method = http.MethodPost
	}
	return c
}

// Sender posts OTP SMS to one custom gateway. Safe for concurrent use.
type Sender struct {
	url         string
	origin      string
	method      string
	contentType string // the Content-Type header
	tmpl        *Template
	headers     []Header
	client      *http.Client
}

// New parses cfg and returns a Sender that sends with client (nil: a
// client that never follows redirects). Errors are *provider.FieldError.
func New(cfg Config, client *http.Client) (*Sender, error) {
	cfg = cfg.Normalize()
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, provider.Errorf("url", "must be an absolute http(s) URL")
	}
	if u.User != nil {
		return nil, provider.Errorf("url", "must not carry credentials; use a header")
	}
	s := &Sender{url: u.String(), origin: u.Scheme + "://" + u.Host, client: client}
	switch cfg.ContentType {
	case ContentJSON:
		s.contentType = "application/json"
	case ContentFORM:
		s.contentType = "application/x-www-form-urlencoded"
	default:
		return nil, provider.Errorf("contentType", "%q is not JSON or FORM", cfg.ContentType)
	}
	switch cfg.Method {
	case http.MethodPost, http.MethodPut:
		s.method = cfg.Method
	default:
		return nil, provider.Errorf("method", "%q is not POST or PUT", cfg.Method)
	}
	if s.tmpl, err = ParseTemplate(cfg.ContentType, cfg.PayloadTemplate); err != nil {
		return nil, provider.Errorf("payloadTemplate", "%v", err)
	}
	if s.headers, err = ParseHeaders(cfg.Headers); err != nil {
		return nil, provider.Errorf("headers", "%v", err)
	}
	if s.client == nil {
		s.client = delivery.SenderClient()
	}
	return s, nil
}

// Endpoint returns the gateway's scheme://host.
func (s *Sender) Endpoint() string { return s.origin }

// Send renders the payload for ev and sends it.
func (s *Sender) Send(ctx context.Context, ev *event.SmsOtpNotificationEvent) delivery.Result {
	if ev.SendTo == "" || ev.MessageBody == "" {
		return delivery.Result{Reason: delivery.ReasonInvalid, Err: errors.New("custom: the event has no recipient or no message body")}
	}
	payload := s.tmpl.Render(ev.MessageBody, ev.SendTo)
	req, err := http.NewRequestWithContext(ctx, s.method, s.url, strings.NewReader(string(payload)))
	if err != nil {
		return delivery.Result{Reason: delivery.ReasonInvalid, Err: fmt.Errorf("custom: %w", err)}
	}
	req.Header.Set("Content-Type", s.contentType)
	req.Header.Set("User-Agent", "otphub")
	if ev.ID != "" {
		req.Header.Set("Idempotency-Key", ev.ID)
	}
	for i, h := range s.headers {
		if i == 0 || !sameName(s.headers[:i], h.Name) {
			req.Header.Del(h.Name) // a configured header replaces ours
		}
		req.Header.Add(h.Name, h.Value)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return delivery.ClassifyTransport(ctx, "custom", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	r := delivery.Provider.Classify(resp.StatusCode, resp.Header, time.Now())
	if !r.OK {
		r.Err = fmt.Errorf("custom: gateway answered %d", resp.StatusCode)
	}
	return r
}

func sameName(hs []Header, name string) bool {
	for _, h := range hs {
		if h.Name == name {
			return true
		}
	}
	return false
}
