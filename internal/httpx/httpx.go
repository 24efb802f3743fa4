// Package httpx holds the one way otphub writes JSON responses and errors,
// reads JSON request bodies and tells which client a request came from.
package httpx

import (
	"bufio"
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MaxJSONBody is the default cap on a JSON request body.
const MaxJSONBody = 64 << 10

// ErrorBody is the JSON shape of every error response (docs/openapi.yaml, Error).
type ErrorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// JSON writes v as JSON with status.
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Error writes {"error": code, "message": msg} with status.
func Error(w http.ResponseWriter, status int, code, msg string) {
	JSON(w, status, ErrorBody{Error: code, Message: msg})
}

// ErrorWith writes an error body with extra fields (for example
// attemptsRemaining) merged in.
func ErrorWith(w http.ResponseWriter, status int, code, msg string, extra map[string]any) {
	body := map[string]any{"error": code, "message": msg}
	for k, v := range extra {
		body[k] = v
	}
	JSON(w, status, body)
}

// RequestError is a client error found while decoding a request.
type RequestError struct {
	Status int
	Code   string
	Msg    string
}

func (e *RequestError) Error() string { return e.Msg }

// DecodeJSON reads a JSON object from r's body into dst, refusing any
// other JSON value, unknown fields, trailing data and bodies larger than
// limit (MaxJSONBody when limit <= 0). Errors are *RequestError, whose
// messages name JSON fields and types, never Go types; write them with
// WriteDecodeError.
func DecodeJSON(w http.ResponseWriter, r *http.Request, dst any, limit int64) error {
	if limit <= 0 {
		limit = MaxJSONBody
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		return &RequestError{http.StatusUnsupportedMediaType, "unsupported_media_type", "the body must be application/json"}
	}
	// The smallest buffer: it only peeks at the first byte, and larger
	// reads go straight through to the decoder's own buffer.
	body := bufio.NewReaderSize(http.MaxBytesReader(w, r.Body, limit), 16)
	first, err := firstNonSpace(body)
	if err == nil && first != '{' {
		return &RequestError{http.StatusBadRequest, "invalid_json", "the body must be a JSON object"}
	}
	if err != nil {
		return decodeError(err, limit)
	}
	return decodeStrict(body, dst, limit)
}

// Unmarshal decodes the JSON object b into dst as DecodeJSON decodes a
// body: unknown fields refused, errors that name the field and its JSON
// types. It is for a body read first and decoded again in parts (a
// provider configuration whose fields depend on its type).
func Unmarshal(b []byte, dst any) error {
	return decodeStrict(bytes.NewReader(b), dst, 0)
}

func decodeStrict(r io.Reader, dst any, limit int64) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err, limit)
	}
	if dec.More() {
		return &RequestError{http.StatusBadRequest, "invalid_json", "unexpected data after the JSON object"}
	}
	return nil
}

// decodeError turns a decoding error into the RequestError that says what
// is wrong.
func decodeError(err error, limit int64) error {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return &RequestError{http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body exceeds %d bytes", limit)}
	case errors.Is(err, io.EOF):
		return &RequestError{http.StatusBadRequest, "invalid_json", "the body is empty; a JSON object is required"}
	case errors.As(err, &se):
		return &RequestError{http.StatusBadRequest, "invalid_json", fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, err)}
	case errors.As(err, &te) && te.Field == "":
		return &RequestError{http.StatusBadRequest, "invalid_json", "the body must be a JSON object"}
	case errors.As(err, &te):
		return &RequestError{http.StatusBadRequest, "invalid_json",
			fmt.Sprintf("field %q has %s where %s is expected", te.Field, jsonValue(te.Value), jsonType(te.Type, te.Value))}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return &RequestError{http.StatusBadRequest, "invalid_json", strings.TrimPrefix(err.Error(), "json: ")}
	default:
		// A type's own UnmarshalJSON (time.Time's) prefixes its Go name.
		msg := unmarshalerPrefix.ReplaceAllString(err.Error(), "")
		return &RequestError{http.StatusBadRequest, "invalid_json", "malformed JSON: " + msg}
	}
}

// firstNonSpace returns the first byte of b after JSON whitespace, and
// leaves it unread.
func firstNonSpace(b *bufio.Reader) (byte, error) {
	for {
		c, err := b.ReadByte()
		if err != nil {
			return 0, err
		}
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return c, b.UnreadByte()
		}
	}
}

// jsonValue describes the JSON value of a json.UnmarshalTypeError:
// "string", "number", "number 1.5", "bool", "array" or "object".
func jsonValue(v string) string {
	switch v {
	case "string", "number":
		return "a " + v
	case "object", "array":
		return "an " + v
	case "bool":
		return "a boolean"
	}
	if lit, ok := strings.CutPrefix(v, "number "); ok {
		return lit
	}
	return v
}

// jsonType names the JSON type that decodes into t. An integer that got
// a number (out of range or with a fraction) is told its range.
func jsonType(t reflect.Type, value string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return "a string"
	}
	number := strings.HasPrefix(value, "number")
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if number {
			bits := t.Bits()
			return fmt.Sprintf("an integer from %d to %d", int64(-1)<<(bits-1), int64(1<<(bits-1)-1))
		}
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if number {
			return fmt.Sprintf("an integer from 0 to %d", uint64(1<<t.Bits()-1))
		}
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return "a base64 string"
		}
		return "an array"
	}
	return "another JSON type"
}

var (
	textUnmarshaler   = reflect.TypeFor[encoding.TextUnmarshaler]()
	unmarshalerPrefix = regexp.MustCompile(`^\w+\.Unmarshal(JSON|Text): `)
)

// RetryAfter sets the Retry-After header of w to d in whole seconds,
// rounded up, at least 1 (a client told 0 would retry at once). It is the
// one writer of Retry-After of every API.
func RetryAfter(w http.ResponseWriter, d time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(d.Seconds())))))
}

// WriteDecodeError writes err from DecodeJSON (or any *RequestError).
func WriteDecodeError(w http.ResponseWriter, err error) {
	var re *RequestError
	if errors.As(err, &re) {
		Error(w, re.Status, re.Code, re.Msg)
		return
	}
	Error(w, http.StatusBadRequest, "invalid_request", err.Error())
}

// Mux is what a component registers its routes on: an *http.ServeMux, or
// the app's recorder that also lists every pattern (checked against
// docs/openapi.yaml).
type Mux interface {
	Handle(pattern string, handler http.Handler)
	HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request))
}

// ClientIP is the client address that per-source limits count: the TCP
// peer, or with trustProxyHeaders the right-most X-Forwarded-For entry (the
// one the trusted proxy in front of otphub saw; entries to its left are
// client-supplied and never trusted). An IPv6 address counts as its /64,
// the block one host can usually draw addresses from. It is "" when no
// address can be parsed.
func ClientIP(r *http.Request, trustProxyHeaders bool) string {
	if trustProxyHeaders {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			parts := strings.Split(xff[len(xff)-1], ",")
			if ip := net.ParseIP(strings.TrimSpace(parts[len(parts)-1])); ip != nil {
				return LimitKeyIP(ip)
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip := net.ParseIP(host); ip != nil {
		return LimitKeyIP(ip)
	}
	return ""
}

// LimitKeyIP is the key an address counts under in per-address limits: an
// IPv4 address itself, an IPv6 address its /64 (the block one host can
// usually draw addresses from).
func LimitKeyIP(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}
