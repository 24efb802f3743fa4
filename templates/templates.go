// Package templates owns the SMS message templates: the defaults embedded
// in the binary (one per locale, sms/<locale>.tmpl), their fixed
// placeholder set, and a small strict renderer. Orgs may override a
// template per locale; an override is checked with Validate when saved, so
// an unknown placeholder is an error then, never literal text in an SMS.
//
// A template is plain text with placeholders {{application}}, {{otp}},
// {{expiryMinutes}} and {{org}} (spaces inside the braces are allowed:
// {{ otp }}). There is no escaping, no logic and no other syntax; this is
// deliberately not text/template, whose actions an org must never run.
package templates

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/otphub/otphub/event"
)

// MaxChars caps a template's length in characters (runes).
const MaxChars = 1000

// DefaultLocale is the locale every lookup falls back to.
const DefaultLocale = "en"

// The placeholders, without braces.
const (
	Application   = "application"
	OTP           = "otp"
	ExpiryMinutes = "expiryMinutes"
	Org           = "org"
)

// Placeholders lists the placeholder names a template may use.
var Placeholders = []string{Application, OTP, ExpiryMinutes, Org}

// Vars are the values a template is rendered with.
type Vars struct {
	Application   string // the application the user signs in to
	OTP           string // the one-time password
	Org           string // the organization name
	ExpiryMinutes int    // the OTP's validity, rounded up (see Minutes)
}

//go:embed sms/*.tmpl
var smsFS embed.FS

// Error is a template that cannot be used: Pos is the 1-based character
// (rune) position of the problem, 0 when it concerns the whole template.
type Error struct {
	Pos int
	Msg string
}

func (e *Error) Error() string {
	if e.Pos == 0 {
		return "template: " + e.Msg
	}
	return fmt.Sprintf("template: at character %d: %s", e.Pos, e.Msg)
}

// ErrInvalid matches every *Error with errors.Is.
var ErrInvalid = errors.New("template: invalid")

// Is makes errors.Is(err, ErrInvalid) true for an *Error.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// segment is a literal run of text or, when name is set, a placeholder.
type segment struct {
	text string
	name string
}

// parse splits body into segments, refusing an empty or oversized body,
// an unterminated "{{", an unknown placeholder and a body without {{otp}}.
func parse(body string) ([]segment, error) {
	if strings.TrimSpace(body) == "" {
		return nil, &Error{Msg: "empty"}
	}
	if !utf8.ValidString(body) {
		return nil, &Error{Pos: runePos(body, invalidUTF8At(body)), Msg: "not valid UTF-8"}
	}
	if n := utf8.RuneCountInString(body); n > MaxChars {
		return nil, &Error{Msg: fmt.Sprintf("%d characters, more than %d", n, MaxChars)}
	}
	var segs []segment
	hasOTP := false
	rest, offset := body, 0
	for {
		open := strings.Index(rest, "{{")
		if open < 0 {
			if rest != "" {
				segs = append(segs, segment{text: rest})
			}
			break
		}
		if open > 0 {
			segs = append(segs, segment{text: rest[:open]})
		}
		closing := strings.Index(rest[open+2:], "}}")
		if closing < 0 {
			return nil, &Error{Pos: runePos(body, offset+open), Msg: `"{{" is not closed by "}}"`}
		}
		raw := rest[open+2 : open+2+closing]
		name := strings.TrimSpace(raw)
		if !slices.Contains(Placeholders, name) {
			return nil, &Error{Pos: runePos(body, offset+open),
				Msg: fmt.Sprintf("unknown placeholder {{%s}} (want {{application}}, {{otp}}, {{expiryMinutes}} or {{org}})", clip(raw))}
		}
		hasOTP = hasOTP || name == OTP
		segs = append(segs, segment{name: name})
		next := open + 2 + closing + 2
		rest, offset = rest[next:], offset+next
	}
	if !hasOTP {
		return nil, &Error{Msg: "no {{otp}} placeholder: the message would not contain the one-time password"}
	}
	return segs, nil
}

// Validate checks body as a template: not empty, at most MaxChars
// characters, valid UTF-8, every "{{" closed, only known placeholders, and
// {{otp}} present. The error is an *Error with the position of the problem.
func Validate(body string) error {
	_, err := parse(body)
	return err
}

// Render validates body and replaces its placeholders with v's values.
// Values are inserted as plain text, except that control characters (CR,
// LF, …) become spaces and braces become parentheses, so a value can
// neither break the message into lines nor smuggle in a placeholder. The
// result must fit an event's message body (event.MaxMessageBodyChars).
func Render(body string, v Vars) (string, error) {
	segs, err := parse(body)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, s := range segs {
		switch s.name {
		case "":
			b.WriteString(s.text)
		case Application:
			b.WriteString(clean(v.Application))
		case OTP:
			b.WriteString(clean(v.OTP))
		case Org:
			b.WriteString(clean(v.Org))
		case ExpiryMinutes:
			b.WriteString(strconv.Itoa(v.ExpiryMinutes))
		}
	}
	out := b.String()
	if n := utf8.RuneCountInString(out); n > event.MaxMessageBodyChars {
		return "", &Error{Msg: fmt.Sprintf("rendered message of %d characters, more than %d", n, event.MaxMessageBodyChars)}
	}
	return out, nil
}

// Minutes returns d in whole minutes, rounded up (30 s is 1 minute; 0 or
// less is 0), the value for Vars.ExpiryMinutes.
func Minutes(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Minute - 1) / time.Minute)
}

// Default returns the embedded default template for locale, a BCP 47 tag
// matched case-insensitively ("_" accepted for "-"), falling back subtag
// by subtag ("fr-CA" → "fr") and finally to DefaultLocale.
func Default(locale string) string {
	tag := strings.ReplaceAll(strings.TrimSpace(locale), "_", "-")
	available := Locales()
	for tag != "" {
		for _, l := range available {
			if strings.EqualFold(l, tag) {
				return mustRead(l)
			}
		}
		i := strings.LastIndexByte(tag, '-')
		if i < 0 {
			break
		}
		tag = tag[:i]
	}
	return mustRead(DefaultLocale)
}

// Locales returns the locales with an embedded default template, sorted.
func Locales() []string {
	entries, _ := fs.ReadDir(smsFS, "sms") // embedded: cannot fail
	var out []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".tmpl"); ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func mustRead(locale string) string {
	b, err := smsFS.ReadFile(path.Join("sms", locale+".tmpl"))
	if err != nil { // a locale from Locales(): the file is embedded
		return ""
	}
	return strings.TrimRight(string(b), "\r\n")
}

func clean(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '{':
			return '('
		case r == '}':
			return ')'
		case unicode.IsControl(r), r == utf8.RuneError:
			return ' '
		}
		return r
	}, s)
}

func runePos(s string, byteOffset int) int {
	return utf8.RuneCountInString(s[:byteOffset]) + 1
}

func invalidUTF8At(s string) int {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return i
			}
		}
	}
	return 0
}

func clip(s string) string {
	if utf8.RuneCountInString(s) <= 40 {
		return s
	}
	return string([]rune(s)[:40]) + "…"
}
