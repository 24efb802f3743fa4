package event

import (
	"encoding/json"
	"fmt"
)

// asgardeoBody is the Asgardeo-compatible body (docs/event-formats.md), fields in
// the order Asgardeo writes them (iss, jti, iat, aud, event).
type asgardeoBody struct {
	Issuer   string         `json:"iss"`
	ID       string         `json:"jti"`
	IssuedAt int64          `json:"iat"` // milliseconds
	Audience string         `json:"aud"`
	Event    asgardeoEvents `json:"event"`
	// Expiry is otphub's extension: the OTP's expiry in milliseconds,
	// written only when known, so the seed's sample stays byte for byte.
	Expiry int64 `json:"otphub_expiry,omitempty"`
}

type asgardeoEvents struct {
	SmsOtp eventData `json:"urn:ietf:params:notifications:smsOtp"`
}

// asgardeoWire is asgardeoBody for decoding: presence and JSON types are
// checked field by field.
type asgardeoWire struct {
	Issuer   *string         `json:"iss"`
	ID       *string         `json:"jti"`
	IssuedAt *int64          `json:"iat"`
	Audience *string         `json:"aud"`
	Event    json.RawMessage `json:"event"`
	Expiry   *int64          `json:"otphub_expiry"`
}

// MarshalAsgardeo encodes ev as the Asgardeo-compatible JSON body (compact,
// iat in milliseconds, no HTML escaping). The event is not validated;
// encode only events that passed Validate.
func MarshalAsgardeo(ev *SmsOtpNotificationEvent) ([]byte, error) {
	body := asgardeoBody{
		Issuer:   ev.Issuer,
		ID:       ev.ID,
		IssuedAt: ev.IssuedAt.UnixMilli(),
		Audience: ev.Audience,
		Event:    asgardeoEvents{SmsOtp: dataOf(ev)},
	}
	if !ev.ExpiresAt.IsZero() {
		body.Expiry = ev.ExpiresAt.UnixMilli()
	}
	return marshalJSON(body)
}

// UnmarshalAsgardeo decodes an Asgardeo-compatible JSON body strictly: at
// most MaxEventBytes; iss, jti, iat (a JSON integer, milliseconds) and the
// event object present; the event object holding exactly one event, of
// SmsOtpEventURI, with every event data field; aud optional; unknown
// top-level fields ignored. The decoded event must pass Validate. Errors
// match ErrMalformed.
func UnmarshalAsgardeo(b []byte) (*SmsOtpNotificationEvent, error) {
	if err := checkSize(b); err != nil {
		return nil, err
	}
	var w asgardeoWire
	if err := unmarshalObject(b, &w); err != nil {
		return nil, malformed("asgardeo body: %v", err)
	}
	switch {
	case w.Issuer == nil:
		return nil, malformed("iss missing")
	case w.ID == nil:
		return nil, malformed("jti missing")
	case w.IssuedAt == nil:
		return nil, malformed("iat missing")
	}
	ev := &SmsOtpNotificationEvent{Issuer: *w.Issuer, ID: *w.ID}
	var err error
	if ev.IssuedAt, err = millisTime(*w.IssuedAt, "iat"); err != nil {
		return nil, err
	}
	if w.Audience != nil {
		ev.Audience = *w.Audience
	}
	if w.Expiry != nil {
		if ev.ExpiresAt, err = millisTime(*w.Expiry, "otphub_expiry"); err != nil {
			return nil, err
		}
	}
	payload, err := singleEvent("event", w.Event)
	if err != nil {
		return nil, err
	}
	if err := decodeEventData(payload, ev); err != nil {
		return nil, err
	}
	return validated(ev)
}

func validated(ev *SmsOtpNotificationEvent) (*SmsOtpNotificationEvent, error) {
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return ev, nil
}
