package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Format is a body format a WebSub subscription can ask for.
type Format string

// The body formats.
const (
	// FormatAsgardeo is the default: the Asgardeo-compatible JSON body,
	// application/json.
	FormatAsgardeo Format = "asgardeo"
	// FormatSET is an unsigned RFC 8417 SET claims set, application/json.
	FormatSET Format = "set"
	// FormatSETJWT is a signed SET (RFC 8417/8935),
	// application/secevent+jwt.
	FormatSETJWT Format = "set-jwt"
	// FormatCloudEvents is a CloudEvent in structured JSON mode,
	// application/cloudevents+json.
	FormatCloudEvents Format = "cloudevents"
)

// Formats lists every format, the default first.
var Formats = []Format{FormatAsgardeo, FormatSET, FormatSETJWT, FormatCloudEvents}

// ErrUnknownFormat is returned by ParseFormat and Encode for a format name
// that is not one of Formats.
var ErrUnknownFormat = errors.New("event: unknown format")

// ErrUnsupportedMediaType is returned by Decode for a content type no
// format uses.
var ErrUnsupportedMediaType = errors.New("event: unsupported media type")

// ParseFormat returns the format named s; "" is FormatAsgardeo.
func ParseFormat(s string) (Format, error) {
	if s == "" {
		return FormatAsgardeo, nil
	}
	for _, f := range Formats {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("%w %q (want one of asgardeo, set, set-jwt, cloudevents)", ErrUnknownFormat, truncate(s, 40))
}

// ContentType returns the media type of a body in format f ("" for an
// unknown format). The Asgardeo body and the unsigned SET are both
// application/json; Decode tells them apart by their top-level claims.
func ContentType(f Format) string {
	switch f {
	case FormatAsgardeo, FormatSET:
		return jsonContentType
	case FormatSETJWT:
		return SETContentType
	case FormatCloudEvents:
		return CloudEventsContentType
	}
	return ""
}

// Encode returns ev as a body in format f, with its content type. signer
// is used by FormatSETJWT only and may be nil for the other formats.
func Encode(f Format, ev *SmsOtpNotificationEvent, signer *Signer) (body []byte, contentType string, err error) {
	switch f {
	case FormatAsgardeo, "":
		body, err = MarshalAsgardeo(ev)
		f = FormatAsgardeo
	case FormatSET:
		body, err = MarshalSET(ev)
	case FormatSETJWT:
		if signer == nil {
			return nil, "", errors.New("event: format set-jwt needs a signer")
		}
		var tok string
		tok, err = signer.Sign(ev)
		body = []byte(tok)
	case FormatCloudEvents:
		body, err = MarshalCloudEvent(ev)
	default:
		return nil, "", fmt.Errorf("%w %q", ErrUnknownFormat, truncate(string(f), 40))
	}
	if err != nil {
		return nil, "", err
	}
	return body, ContentType(f), nil
}

// Decode reads a body of any format, chosen by its content type:
// application/secevent+jwt is verified with keyfunc (which may be nil if
// signed SETs are not expected); application/cloudevents+json is a
// structured CloudEvent; application/json (or an empty content type) is
// told apart by its top-level members: "event" (Asgardeo), "events" (SET)
// or "specversion" (a CloudEvent sent as plain JSON).
func Decode(contentType string, body []byte, keyfunc jwt.Keyfunc) (*SmsOtpNotificationEvent, error) {
	media := ""
	if strings.TrimSpace(contentType) != "" {
		m, _, err := mime.ParseMediaType(contentType)
		if err != nil {
			return nil, fmt.Errorf("%w: %q", ErrUnsupportedMediaType, truncate(contentType, 100))
		}
		media = m
	}
	switch media {
	case SETContentType:
		if keyfunc == nil {
			return nil, errors.New("event: a signed SET arrived but no key source is configured")
		}
		return VerifySET(string(body), keyfunc)
	case CloudEventsContentType:
		return UnmarshalCloudEvent(body)
	case jsonContentType, "":
		return decodeJSON(body)
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupportedMediaType, truncate(contentType, 100))
}

func decodeJSON(body []byte) (*SmsOtpNotificationEvent, error) {
	if err := checkSize(body); err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := unmarshalObject(body, &top); err != nil {
		return nil, malformed("JSON body: %v", err)
	}
	_, asgardeo := top["event"]
	_, set := top["events"]
	_, cloudevent := top["specversion"]
	switch {
	case asgardeo && !set && !cloudevent:
		return UnmarshalAsgardeo(body)
	case set && !asgardeo && !cloudevent:
		return UnmarshalSET(body)
	case cloudevent && !asgardeo && !set:
		return UnmarshalCloudEvent(body)
	}
	return nil, malformed(`JSON body: want exactly one of "event" (Asgardeo), "events" (SET) or "specversion" (CloudEvent)`)
}
