package custom

import (
	"fmt"
	"net/http"
	"strings"
)

// Header is one static header of a custom gateway.
type Header struct {
	Name  string
	Value string
}

// MaxHeaders bounds how many static headers a gateway may have.
const MaxHeaders = 32

// forbiddenHeaders are set by the HTTP client or describe the connection;
// a gateway configuration may not override them.
var forbiddenHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true,
	"Keep-Alive": true, "Upgrade": true, "Te": true, "Trailer": true, "Expect": true,
	"Proxy-Connection": true, "Proxy-Authorization": true,
}

// HeaderError is a static header list that cannot be used; Offset is the
// byte position of the problem in the list.
type HeaderError struct {
	Offset int
	Msg    string
}

func (e *HeaderError) Error() string { return fmt.Sprintf("at byte %d: %s", e.Offset, e.Msg) }

// ParseHeaders parses the seed's static header list, "name: value, name2:
// value2". Each header is split at its first ':' (values may contain ':').
// A comma-separated piece that does not start with "token:" continues the
// previous header's value, so "Accept: text/plain, application/json" is
// one header. CR, LF and other control characters are refused, names must
// be HTTP tokens, and connection-level headers (Host, Content-Length…) may
// not be set.
func ParseHeaders(s string) ([]Header, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return nil, &HeaderError{i, fmt.Sprintf("control character %q is not allowed in headers", rune(c))}
		}
	}
	var hs []Header
	off := 0
	for piece := range strings.SplitSeq(s, ",") {
		pieceOff := off
		off += len(piece) + 1
		name, value, ok := strings.Cut(piece, ":")
		if ok && isToken(strings.TrimSpace(name)) {
			hs = append(hs, Header{Name: http.CanonicalHeaderKey(strings.TrimSpace(name)), Value: strings.TrimSpace(value)})
			continue
		}
		if strings.TrimSpace(piece) == "" {
			continue // "a: b," or ",,"
		}
		if len(hs) == 0 {
			return nil, &HeaderError{pieceOff, fmt.Sprintf("%q is not a header: expected \"name: value\"", strings.TrimSpace(piece))}
		}
		hs[len(hs)-1].Value = strings.TrimSpace(hs[len(hs)-1].Value + "," + piece)
	}
	if len(hs) > MaxHeaders {
		return nil, &HeaderError{0, fmt.Sprintf("at most %d headers", MaxHeaders)}
	}
	for _, h := range hs {
		if forbiddenHeaders[h.Name] {
			return nil, &HeaderError{strings.Index(strings.ToLower(s), strings.ToLower(h.Name)), fmt.Sprintf("header %s is set by otphub and cannot be configured", h.Name)}
		}
	}
	return hs, nil
}

// FormatHeaders writes hs back in the "name: value, name2: value2" form.
func FormatHeaders(hs []Header) string {
	var b strings.Builder
	for i, h := range hs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(h.Name)
		b.WriteString(": ")
		b.WriteString(h.Value)
	}
	return b.String()
}

// isToken reports whether s is an RFC 9110 token (a valid header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
