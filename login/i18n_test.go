package login

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/authcore"
)

// TestCatalogComplete: every locale has every message, with the same
// format verbs as English, and the locales are those the SMS templates ship.
func TestCatalogComplete(t *testing.T) {
	entries, err := os.ReadDir("../templates/sms")
	if err != nil {
		t.Fatal(err)
	}
	var sms []string
	for _, e := range entries {
		sms = append(sms, strings.TrimSuffix(e.Name(), ".tmpl"))
	}
	slices.Sort(sms)
	if !slices.Equal(sms, Locales) {
		t.Fatalf("prompt locales %v, SMS template locales %v", Locales, sms)
	}
	verbs := func(s string) string {
		var out []string
		for i := 0; i+1 < len(s); i++ {
			if s[i] == '%' {
				out = append(out, s[i:i+2])
			}
		}
		return strings.Join(out, ",")
	}
	for _, l := range Locales {
		m, ok := messages[l]
		if !ok {
			t.Fatalf("no messages for %s", l)
		}
		if len(m) != len(messages["en"]) {
			t.Errorf("%s has %d messages, en %d", l, len(m), len(messages["en"]))
		}
		for k, en := range messages["en"] {
			if v, ok := m[k]; !ok || verbs(v) != verbs(en) {
				t.Errorf("%s.%s = %q: missing or verbs differ from %q", l, k, v, en)
			}
		}
	}
}

func TestPickLocale(t *testing.T) {
	for _, c := range []struct{ ui, accept, want string }{
		{"", "", "en"},
		{"fr-CA", "de", "fr"},
		{"xx pt-BR", "", "pt-BR"},
		{"", "ja, nl;q=0.5, de;q=0.8", "de"},
		{"", "pt-PT", "pt"},
		{"", "zz;q=1, es;q=0", "en"},
	} {
		if got := pickLocale(c.ui, c.accept); got != c.want {
			t.Errorf("pickLocale(%q, %q) = %s, want %s", c.ui, c.accept, got, c.want)
		}
	}
}

func TestMaskMobile(t *testing.T) {
	if got := maskMobile("+94771234567"); got != "+94\u00a0•••••••\u00a067" {
		t.Fatalf("%q", got)
	}
	if got := maskMobile("+12015550123"); got != "+1\u00a0••••••••\u00a023" {
		t.Fatalf("%q", got)
	}
}

// TestRefusalMessages: each of authcore's refusals the prompt can meet has
// its own sentence, and a shed verification does not claim a code could
// not be sent.
func TestRefusalMessages(t *testing.T) {
	tr := translator{locale: "en"}
	s := &Service{}
	for code, want := range map[string]string{
		"overloaded":       "We are very busy just now.",
		"delivery_backlog": "We could not send a code just now.",
		"rate_limited":     "Too many codes were sent to this number.",
		"no_such_code":     "Something went wrong on our side.",
	} {
		got := string(s.message(tr, &authcore.Error{Code: code, RetryAfter: time.Minute}))
		if !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q, want it to start with %q", code, got, want)
		}
	}
}
