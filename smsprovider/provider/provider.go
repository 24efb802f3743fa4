// Package provider is the port every SMS provider implements: a provider
// type owns its configuration (the JSON fields of the provider config API),
// their validation, the masking of its secrets and the Sender it builds.
// smsprovider registers each provider in one place (registry.go) and knows
// nothing else about any of them. docs/adding-a-provider.md walks through
// adding one.
package provider

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/event"
)

// Provider is one SMS provider type. Define builds one from a Config type.
type Provider interface {
	// Type is the provider's name: the "type" of its configuration and the
	// destination type of its delivery tasks.
	Type() string
	// NewConfig returns an empty configuration to decode into.
	NewConfig() Config
	// Fields lists the JSON names of the configuration's fields.
	Fields() []string
}

// Config is one provider's configuration: a pointer to a struct whose
// JSON fields are those of the provider config API (and of the stored
// configuration, which is the same JSON).
type Config interface {
	// Validate checks the configuration (secrets already merged by
	// KeepSecrets) and normalizes it in place. Errors are *FieldError.
	Validate(ctx context.Context, env *Env) error
	// Masked returns a copy whose secrets are masked (Mask), for answers.
	Masked() Config
	// KeepSecrets replaces the masked secrets of a configuration sent back
	// by the stored ones (stored is the slot's stored configuration when it
	// is of the same type, else nil), refusing a mask that is not the mask
	// of the stored secret of the same account: a masked value must never
	// be saved as a literal "****…".
	KeepSecrets(stored Config) error
	// NewSender builds the configuration's Sender.
	NewSender(env *Env) (Sender, error)
	// Example returns a valid configuration with every secret set, and
	// those secrets: the registry's conformance test checks masking and
	// KeepSecrets with them, so a secret left unmasked fails a test.
	Example() (Config, []string)
}

// Sender is a provider's delivery.Sender.
type Sender interface {
	delivery.Sender
	// Endpoint keys the circuit breaker and concurrency cap
	// (delivery.Target.Endpoint): the remote host and, where the
	// provider throttles per account, the account.
	Endpoint() string
}

// URLChecker checks a URL before it is saved (the egress client's
// CheckURL: scheme, host, and an address the SSRF guard allows).
type URLChecker interface {
	CheckURL(ctx context.Context, raw string) error
}

// Env is what providers get from the server.
type Env struct {
	// Client sends (the SSRF-guarded egress client; never follows redirects).
	Client *http.Client
	// URLs checks configured URLs on save.
	URLs URLChecker
	// AllowHTTP permits http:// provider URLs (a gateway on a network the
	// egress allow-list opens). Otherwise https only.
	AllowHTTP bool
	// AllowConsole permits the development-only console provider.
	AllowConsole bool
	// Stdout is where the console provider writes.
	Stdout io.Writer
	// Now is the clock.
	Now func() time.Time
	// ReceiptURL, when set, is where the provider is asked to report the
	// delivery receipts of ev's SMS (smsprovider sets it for each slot
	// that takes receipts; package receipts builds it). Nil: ask for none.
	ReceiptURL func(ev *event.SmsOtpNotificationEvent) string
}

// Define returns the Provider named typ whose configuration is a *C.
func Define[C any, P interface {
	*C
	Config
}](typ string) Provider {
	return defined[C, P]{typ: typ, fields: jsonFields(reflect.TypeFor[C]())}
}

type defined[C any, P interface {
	*C
	Config
}] struct {
	typ    string
	fields []string
}

func (d defined[C, P]) Type() string      { return d.typ }
func (d defined[C, P]) NewConfig() Config { return P(new(C)) }
func (d defined[C, P]) Fields() []string  { return d.fields }

func jsonFields(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "" && name != "-" && f.IsExported() {
			out = append(out, name)
		}
	}
	return out
}

// Clone returns a copy of the configuration c points to (for Masked).
func Clone[C any](c *C) *C {
	cp := *c
	return &cp
}

// FieldError is a configuration refused on save: Field is the JSON name.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Errorf returns the FieldError of field.
func Errorf(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// MaskPrefix starts every masked secret.
const MaskPrefix = "****"

// Mask hides a secret: "****" plus its last 4 characters when it is long
// enough (12+) for those not to give it away, otherwise "****" alone.
func Mask(v string) string {
	if len(v) >= 12 {
		return MaskPrefix + v[len(v)-4:]
	}
	return MaskPrefix
}

// IsMasked reports whether v is a masked secret.
func IsMasked(v string) bool { return strings.HasPrefix(v, MaskPrefix) }

// MaskSet returns v masked, or "" when it is empty.
func MaskSet(v string) string {
	if v == "" {
		return ""
	}
	return Mask(v)
}

// Stored returns the stored configuration given to KeepSecrets as a *C,
// and whether there is one (an empty *C when not).
func Stored[C any](stored Config) (*C, bool) {
	old, ok := any(stored).(*C)
	if !ok {
		return new(C), false
	}
	return old, true
}

// KeepMasked restores a masked secret *v sent back: it becomes stored
// when sameAccount (the stored configuration is of the same account) and
// *v is stored's mask; otherwise the FieldError of field with msg. An
// unmasked *v is left alone.
func KeepMasked(field string, v *string, stored string, sameAccount bool, msg string) error {
	if !IsMasked(*v) {
		return nil
	}
	if !sameAccount || Mask(stored) != *v {
		return Errorf(field, "%s", msg)
	}
	*v = stored
	return nil
}

// Limits on configuration fields.
const (
	MaxURLLen    = 2048
	MaxSecretLen = 256
)

// PrintableSecret tells whether s is made of printable ASCII without spaces,
// the characters a provider secret (auth token, API or signature secret,
// receipt secret) may hold.
func PrintableSecret(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// CheckURL checks and normalizes the provider URL *raw of field: absolute
// https (http only when AllowHTTP), no credentials or fragment, a query
// only when queryOK (a gateway URL; a base URL also loses its trailing
// slashes), and an address the egress guard accepts. An empty URL is
// accepted (a base URL's default).
func (e *Env) CheckURL(ctx context.Context, field string, raw *string, queryOK bool) error {
	v := strings.TrimSpace(*raw)
	*raw = v
	if v == "" {
		return nil
	}
	if len(v) > MaxURLLen {
		return Errorf(field, "must be at most %d bytes", MaxURLLen)
	}
	u, err := url.Parse(v)
	switch {
	case err != nil || u.Host == "" || u.Opaque != "":
		return Errorf(field, "must be an absolute URL")
	case u.Scheme == "http" && !e.AllowHTTP:
		return Errorf(field, "must use https")
	case u.Scheme != "https" && u.Scheme != "http":
		return Errorf(field, "must use https")
	case u.User != nil:
		return Errorf(field, "must not contain credentials")
	case u.Fragment != "" || strings.Contains(v, "#"):
		return Errorf(field, "must not contain a fragment")
	case !queryOK && (u.RawQuery != "" || strings.Contains(v, "?")):
		return Errorf(field, "must not contain a query")
	}
	if !queryOK {
		*raw = strings.TrimRight(v, "/")
	}
	if err := e.URLs.CheckURL(ctx, v); err != nil {
		return Errorf(field, "is not allowed: %v", err)
	}
	return nil
}

var (
	shortCodePattern = regexp.MustCompile(`^[0-9]{3,8}$`)
	alphaSender      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 ]{0,9}[A-Za-z0-9]$|^[A-Za-z]$`)
	hasLetter        = regexp.MustCompile(`[A-Za-z]`)
)

// CheckSender accepts, as the "sender" field, an E.164 number, a short
// code, or an alphanumeric sender ID (1–11 letters, digits and inner
// spaces, at least one letter).
func CheckSender(v string) error {
	if event.ValidMobile(v) || shortCodePattern.MatchString(v) ||
		(alphaSender.MatchString(v) && hasLetter.MatchString(v)) {
		return nil
	}
	return Errorf("sender", "must be an E.164 number (+14155550100), a short code, or an alphanumeric sender ID of at most 11 letters, digits and spaces")
}
