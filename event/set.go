package event

import (
	"bytes"
	"encoding/json"
)

// setBody is an RFC 8417 Security Event Token's claims set: iat in seconds
// (a NumericDate), the event data under "events". RFC 8417 §4.1 advises
// against "exp" in a SET, so the OTP's expiry travels as the private claim
// "otphub_expiry" (a NumericDate too), written only when known.
type setBody struct {
	Issuer   string    `json:"iss"`
	IssuedAt int64     `json:"iat"`
	ID       string    `json:"jti"`
	Audience string    `json:"aud,omitempty"`
	Expiry   int64     `json:"otphub_expiry,omitempty"`
	Events   setEvents `json:"events"`
}

type setEvents struct {
	SmsOtp eventData `json:"urn:ietf:params:notifications:smsOtp"`
}

// setWire is setBody for decoding.
type setWire struct {
	Issuer   *string         `json:"iss"`
	IssuedAt *number         `json:"iat"`
	ID       *string         `json:"jti"`
	Audience json.RawMessage `json:"aud"`
	Expiry   *number         `json:"otphub_expiry"`
	Events   json.RawMessage `json:"events"`
}

func setOf(ev *SmsOtpNotificationEvent) setBody {
	b := setBody{
		Issuer:   ev.Issuer,
		IssuedAt: ev.IssuedAt.Unix(),
		ID:       ev.ID,
		Audience: ev.Audience,
		Events:   setEvents{SmsOtp: dataOf(ev)},
	}
	if !ev.ExpiresAt.IsZero() {
		b.Expiry = ev.ExpiresAt.Unix()
	}
	return b
}

// MarshalSET encodes ev as an unsigned RFC 8417 SET claims set (compact
// JSON; iat and otphub_expiry in whole seconds, so sub-second precision is
// dropped; aud omitted when empty).
func MarshalSET(ev *SmsOtpNotificationEvent) ([]byte, error) {
	return marshalJSON(setOf(ev))
}

// UnmarshalSET decodes an RFC 8417 SET claims set strictly: at most
// MaxEventBytes; iss, iat (a NumericDate), jti and events present; events
// holding exactly one event, of SmsOtpEventURI, with every event data
// field; aud a string or an array of strings (the first is kept); unknown
// claims ignored. The decoded event must pass Validate. Errors match
// ErrMalformed.
func UnmarshalSET(b []byte) (*SmsOtpNotificationEvent, error) {
	if err := checkSize(b); err != nil {
		return nil, err
	}
	var w setWire
	if err := decodeNumbers(b, &w); err != nil {
		return nil, malformed("SET: %v", err)
	}
	return eventFromSET(&w)
}

func eventFromSET(w *setWire) (*SmsOtpNotificationEvent, error) {
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
	if ev.IssuedAt, err = numericDate(json.Number(*w.IssuedAt), "iat"); err != nil {
		return nil, err
	}
	if w.Expiry != nil {
		if ev.ExpiresAt, err = numericDate(json.Number(*w.Expiry), "otphub_expiry"); err != nil {
			return nil, err
		}
	}
	if ev.Audience, err = audience(w.Audience); err != nil {
		return nil, err
	}
	payload, err := singleEvent("events", w.Events)
	if err != nil {
		return nil, err
	}
	if err := decodeEventData(payload, ev); err != nil {
		return nil, err
	}
	return validated(ev)
}

// audience reads an RFC 7519 "aud": absent, a string, or an array of
// strings of which the first is kept.
func audience(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var one string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &one); err != nil {
			return "", malformed("aud: %v", err)
		}
		return one, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil || len(many) == 0 {
		return "", malformed("aud: want a string or a non-empty array of strings")
	}
	return many[0], nil
}

// decodeNumbers decodes one JSON object from b into v, keeping numbers as
// json.Number, and refuses anything after the object.
func decodeNumbers(b []byte, v any) error {
	if t := bytes.TrimSpace(b); len(t) == 0 || t[0] != '{' {
		return errNotObject
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if len(bytes.TrimSpace(b[dec.InputOffset():])) > 0 {
		return errTrailing
	}
	return nil
}

var (
	errNotObject = jsonError("not a JSON object")
	errTrailing  = jsonError("trailing data after the JSON object")
)

type jsonError string

func (e jsonError) Error() string { return string(e) }

// number is a JSON number kept as text; unlike json.Number it refuses a
// number written as a string.
type number string

func (n *number) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || !(b[0] == '-' || (b[0] >= '0' && b[0] <= '9')) {
		return errNotNumber
	}
	*n = number(b)
	return nil
}

var errNotNumber = jsonError("not a JSON number")
