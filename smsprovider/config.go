package smsprovider

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/otphub/otphub/dispatcher"
	"github.com/otphub/otphub/dispatcher/custom"
)

// ProviderConfig is an SMS provider configuration as the API reads and
// writes it (DESIGN §4.6) and as the store keeps it (encrypted). Which
// fields apply depends on Type; the others must be empty.
type ProviderConfig struct {
	Type string `json:"type"` // twilio | vonage | custom | console

	// Twilio.
	AccountSID          string `json:"accountSid,omitempty"`
	AuthToken           string `json:"authToken,omitempty"` // secret
	MessagingServiceSID string `json:"messagingServiceSid,omitempty"`

	// Vonage.
	APIKey    string `json:"apiKey,omitempty"`
	APISecret string `json:"apiSecret,omitempty"` // secret

	// Twilio and Vonage.
	Sender  string `json:"sender,omitempty"`
	BaseURL string `json:"baseUrl,omitempty"`

	// Custom gateway.
	URL             string `json:"url,omitempty"`
	ContentType     string `json:"contentType,omitempty"`
	Method          string `json:"method,omitempty"`
	PayloadTemplate string `json:"payloadTemplate,omitempty"`
	Headers         string `json:"headers,omitempty"` // values are secrets

	// Read-only: filled in by GET, ignored by PUT (so a GET body can be
	// edited and PUT back).
	Slot      string     `json:"slot,omitempty"`
	UpdatedAt *time.Time `json:"updatedAt,omitempty"`
}

// Limits on configuration fields.
const (
	maxURLLen     = 2048
	maxHeadersLen = 4 << 10
	maxSecretLen  = 256
)

var (
	twilioSIDPattern  = regexp.MustCompile(`^AC[0-9a-fA-F]{32}$`)
	serviceSIDPattern = regexp.MustCompile(`^MG[0-9a-fA-F]{32}$`)
	twilioTokenPattrn = regexp.MustCompile(`^[A-Za-z0-9]{16,128}$`)
	vonageKeyPattern  = regexp.MustCompile(`^[A-Za-z0-9]{1,64}$`)
	e164Pattern       = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	shortCodePattern  = regexp.MustCompile(`^[0-9]{3,8}$`)
	alphaSender       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ]{0,9}[A-Za-z0-9]$|^[A-Za-z]$`)
	hasLetter         = regexp.MustCompile(`[A-Za-z]`)
)

// FieldError is a configuration refused on save: Field is the JSON name.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// fieldsOf lists the fields of pc that are set, by JSON name.
func (pc *ProviderConfig) fieldsOf() map[string]string {
	return map[string]string{
		"accountSid": pc.AccountSID, "authToken": pc.AuthToken, "messagingServiceSid": pc.MessagingServiceSID,
		"apiKey": pc.APIKey, "apiSecret": pc.APISecret, "sender": pc.Sender, "baseUrl": pc.BaseURL,
		"url": pc.URL, "contentType": pc.ContentType, "method": pc.Method,
		"payloadTemplate": pc.PayloadTemplate, "headers": pc.Headers,
	}
}

var fieldsOfType = map[string][]string{
	dispatcher.TypeTwilio:  {"accountSid", "authToken", "messagingServiceSid", "sender", "baseUrl"},
	dispatcher.TypeVonage:  {"apiKey", "apiSecret", "sender", "baseUrl"},
	dispatcher.TypeCustom:  {"url", "contentType", "method", "payloadTemplate", "headers"},
	dispatcher.TypeConsole: {},
}

// validate checks pc (secrets already merged) and normalizes it in place.
func (s *Service) validate(ctx context.Context, pc *ProviderConfig) error {
	pc.Slot, pc.UpdatedAt = "", nil
	pc.Type = strings.ToLower(strings.TrimSpace(pc.Type))
	allowed, ok := fieldsOfType[pc.Type]
	if !ok {
		return fieldErr("type", "must be one of twilio, vonage, custom, console")
	}
	for name, v := range pc.fieldsOf() {
		if v != "" && !contains(allowed, name) {
			return fieldErr(name, "does not apply to provider type %s", pc.Type)
		}
	}
	switch pc.Type {
	case dispatcher.TypeTwilio:
		pc.AccountSID = strings.TrimSpace(pc.AccountSID)
		pc.MessagingServiceSID = strings.TrimSpace(pc.MessagingServiceSID)
		pc.Sender = strings.TrimSpace(pc.Sender)
		switch {
		case pc.AccountSID == "":
			return fieldErr("accountSid", "is required")
		case !twilioSIDPattern.MatchString(pc.AccountSID):
			return fieldErr("accountSid", "must be AC followed by 32 hexadecimal digits")
		case pc.AuthToken == "":
			return fieldErr("authToken", "is required")
		case !twilioTokenPattrn.MatchString(pc.AuthToken):
			return fieldErr("authToken", "must be 16 to 128 letters and digits")
		case pc.Sender == "" && pc.MessagingServiceSID == "":
			return fieldErr("sender", "is required unless messagingServiceSid is set")
		case pc.MessagingServiceSID != "" && !serviceSIDPattern.MatchString(pc.MessagingServiceSID):
			return fieldErr("messagingServiceSid", "must be MG followed by 32 hexadecimal digits")
		}
		if pc.Sender != "" {
			if err := checkSender(pc.Sender); err != nil {
				return err
			}
		}
		return s.checkURL(ctx, "baseUrl", &pc.BaseURL, false)
	case dispatcher.TypeVonage:
		pc.APIKey = strings.TrimSpace(pc.APIKey)
		pc.Sender = strings.TrimSpace(pc.Sender)
		switch {
		case pc.APIKey == "":
			return fieldErr("apiKey", "is required")
		case !vonageKeyPattern.MatchString(pc.APIKey):
			return fieldErr("apiKey", "must be 1 to 64 letters and digits")
		case pc.APISecret == "":
			return fieldErr("apiSecret", "is required")
		case len(pc.APISecret) > maxSecretLen || !printableASCII(pc.APISecret):
			return fieldErr("apiSecret", "must be at most %d printable ASCII characters without spaces", maxSecretLen)
		case pc.Sender == "":
			return fieldErr("sender", "is required")
		}
		if err := checkSender(pc.Sender); err != nil {
			return err
		}
		return s.checkURL(ctx, "baseUrl", &pc.BaseURL, false)
	case dispatcher.TypeCustom:
		if pc.URL == "" {
			return fieldErr("url", "is required")
		}
		if err := s.checkURL(ctx, "url", &pc.URL, true); err != nil {
			return err
		}
		if pc.PayloadTemplate == "" {
			return fieldErr("payloadTemplate", "is required")
		}
		if len(pc.Headers) > maxHeadersLen {
			return fieldErr("headers", "must be at most %d bytes", maxHeadersLen)
		}
		cfg := custom.Config{URL: pc.URL, ContentType: pc.ContentType, Method: pc.Method,
			PayloadTemplate: pc.PayloadTemplate, Headers: pc.Headers}.Normalize()
		if _, err := custom.New(cfg, nil); err != nil {
			var fe *custom.FieldError
			if errors.As(err, &fe) {
				return fieldErr(fe.Field, "%v", fe.Err)
			}
			return fieldErr("url", "%v", err)
		}
		hs, _ := custom.ParseHeaders(cfg.Headers)
		pc.ContentType, pc.Method, pc.Headers = cfg.ContentType, cfg.Method, custom.FormatHeaders(hs)
		return nil
	case dispatcher.TypeConsole:
		if !s.cfg.AllowConsole {
			return fieldErr("type", "the console provider is for development only and is disabled on this server (start otphub with --allow-console-provider)")
		}
	}
	return nil
}

// checkSender accepts an E.164 number, a short code, or an alphanumeric
// sender ID (1–11 letters, digits and inner spaces, at least one letter).
func checkSender(v string) error {
	if e164Pattern.MatchString(v) || shortCodePattern.MatchString(v) ||
		(alphaSender.MatchString(v) && hasLetter.MatchString(v)) {
		return nil
	}
	return fieldErr("sender", "must be an E.164 number (+14155550100), a short code, or an alphanumeric sender ID of at most 11 letters, digits and spaces")
}

// checkURL checks a provider URL: absolute https (http only when the
// server allows it, for local gateways), no credentials or fragment, a
// query only for a gateway URL, and an address the egress guard accepts.
// An empty base URL means the provider's default.
func (s *Service) checkURL(ctx context.Context, field string, raw *string, queryOK bool) error {
	v := strings.TrimSpace(*raw)
	*raw = v
	if v == "" {
		return nil
	}
	if len(v) > maxURLLen {
		return fieldErr(field, "must be at most %d bytes", maxURLLen)
	}
	u, err := url.Parse(v)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "":
		return fieldErr(field, "must be an absolute URL")
	case u.Scheme == "http" && !s.cfg.AllowHTTP:
		return fieldErr(field, "must use https")
	case u.Scheme != "https" && u.Scheme != "http":
		return fieldErr(field, "must use https")
	case u.User != nil:
		return fieldErr(field, "must not contain credentials")
	case u.Fragment != "" || strings.Contains(v, "#"):
		return fieldErr(field, "must not contain a fragment")
	case !queryOK && (u.RawQuery != "" || strings.Contains(v, "?")):
		return fieldErr(field, "must not contain a query")
	}
	if !queryOK {
		*raw = strings.TrimRight(v, "/")
	}
	if err := s.urls.CheckURL(ctx, v); err != nil {
		return fieldErr(field, "is not allowed: %v", err)
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// maskPrefix starts every masked secret.
const maskPrefix = "****"

// mask hides a secret: "****" plus its last 4 characters when it is long
// enough (12+) for those not to give it away, otherwise "****" alone.
func mask(v string) string {
	if len(v) >= 12 {
		return maskPrefix + v[len(v)-4:]
	}
	return maskPrefix
}

func isMasked(v string) bool { return strings.HasPrefix(v, maskPrefix) }

// masked returns pc with its secrets masked, for GET.
func (pc ProviderConfig) masked() ProviderConfig {
	if pc.AuthToken != "" {
		pc.AuthToken = mask(pc.AuthToken)
	}
	if pc.APISecret != "" {
		pc.APISecret = mask(pc.APISecret)
	}
	if pc.Headers != "" {
		hs, err := custom.ParseHeaders(pc.Headers)
		if err != nil {
			pc.Headers = maskPrefix
		} else {
			for i := range hs {
				hs[i].Value = mask(hs[i].Value)
			}
			pc.Headers = custom.FormatHeaders(hs)
		}
	}
	return pc
}

// keepSecrets replaces masked secrets in pc with the stored ones (old, nil
// when none). A masked value is kept only when it is the mask of the
// stored secret of the same account (same type and account SID / API key;
// for headers, the same header name in the same order); anything else is
// refused rather than saved as a literal "****…".
func keepSecrets(pc *ProviderConfig, old *ProviderConfig) error {
	sameType := old != nil && strings.EqualFold(strings.TrimSpace(pc.Type), old.Type)
	if isMasked(pc.AuthToken) {
		if !sameType || strings.TrimSpace(pc.AccountSID) != old.AccountSID || mask(old.AuthToken) != pc.AuthToken {
			return fieldErr("authToken", "is masked but does not match the stored token of this account; send the token in full")
		}
		pc.AuthToken = old.AuthToken
	}
	if isMasked(pc.APISecret) {
		if !sameType || strings.TrimSpace(pc.APIKey) != old.APIKey || mask(old.APISecret) != pc.APISecret {
			return fieldErr("apiSecret", "is masked but does not match the stored secret of this API key; send the secret in full")
		}
		pc.APISecret = old.APISecret
	}
	if strings.Contains(pc.Headers, maskPrefix) {
		hs, err := custom.ParseHeaders(pc.Headers)
		if err != nil {
			return nil // validate reports it
		}
		var oldHs []custom.Header
		if sameType {
			oldHs, _ = custom.ParseHeaders(old.Headers)
		}
		for i, h := range hs {
			if !isMasked(h.Value) {
				continue
			}
			n := occurrence(hs[:i], h.Name)
			ov, ok := nthValue(oldHs, h.Name, n)
			if !ok || mask(ov) != h.Value {
				return fieldErr("headers", "the value of %s is masked but does not match a stored header; send it in full", h.Name)
			}
			hs[i].Value = ov
		}
		pc.Headers = custom.FormatHeaders(hs)
	}
	return nil
}

func occurrence(hs []custom.Header, name string) int {
	n := 0
	for _, h := range hs {
		if h.Name == name {
			n++
		}
	}
	return n
}

func nthValue(hs []custom.Header, name string, n int) (string, bool) {
	for _, h := range hs {
		if h.Name == name {
			if n == 0 {
				return h.Value, true
			}
			n--
		}
	}
	return "", false
}
