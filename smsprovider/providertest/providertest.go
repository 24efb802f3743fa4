// Package providertest is the conformance suite of SMS provider types
// (provider.Provider): every registered provider runs it (smsprovider's
// tests), and so does a new one before it is registered. It checks what
// must never fail silently: a secret left unmasked in an answer, a masked
// value saved as a literal, a configuration that does not survive the
// store's JSON, a provider that cannot build its Sender.
package providertest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/smsprovider/provider"
)

// allowAll is a URLChecker that accepts every URL.
type allowAll struct{}

func (allowAll) CheckURL(context.Context, string) error { return nil }

// Env is a permissive provider.Env for tests: every URL and the console
// allowed, writes discarded.
func Env() *provider.Env {
	return &provider.Env{Client: http.DefaultClient, URLs: allowAll{}, AllowHTTP: true, AllowConsole: true,
		Stdout: io.Discard, Now: time.Now}
}

// Run checks p.
func Run(t *testing.T, p provider.Provider) {
	t.Helper()
	ctx := context.Background()
	env := Env()
	if p.Type() == "" || p.Type() != strings.ToLower(p.Type()) {
		t.Errorf("type %q: must be a non-empty lower-case name", p.Type())
	}
	fields := p.Fields()
	for _, f := range []string{"type", "slot", "updatedAt"} {
		if slices.Contains(fields, f) {
			t.Errorf("%s: field %q is the API's own", p.Type(), f)
		}
	}

	cfg, secrets := p.NewConfig().Example()
	if err := cfg.Validate(ctx, env); err != nil {
		t.Fatalf("%s: the example does not validate: %v", p.Type(), err)
	}
	stored, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reloaded := p.NewConfig()
	if err := json.Unmarshal(stored, reloaded); err != nil {
		t.Fatalf("%s: the stored JSON does not load: %v", p.Type(), err)
	}
	if again, _ := json.Marshal(reloaded); string(again) != string(stored) {
		t.Errorf("%s: the configuration changes through the store: %s, then %s", p.Type(), stored, again)
	}
	var keys map[string]any
	_ = json.Unmarshal(stored, &keys)
	for k := range keys {
		if !slices.Contains(fields, k) {
			t.Errorf("%s: stored field %q is not one of Fields %v", p.Type(), k, fields)
		}
	}

	// Masked: no secret in the answer, and the original is untouched.
	masked, err := json.Marshal(cfg.Masked())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if s == "" {
			t.Fatalf("%s: the example declares an empty secret", p.Type())
		}
		if strings.Contains(string(masked), s) {
			t.Errorf("%s: secret %q appears in the masked configuration %s", p.Type(), s, masked)
		}
		if !strings.Contains(string(stored), s) {
			t.Errorf("%s: secret %q is not part of the configuration", p.Type(), s)
		}
	}
	if now, _ := json.Marshal(cfg); string(now) != string(stored) {
		t.Errorf("%s: Masked changed the configuration itself", p.Type())
	}

	// The masked answer PUT back keeps the stored secrets...
	back := p.NewConfig()
	if err := json.Unmarshal(masked, back); err != nil {
		t.Fatal(err)
	}
	if err := back.KeepSecrets(reloaded); err != nil {
		t.Fatalf("%s: the masked configuration PUT back is refused: %v", p.Type(), err)
	}
	if kept, _ := json.Marshal(back); string(kept) != string(stored) {
		t.Errorf("%s: the masked configuration PUT back became %s, want %s", p.Type(), kept, stored)
	}
	// ...but never without a stored configuration to take them from.
	if len(secrets) > 0 {
		orphan := p.NewConfig()
		_ = json.Unmarshal(masked, orphan)
		if err := orphan.KeepSecrets(nil); err == nil {
			t.Errorf("%s: a masked secret without a stored configuration was accepted", p.Type())
		} else if fe, ok := err.(*provider.FieldError); !ok || !slices.Contains(fields, fe.Field) {
			t.Errorf("%s: KeepSecrets error %v does not name one of the fields", p.Type(), err)
		}
	}

	// The configuration builds its Sender.
	s, err := cfg.NewSender(env)
	if err != nil || s == nil {
		t.Fatalf("%s: NewSender: %v", p.Type(), err)
	}
	if s.Endpoint() == "" {
		t.Errorf("%s: the sender has no endpoint", p.Type())
	}
}
