package event

import (
	"errors"
	"fmt"
	"regexp"
	"unicode"
	"unicode/utf8"
)

// Limits on an event's fields. They bound what a decoder accepts and what
// Validate lets through, so a hostile publisher cannot make the hub carry
// (and retry) megabytes per OTP.
const (
	// MaxEventBytes caps an encoded event in any format (body, token or
	// Kafka value). Real events are well under 1 KiB.
	MaxEventBytes = 64 << 10
	// MaxMessageBodyChars caps MessageBody in characters (runes): ten
	// concatenated GSM segments, as Twilio allows.
	MaxMessageBodyChars = 1600
	// MaxURLChars caps Issuer and Audience.
	MaxURLChars = 2048
	// MaxOrgNameChars caps OrganizationName (the store's rule allows 63).
	MaxOrgNameChars = 63
	// MaxIDBytes caps an event ID (jti, CloudEvents id) in bytes. RFC 7519
	// §4.1.7 and CloudEvents put no limit on either; 256 bytes holds any
	// UUID form, URN or producer-prefixed counter, and bounds what the
	// idempotency key, headers and the store carry.
	MaxIDBytes = 256
)

var (
	orgNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	e164Pattern    = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
)

// ValidationError names the field of an event that is not acceptable.
type ValidationError struct {
	Field  string // the wire name: jti, iat, sendTo…
	Reason string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("event: invalid %s: %s", e.Field, e.Reason)
}

// ErrInvalid matches every *ValidationError with errors.Is.
var ErrInvalid = errors.New("event: invalid")

// Is makes errors.Is(err, ErrInvalid) true for a *ValidationError.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// ValidOrgName reports whether name is a valid organization name:
// [a-z0-9][a-z0-9-]{0,62}, the store's rule.
func ValidOrgName(name string) bool { return orgNamePattern.MatchString(name) }

// ValidMobile reports whether s looks like an E.164 number: '+', a non-zero
// digit, then 6 to 14 digits. (The auth core validates numbers properly
// with libphonenumber; this is the cheap shape check every decoder applies.)
func ValidMobile(s string) bool { return e164Pattern.MatchString(s) }

// checkID accepts an event ID as RFC 7519 §4.1.7 (jti) and CloudEvents
// (id) define it, any non-empty string, within what otphub can carry: at
// most MaxIDBytes of valid UTF-8, printable characters only (no control
// characters, which would break headers and logs).
func checkID(id string) error {
	switch {
	case id == "":
		return invalid("jti", "missing")
	case len(id) > MaxIDBytes:
		return invalid("jti", "longer than %d bytes", MaxIDBytes)
	case !utf8.ValidString(id):
		return invalid("jti", "not valid UTF-8")
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return invalid("jti", "contains the non-printable character %U", r)
		}
	}
	return nil
}

// Validate checks the event's fields: jti a non-empty printable string of
// at most MaxIDBytes (checkID), iat set, iss
// set, the organization name valid, sendTo E.164-shaped, messageBody
// non-empty valid UTF-8 of at most MaxMessageBodyChars characters, every
// string within its size cap, and the expiry (when known) not before iat.
// Audience is optional (the Kafka form does not carry it). The error is a
// *ValidationError naming the first bad field.
func (e *SmsOtpNotificationEvent) Validate() error {
	switch {
	case e.Issuer == "":
		return invalid("iss", "missing")
	case len(e.Issuer) > MaxURLChars:
		return invalid("iss", "longer than %d bytes", MaxURLChars)
	case !utf8.ValidString(e.Issuer):
		return invalid("iss", "not valid UTF-8")
	}
	if err := checkID(e.ID); err != nil {
		return err
	}
	if e.IssuedAt.IsZero() || e.IssuedAt.Unix() <= 0 {
		return invalid("iat", "missing")
	}
	if len(e.Audience) > MaxURLChars {
		return invalid("aud", "longer than %d bytes", MaxURLChars)
	}
	if !utf8.ValidString(e.Audience) {
		return invalid("aud", "not valid UTF-8")
	}
	if e.OrganizationID < 0 {
		return invalid("organizationId", "negative")
	}
	if !ValidOrgName(e.OrganizationName) {
		return invalid("organizationName", "must match [a-z0-9][a-z0-9-]{0,62}")
	}
	if !ValidMobile(e.SendTo) {
		return invalid("sendTo", "not an E.164 number (+ and 7 to 15 digits)")
	}
	switch n := utf8.RuneCountInString(e.MessageBody); {
	case e.MessageBody == "":
		return invalid("messageBody", "empty")
	case !utf8.ValidString(e.MessageBody):
		return invalid("messageBody", "not valid UTF-8")
	case n > MaxMessageBodyChars:
		return invalid("messageBody", "%d characters, more than %d", n, MaxMessageBodyChars)
	}
	if len(e.Destination) > MaxIDBytes || !utf8.ValidString(e.Destination) {
		return invalid("destination", "not valid UTF-8 of at most %d bytes", MaxIDBytes)
	}
	if !e.ExpiresAt.IsZero() && e.ExpiresAt.Before(e.IssuedAt) {
		return invalid("expiry", "before iat")
	}
	return nil
}
