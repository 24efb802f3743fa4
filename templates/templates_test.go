package templates

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestDefaultEnglishMatchesSeed(t *testing.T) {
	got, err := Render(Default("en"), Vars{Application: "myapp", OTP: "075052", ExpiryMinutes: 5, Org: "myorg"})
	if err != nil {
		t.Fatal(err)
	}
	// The seed's sample messageBody.
	want := "Your one-time password for the myapp is 075052. This expires in 5 minutes."
	if got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestEveryDefaultIsValid(t *testing.T) {
	locales := Locales()
	if len(locales) < 5 || locales[0] == "" {
		t.Fatalf("Locales() = %v", locales)
	}
	for _, l := range locales {
		body := Default(l)
		if err := Validate(body); err != nil {
			t.Errorf("%s: %v", l, err)
		}
		out, err := Render(body, Vars{Application: "app", OTP: "123456", ExpiryMinutes: 3})
		if err != nil || !strings.Contains(out, "123456") || !strings.Contains(out, "3") || strings.Contains(out, "{{") {
			t.Errorf("%s: %q, %v", l, out, err)
		}
	}
}

func TestDefaultFallback(t *testing.T) {
	for in, want := range map[string]string{
		"fr-CA": "fr", "fr": "fr", "FR": "fr", "pt-BR": "pt-BR", "pt_br": "pt-BR", "pt-PT": "pt",
		"pt-BR-x-private": "pt-BR", "zh-Hant-TW": "en", "": "en", "en-US": "en", "xx": "en", "-": "en",
	} {
		if got := Default(in); got != Default(want) || got == "" {
			t.Errorf("Default(%q) is not the %q template", in, want)
		}
	}
	if Default("fr") == Default("en") {
		t.Error("fr is the English template")
	}
}

func TestValidateErrors(t *testing.T) {
	for _, tc := range []struct {
		body string
		pos  int
		msg  string
	}{
		{"", 0, "empty"},
		{"   \n", 0, "empty"},
		{strings.Repeat("x", MaxChars-6) + "{{otp}}", 0, "more than"},
		{"Code {{otp}} for {{app}}", 18, "unknown placeholder {{app}}"},
		{"Code {{otp}} for {{", 18, "not closed"},
		{"Codé {{otp}} {{otp", 14, "not closed"},
		{"{{}} {{otp}}", 1, "unknown placeholder {{}}"},
		{"{{{otp}}}", 1, "unknown placeholder {{{otp}}"},
		{"{{OTP}}", 1, "unknown placeholder {{OTP}}"},
		{"Your code is ready", 0, "no {{otp}}"},
		{"{{application}} {{org}} {{expiryMinutes}}", 0, "no {{otp}}"},
		{"ok {{otp}} \xff", 12, "UTF-8"},
	} {
		err := Validate(tc.body)
		var te *Error
		if !errors.As(err, &te) || !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%q) = %v, want an *Error", tc.body, err)
			continue
		}
		if te.Pos != tc.pos || !strings.Contains(te.Msg, tc.msg) {
			t.Errorf("Validate(%q) = pos %d %q, want pos %d containing %q", tc.body, te.Pos, te.Msg, tc.pos, tc.msg)
		}
		if _, err := Render(tc.body, Vars{OTP: "1"}); err == nil {
			t.Errorf("Render(%q) succeeded", tc.body)
		}
	}
	// Exactly MaxChars characters (multi-byte) is fine; spaces inside braces too.
	ok := strings.Repeat("é", MaxChars-9) + "{{ otp }}"
	if utf8.RuneCountInString(ok) != MaxChars {
		t.Fatal("test body length")
	}
	if err := Validate(ok); err != nil {
		t.Errorf("%d characters: %v", MaxChars, err)
	}
	if !strings.Contains((&Error{Pos: 3, Msg: "x"}).Error(), "character 3") {
		t.Error("Error() does not name the position")
	}
}

func TestRenderValues(t *testing.T) {
	out, err := Render("{{org}}: {{ otp }} for {{application}} ({{expiryMinutes}} min). }} {", Vars{
		Application: "Evil\r\nApp {{otp}}", OTP: "12{{org}}", Org: "acme", ExpiryMinutes: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "acme: 12((org)) for Evil  App ((otp)) (10 min). }} {"
	if out != want {
		t.Errorf("got %q, want %q", out, want)
	}
	if _, err := Render("{{otp}}{{application}}", Vars{Application: strings.Repeat("a", 1601)}); err == nil {
		t.Error("an oversized rendered message was accepted")
	}
}

func TestMinutes(t *testing.T) {
	for d, want := range map[time.Duration]int{
		0: 0, -time.Second: 0, time.Nanosecond: 1, 30 * time.Second: 1, time.Minute: 1,
		time.Minute + time.Second: 2, 5 * time.Minute: 5, 10 * time.Minute: 10, 90 * time.Second: 2,
	} {
		if got := Minutes(d); got != want {
			t.Errorf("Minutes(%v) = %d, want %d", d, got, want)
		}
	}
}

// FuzzRender: rendering never panics; what renders contains every value
// and never a placeholder; what fails to render fails Validate too.
func FuzzRender(f *testing.F) {
	for _, l := range Locales() {
		f.Add(Default(l), "myapp", "075052", "myorg", 5)
	}
	f.Add("{{otp}}{{", "a", "b", "c", 1)
	f.Add("{{ otp }} {{application}}}", "{", "}", "{{org}}", -1)
	f.Add("{{{{otp}}}}", "{{otp", "}}", "", 0)
	f.Fuzz(func(t *testing.T, body, app, otp, org string, minutes int) {
		out, err := Render(body, Vars{Application: app, OTP: otp, Org: org, ExpiryMinutes: minutes})
		if err != nil {
			if Validate(body) == nil && !strings.Contains(err.Error(), "rendered message") {
				t.Fatalf("Render failed on a valid template: %v", err)
			}
			return
		}
		for _, p := range Placeholders {
			if strings.Contains(out, "{{"+p+"}}") {
				t.Fatalf("output %q contains {{%s}}", out, p)
			}
		}
		if strings.ContainsAny(out, "\r\n") && !strings.ContainsAny(body, "\r\n") {
			t.Fatalf("a value put a line break into %q", out)
		}
	})
}

func BenchmarkRender(b *testing.B) {
	body := Default("en")
	v := Vars{Application: "myapp", OTP: "075052", ExpiryMinutes: 5}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Render(body, v); err != nil {
			b.Fatal(err)
		}
	}
}
