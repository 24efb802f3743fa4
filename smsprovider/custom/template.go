package custom

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Content types of a custom gateway's payload.
const (
	ContentJSON = "JSON"
	ContentFORM = "FORM"
)

// Placeholders a payload template may use.
const (
	PlaceholderBody   = "body"   // the rendered SMS text
	PlaceholderMobile = "mobile" // the E.164 recipient
)

// Sample values a template is rendered with when it is checked.
const (
	sampleBody   = "Sample OTP 123456"
	sampleMobile = "+94771234567"
)

// MaxTemplateSize bounds a payload template.
const MaxTemplateSize = 8 << 10

// TemplateError is a template that cannot be used, with the position of
// the problem in the template (Offset is 0-based in bytes; Line and Column
// are 1-based, Column counted in bytes).
type TemplateError struct {
	Offset, Line, Column int
	Msg                  string
}

func (e *TemplateError) Error() string {
	return fmt.Sprintf("at byte %d (line %d, column %d): %s", e.Offset, e.Line, e.Column, e.Msg)
}

func templateError(tmpl string, off int, format string, args ...any) *TemplateError {
	off = max(0, min(off, len(tmpl)))
	line := 1 + strings.Count(tmpl[:off], "\n")
	col := off - strings.LastIndexByte(tmpl[:off], '\n')
	return &TemplateError{Offset: off, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

// Template is a parsed payload template. It is immutable and safe for
// concurrent use.
type Template struct {
	contentType string
	segs        []segment
	size        int // literal bytes, to size the output buffer
}

// segment is literal text or one placeholder.
type segment struct {
	lit      string
	ph       string // "" for literal text
	inString bool   // JSON: the placeholder sits inside a string literal
	off      int    // offset in the template
	outOff   int    // offset in the sample rendering (for error positions)
}

// ParseTemplate parses tmpl for contentType (ContentJSON or ContentFORM)
// and checks that it always yields a valid payload: JSON templates must be
// valid JSON once every placeholder is replaced (a bare placeholder stands
// for a JSON string, one inside a string for its content); FORM templates
// must be a valid urlencoded body. Errors are *TemplateError.
func ParseTemplate(contentType, tmpl string) (*Template, error) {
	if len(tmpl) > MaxTemplateSize {
		return nil, templateError(tmpl, MaxTemplateSize, "the template exceeds %d bytes", MaxTemplateSize)
	}
	if strings.TrimSpace(tmpl) == "" {
		return nil, templateError(tmpl, 0, "the template is empty")
	}
	if !utf8.ValidString(tmpl) {
		for i := 0; i < len(tmpl); {
			r, n := utf8.DecodeRuneInString(tmpl[i:])
			if r == utf8.RuneError && n == 1 {
				return nil, templateError(tmpl, i, "invalid UTF-8")
			}
			i += n
		}
	}
	t := &Template{contentType: contentType}
	var err error
	switch contentType {
	case ContentJSON:
		err = t.parseJSON(tmpl)
	case ContentFORM:
		err = t.parseForm(tmpl)
	default:
		return nil, fmt.Errorf("content type %q is not JSON or FORM", contentType)
	}
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, s := range t.segs {
		seen[s.ph] = true
		t.size += len(s.lit)
	}
	for _, ph := range []string{PlaceholderBody, PlaceholderMobile} {
		if !seen[ph] {
			return nil, templateError(tmpl, len(tmpl), "the template must contain {{%s}}", ph)
		}
	}
	if contentType == ContentJSON {
		if err := t.checkJSON(tmpl); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// ContentType returns ContentJSON or ContentFORM.
func (t *Template) ContentType() string { return t.contentType }

// placeholderAt reports whether tmpl[i:] starts a placeholder: "{{",
// optional spaces, a name of letters, digits, '_', '.', '-', optional
// spaces, "}}". It returns the name and the length of the placeholder. Any
// other "{{" is literal text.
func placeholderAt(tmpl string, i int) (name string, n int, ok bool) {
	if !strings.HasPrefix(tmpl[i:], "{{") {
		return "", 0, false
	}
	end := strings.Index(tmpl[i+2:], "}}")
	if end < 0 || end > 64 {
		return "", 0, false
	}
	inner := tmpl[i+2 : i+2+end]
	for _, c := range inner {
		if !(c == ' ' || c == '\t' || c == '_' || c == '.' || c == '-' ||
			c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return "", 0, false
		}
	}
	return strings.TrimSpace(inner), end + 4, true
}

func (t *Template) addPlaceholder(tmpl string, i int, name string, inString bool) error {
	if name != PlaceholderBody && name != PlaceholderMobile {
		return templateError(tmpl, i, "unknown placeholder {{%s}}; use {{body}} or {{mobile}}", name)
	}
	t.segs = append(t.segs, segment{ph: name, inString: inString, off: i})
	return nil
}

func (t *Template) addLiteral(tmpl string, from, to int) {
	if to > from {
		t.segs = append(t.segs, segment{lit: tmpl[from:to], off: from})
	}
}

// parseJSON splits tmpl into literals and placeholders, tracking whether
// each placeholder sits inside a JSON string. A placeholder right after a
// backslash or inside a \u escape is refused: its first characters would
// change the meaning of the escape.
func (t *Template) parseJSON(tmpl string) error {
	inString, escaped, hexLeft := false, false, 0
	return t.split(tmpl, func(i int) (bool, error) {
		if escaped || hexLeft > 0 {
			return false, templateError(tmpl, i, "a placeholder cannot be part of a backslash escape")
		}
		return inString, nil
	}, func(i int) error {
		c := tmpl[i]
		switch {
		case !inString:
			switch c {
			case '"':
				inString = true
			case 0xE2: // “ ” (U+201C, U+201D): word processors' quotes
				if strings.HasPrefix(tmpl[i:], "“") || strings.HasPrefix(tmpl[i:], "”") {
					return templateError(tmpl, i, "typographic quote %q; JSON strings need ASCII double quotes", tmpl[i:i+3])
				}
			}
		case hexLeft > 0:
			hexLeft--
		case escaped:
			escaped = false
			if c == 'u' {
				hexLeft = 4
			}
		case c == '\\':
			escaped = true
		case c == '"':
			inString = false
		}
		return nil
	})
}

// split is the one walk over a template both content types share: it cuts
// tmpl into literal and placeholder segments. placeholder is asked, at each
// placeholder's offset, whether it may stand there and whether it sits
// inside a JSON string; literal checks each literal byte against the
// content type's rules.
func (t *Template) split(tmpl string, placeholder func(i int) (inString bool, err error), literal func(i int) error) error {
	start := 0
	for i := 0; i < len(tmpl); {
		if name, n, ok := placeholderAt(tmpl, i); ok {
			inString, err := placeholder(i)
			if err != nil {
				return err
			}
			t.addLiteral(tmpl, start, i)
			if err := t.addPlaceholder(tmpl, i, name, inString); err != nil {
				return err
			}
			i += n
			start = i
			continue
		}
		if err := literal(i); err != nil {
			return err
		}
		i++
	}
	t.addLiteral(tmpl, start, len(tmpl))
	return nil
}

// checkJSON renders the template with sample values and checks the result
// is one valid JSON value; a syntax error is reported at its position in
// the template.
func (t *Template) checkJSON(tmpl string) error {
	out := make([]byte, 0, t.size+64)
	for i := range t.segs {
		t.segs[i].outOff = len(out)
		out = t.appendSegment(out, &t.segs[i], sampleBody, sampleMobile)
	}
	var v any
	err := json.Unmarshal(out, &v)
	if err == nil {
		return nil
	}
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return templateError(tmpl, 0, "not valid JSON: %v", err)
	}
	// Offset counts the bytes read up to and including the bad one.
	outOff := int(se.Offset) - 1
	if strings.HasPrefix(se.Error(), "unexpected end of JSON input") {
		outOff = len(out)
	}
	off := len(tmpl)
	for i := len(t.segs) - 1; i >= 0 && outOff < len(out); i-- {
		s := t.segs[i]
		if outOff >= s.outOff {
			if s.ph != "" {
				off = s.off
			} else {
				off = s.off + min(outOff-s.outOff, len(s.lit))
			}
			break
		}
	}
	return templateError(tmpl, off, "the payload would not be valid JSON: %v", se)
}

// parseForm splits a urlencoded template: literal text must already be
// URL-encoded (no spaces, controls, non-ASCII, bare '%' or ';').
func (t *Template) parseForm(tmpl string) error {
	err := t.split(tmpl, func(int) (bool, error) { return false, nil }, func(i int) error {
		c := tmpl[i]
		switch {
		case c <= ' ' || c >= 0x7f:
			return templateError(tmpl, i, "character %q must be URL-encoded in a FORM template", rune(c))
		case c == ';':
			return templateError(tmpl, i, "';' is not a field separator; use '&' (or %%3B for a literal semicolon)")
		case c == '%':
			if i+2 >= len(tmpl) || !isHex(tmpl[i+1]) || !isHex(tmpl[i+2]) {
				return templateError(tmpl, i, "'%%' must start a %%XX escape")
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := url.ParseQuery(string(t.Render(sampleBody, sampleMobile))); err != nil {
		return templateError(tmpl, 0, "not a valid urlencoded body: %v", err)
	}
	return nil
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// Render returns the payload for body and mobile.
func (t *Template) Render(body, mobile string) []byte {
	out := make([]byte, 0, t.size+2*len(body)+len(mobile)+8)
	for i := range t.segs {
		out = t.appendSegment(out, &t.segs[i], body, mobile)
	}
	return out
}

func (t *Template) appendSegment(out []byte, s *segment, body, mobile string) []byte {
	if s.ph == "" {
		return append(out, s.lit...)
	}
	v := body
	if s.ph == PlaceholderMobile {
		v = mobile
	}
	if t.contentType == ContentFORM {
		return append(out, url.QueryEscape(v)...)
	}
	if !s.inString {
		out = append(out, '"')
		out = AppendJSONString(out, v)
		return append(out, '"')
	}
	return AppendJSONString(out, v)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s escaped as the content of a JSON string
// (without the quotes). Invalid UTF-8 bytes become U+FFFD, one per byte;
// U+2028 and U+2029 are escaped so the payload is also safe JavaScript.
func AppendJSONString(out []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			out = append(out, s[start:i]...)
			switch c {
			case '"', '\\':
				out = append(out, '\\', c)
			case '\n':
				out = append(out, '\\', 'n')
			case '\r':
				out = append(out, '\\', 'r')
			case '\t':
				out = append(out, '\\', 't')
			default:
				out = append(out, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			out = append(out, s[start:i]...)
			out = append(out, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			out = append(out, s[start:i]...)
			out = append(out, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += n
			start = i
			continue
		}
		i += n
	}
	return append(out, s[start:]...)
}
