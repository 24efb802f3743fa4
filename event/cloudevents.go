package event

import (
	"bytes"
	"fmt"
	"mime"
	"strings"
	"time"

	ce "github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

// CloudEventsContentType is the media type of a CloudEvent in structured
// JSON mode.
const CloudEventsContentType = "application/cloudevents+json"

// CloudEvents extension attributes otphub uses. CloudEvents extension names
// are lower-case letters and digits only.
const (
	// ExtExpiryTime carries the OTP's expiry (a Timestamp). Absent when the
	// expiry is unknown; consumers then apply DefaultOTPValidity.
	ExtExpiryTime = "expirytime"
	// ExtAudience carries the event's aud (the topic URL) when it is known,
	// so that CloudEvents round-trip the whole event. Producers outside
	// otphub may leave it out: the router derives the topic from the org.
	ExtAudience = "otphubaud"
	// ExtDestination carries SmsOtpNotificationEvent.Destination in the
	// log only: it restricts delivery to one destination.
	ExtDestination = "otphubdest"
)

// Kafka binary-mode header names (docs/event-formats.md).
const (
	HeaderSpecVersion = "ce_specversion"
	HeaderID          = "ce_id"
	HeaderSource      = "ce_source"
	HeaderType        = "ce_type"
	HeaderTime        = "ce_time"
	HeaderExpiryTime  = "ce_" + ExtExpiryTime
	HeaderAudience    = "ce_" + ExtAudience
	HeaderDestination = "ce_" + ExtDestination
	HeaderContentType = "content-type"
)

const jsonContentType = "application/json"

// ToCloudEvent returns ev as a CloudEvent of the sdk-go types: id = jti,
// source = iss, type = SmsOtpEventURI, time = iat, datacontenttype
// application/json, data = the event data object, plus the expirytime and
// otphubaud extensions when known.
func ToCloudEvent(ev *SmsOtpNotificationEvent) (ce.Event, error) {
	out := ce.New(ce.CloudEventsVersionV1)
	out.SetID(ev.ID)
	out.SetSource(ev.Issuer)
	out.SetType(SmsOtpEventURI)
	out.SetTime(ev.IssuedAt)
	data, err := marshalJSON(dataOf(ev))
	if err != nil {
		return out, err
	}
	// Set the data as encoded JSON directly: SetData would mark raw bytes
	// for data_base64.
	out.SetDataContentType(jsonContentType)
	out.DataEncoded = data
	out.DataBase64 = false
	if !ev.ExpiresAt.IsZero() {
		out.SetExtension(ExtExpiryTime, types.Timestamp{Time: ev.ExpiresAt})
	}
	if ev.Audience != "" {
		out.SetExtension(ExtAudience, ev.Audience)
	}
	return out, nil
}

// MarshalCloudEvent encodes ev as a CloudEvent in structured JSON mode
// (media type application/cloudevents+json): specversion, id, source,
// type, datacontenttype, time, data, then the extensions in name order.
func MarshalCloudEvent(ev *SmsOtpNotificationEvent) ([]byte, error) {
	out, err := ToCloudEvent(ev)
	if err != nil {
		return nil, err
	}
	// WriteJson, not json.Marshal, which would re-escape '<', '>' and '&'
	// in the data.
	var buf bytes.Buffer
	if err := ce.WriteJson(&out, &buf); err != nil {
		return nil, fmt.Errorf("event: encode CloudEvent: %w", err)
	}
	return buf.Bytes(), nil
}

// UnmarshalCloudEvent decodes a structured-mode CloudEvent (JSON) strictly:
// at most MaxEventBytes; specversion 1.0; type SmsOtpEventURI; time set;
// datacontenttype absent or application/json; data the event data object
// with every field (data_base64 accepted too). The decoded event must pass
// Validate. Errors match ErrMalformed.
func UnmarshalCloudEvent(b []byte) (*SmsOtpNotificationEvent, error) {
	return UnmarshalCloudEventAt(b, time.Time{})
}

// UnmarshalCloudEventAt is UnmarshalCloudEvent for an event received at
// receivedAt from a producer outside otphub: time is optional, as in
// CloudEvents (FromCloudEventAt).
func UnmarshalCloudEventAt(b []byte, receivedAt time.Time) (*SmsOtpNotificationEvent, error) {
	if err := checkSize(b); err != nil {
		return nil, err
	}
	var in ce.Event
	if err := unmarshalObject(b, &in); err != nil {
		return nil, malformed("CloudEvent: %v", err)
	}
	return FromCloudEventAt(in, receivedAt)
}

// FromCloudEvent converts a CloudEvent of the sdk-go types into an event,
// with the checks of UnmarshalCloudEvent.
func FromCloudEvent(in ce.Event) (*SmsOtpNotificationEvent, error) {
	return FromCloudEventAt(in, time.Time{})
}

// FromCloudEventAt is FromCloudEvent for an event received at receivedAt
// from a producer outside otphub: time is optional in CloudEvents, and an
// event without it is taken as issued at receivedAt (its OTP's default
// validity then runs from there). A zero receivedAt requires time.
func FromCloudEventAt(in ce.Event, receivedAt time.Time) (*SmsOtpNotificationEvent, error) {
	if in.SpecVersion() != ce.CloudEventsVersionV1 {
		return nil, malformed("CloudEvent: specversion %q, want 1.0", truncate(in.SpecVersion(), 20))
	}
	if err := in.Validate(); err != nil {
		return nil, malformed("CloudEvent: %v", err)
	}
	if in.Type() != SmsOtpEventURI {
		return nil, malformed("CloudEvent: type %q, want %s", truncate(in.Type(), 100), SmsOtpEventURI)
	}
	issued := in.Time()
	if issued.IsZero() {
		if receivedAt.IsZero() {
			return nil, malformed("CloudEvent: time missing")
		}
		issued = receivedAt
	}
	if err := checkJSONContentType(in.DataContentType()); err != nil {
		return nil, err
	}
	ev := &SmsOtpNotificationEvent{
		Issuer:   in.Source(),
		ID:       in.ID(),
		IssuedAt: issued.UTC(),
	}
	exts := in.Extensions()
	if v, ok := exts[ExtExpiryTime]; ok {
		t, err := types.ToTime(v)
		if err != nil {
			return nil, malformed("CloudEvent: %s: %v", ExtExpiryTime, err)
		}
		ev.ExpiresAt = t.UTC()
	}
	if v, ok := exts[ExtAudience]; ok {
		s, err := types.ToString(v)
		if err != nil {
			return nil, malformed("CloudEvent: %s: %v", ExtAudience, err)
		}
		ev.Audience = s
	}
	if err := decodeEventData(in.Data(), ev); err != nil {
		return nil, err
	}
	return validated(ev)
}

func checkJSONContentType(ct string) error {
	if ct == "" {
		return nil
	}
	media, _, err := mime.ParseMediaType(ct)
	if err != nil || media != jsonContentType {
		return malformed("data content type %q, want %s", truncate(ct, 100), jsonContentType)
	}
	return nil
}

// EncodeBinary maps ev to a Kafka record in CloudEvents binary mode
// (docs/event-formats.md): the key is the organization name, the value the event
// data object (JSON), and the headers ce_specversion, ce_id, ce_source,
// ce_type, ce_time (RFC 3339 with the iat's precision), content-type, plus
// ce_expirytime and ce_otphubaud when known and ce_otphubdest when the
// event is restricted to one destination.
func EncodeBinary(ev *SmsOtpNotificationEvent) (key []byte, headers map[string]string, value []byte, err error) {
	value, err = marshalJSON(dataOf(ev))
	if err != nil {
		return nil, nil, nil, err
	}
	headers = map[string]string{
		HeaderSpecVersion: ce.CloudEventsVersionV1,
		HeaderID:          ev.ID,
		HeaderSource:      ev.Issuer,
		HeaderType:        SmsOtpEventURI,
		HeaderTime:        types.FormatTime(ev.IssuedAt),
		HeaderContentType: jsonContentType,
	}
	if !ev.ExpiresAt.IsZero() {
		headers[HeaderExpiryTime] = types.FormatTime(ev.ExpiresAt)
	}
	if ev.Audience != "" {
		headers[HeaderAudience] = ev.Audience
	}
	if ev.Destination != "" {
		headers[HeaderDestination] = ev.Destination
	}
	return []byte(ev.OrganizationName), headers, value, nil
}

// DecodeBinary reads a Kafka record in CloudEvents binary mode. Header
// names are matched case-insensitively; ce_specversion must be 1.0,
// ce_type SmsOtpEventURI, ce_id, ce_source and ce_time present;
// content-type absent or application/json; ce_expirytime optional (the
// expiry is then unknown); ce_otphubaud optional (Audience stays empty:
// nothing is derived); ce_otphubdest optional (Destination). A non-empty key must equal the organization name.
// The decoded event must pass Validate. Errors match ErrMalformed.
func DecodeBinary(key []byte, headers map[string]string, value []byte) (*SmsOtpNotificationEvent, error) {
	return DecodeBinaryAt(key, headers, value, time.Time{})
}

// DecodeBinaryAt is DecodeBinary for a record received at receivedAt,
// which may come from a producer outside otphub: ce_time is optional (as
// in CloudEvents) and a record without it is taken as issued at
// receivedAt. A zero receivedAt requires ce_time.
func DecodeBinaryAt(key []byte, headers map[string]string, value []byte, receivedAt time.Time) (*SmsOtpNotificationEvent, error) {
	if err := checkSize(value); err != nil {
		return nil, err
	}
	h := make(map[string]string, len(headers))
	size := 0
	for k, v := range headers {
		size += len(k) + len(v)
		h[strings.ToLower(k)] = v
	}
	if size > MaxEventBytes {
		return nil, malformed("headers of %d bytes, more than %d", size, MaxEventBytes)
	}
	if v := h[HeaderSpecVersion]; v != ce.CloudEventsVersionV1 {
		return nil, malformed("%s %q, want 1.0", HeaderSpecVersion, truncate(v, 20))
	}
	if v := h[HeaderType]; v != SmsOtpEventURI {
		return nil, malformed("%s %q, want %s", HeaderType, truncate(v, 100), SmsOtpEventURI)
	}
	for _, name := range []string{HeaderID, HeaderSource} {
		if h[name] == "" {
			return nil, malformed("%s missing", name)
		}
	}
	if h[HeaderTime] == "" && receivedAt.IsZero() {
		return nil, malformed("%s missing", HeaderTime)
	}
	if err := checkJSONContentType(h[HeaderContentType]); err != nil {
		return nil, err
	}
	ev := &SmsOtpNotificationEvent{Issuer: h[HeaderSource], ID: h[HeaderID], Audience: h[HeaderAudience], Destination: h[HeaderDestination]}
	var err error
	if h[HeaderTime] == "" {
		ev.IssuedAt = receivedAt.UTC()
	} else if ev.IssuedAt, err = headerTime(h, HeaderTime); err != nil {
		return nil, err
	}
	if _, ok := h[HeaderExpiryTime]; ok {
		if ev.ExpiresAt, err = headerTime(h, HeaderExpiryTime); err != nil {
			return nil, err
		}
	}
	if err := decodeEventData(value, ev); err != nil {
		return nil, err
	}
	if len(key) > 0 && string(key) != ev.OrganizationName {
		return nil, malformed("record key %q is not the organization name %q", truncate(string(key), 70), ev.OrganizationName)
	}
	return validated(ev)
}

func headerTime(h map[string]string, name string) (time.Time, error) {
	t, err := types.ParseTime(h[name])
	if err != nil {
		return time.Time{}, malformed("%s %q: not an RFC 3339 time", name, truncate(h[name], 40))
	}
	return t.UTC(), nil
}
