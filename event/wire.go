package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// ErrMalformed matches every decoding error (bad syntax, a missing or
// mistyped field, a wrong event URI, an oversized input) with errors.Is.
var ErrMalformed = errors.New("event: malformed")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// eventData is the event data object, in the Asgardeo field order.
type eventData struct {
	OrganizationID   int64  `json:"organizationId"`
	OrganizationName string `json:"organizationName"`
	SendTo           string `json:"sendTo"`
	MessageBody      string `json:"messageBody"`
}

func dataOf(ev *SmsOtpNotificationEvent) eventData {
	return eventData{
		OrganizationID:   ev.OrganizationID,
		OrganizationName: ev.OrganizationName,
		SendTo:           ev.SendTo,
		MessageBody:      ev.MessageBody,
	}
}

// wireEventData decodes the event data object strictly: every field
// present and of its JSON type (organizationId a JSON integer, never a
// string).
type wireEventData struct {
	OrganizationID   *int64  `json:"organizationId"`
	OrganizationName *string `json:"organizationName"`
	SendTo           *string `json:"sendTo"`
	MessageBody      *string `json:"messageBody"`
}

func decodeEventData(raw []byte, ev *SmsOtpNotificationEvent) error {
	var d wireEventData
	if err := unmarshalObject(raw, &d); err != nil {
		return malformed("event data: %v", err)
	}
	switch {
	case d.OrganizationID == nil:
		return malformed("event data: organizationId missing")
	case d.OrganizationName == nil:
		return malformed("event data: organizationName missing")
	case d.SendTo == nil:
		return malformed("event data: sendTo missing")
	case d.MessageBody == nil:
		return malformed("event data: messageBody missing")
	}
	ev.OrganizationID = *d.OrganizationID
	ev.OrganizationName = *d.OrganizationName
	ev.SendTo = *d.SendTo
	ev.MessageBody = *d.MessageBody
	return nil
}

// unmarshalObject decodes a JSON object into v; anything but an object
// (null included) is an error.
func unmarshalObject(raw []byte, v any) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return errors.New("not a JSON object")
	}
	return json.Unmarshal(raw, v)
}

// marshalJSON encodes v without HTML escaping (a message body's '&' stays
// '&', as other JSON producers write it) and without a trailing newline.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// singleEvent returns the payload of the one event in an events object
// ({"<uri>": {...}}), refusing any other URI or more than one event.
func singleEvent(field string, raw json.RawMessage) (json.RawMessage, error) {
	if raw == nil {
		return nil, malformed("%s missing", field)
	}
	var events map[string]json.RawMessage
	if err := unmarshalObject(raw, &events); err != nil {
		return nil, malformed("%s: %v", field, err)
	}
	if len(events) != 1 {
		return nil, malformed("%s: want exactly one event, got %d", field, len(events))
	}
	payload, ok := events[SmsOtpEventURI]
	if !ok {
		for uri := range events {
			return nil, malformed("%s: unsupported event URI %q", field, truncate(uri, 100))
		}
	}
	return payload, nil
}

// Millisecond and second timestamps are told apart by size: any iat below
// this many milliseconds (1973-03-03) is taken to be in the wrong unit.
const minMillis = 1e11

// maxMillis is 9999-12-31T23:59:59.999Z, the last instant RFC 3339 can write.
const maxMillis = 253402300799999

func millisTime(ms int64, field string) (time.Time, error) {
	if ms < minMillis || ms > maxMillis {
		return time.Time{}, malformed("%s: %d is not a time in milliseconds since the epoch", field, ms)
	}
	return time.UnixMilli(ms).UTC(), nil
}

// numericDate parses an RFC 7519 NumericDate (seconds, possibly with a
// fraction).
func numericDate(n json.Number, field string) (time.Time, error) {
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		if i <= 0 || i >= minMillis || i > maxMillis/1000 {
			return time.Time{}, malformed("%s: %d is not a time in seconds since the epoch", field, i)
		}
		return time.Unix(i, 0).UTC(), nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsNaN(f) || f <= 0 || f >= minMillis {
		return time.Time{}, malformed("%s: %q is not a time in seconds since the epoch", field, truncate(string(n), 40))
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func checkSize(b []byte) error {
	if len(b) > MaxEventBytes {
		return malformed("%d bytes, more than %d", len(b), MaxEventBytes)
	}
	return nil
}
