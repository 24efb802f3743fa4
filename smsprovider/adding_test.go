package smsprovider_test

// This file is the walkthrough of docs/adding-a-provider.md, kept honest:
// every Go block of the page appears verbatim here, and the provider it
// builds (from exported pieces only) passes the provider conformance
// suite, the sender conformance suite, and a real round trip through the
// provider config API once registered.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/delivery/sendertest"
	"github.com/otphub/otphub/egress"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/smsprovider"
	"github.com/otphub/otphub/smsprovider/provider"
	"github.com/otphub/otphub/smsprovider/providertest"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/sqlite"
)

// --- the provider package (smsprovider/acme in the walkthrough) ---

// Config is one Acme SMS account, as the provider config API reads and
// writes it and the store keeps it.
type Config struct {
	APIKey  string `json:"apiKey,omitempty"` // secret
	From    string `json:"sender,omitempty"`
	BaseURL string `json:"baseUrl,omitempty"`
}

// Provider is Acme SMS as smsprovider registers it.
var Provider = provider.Define[Config]("acme")

// Validate checks and normalizes c.
func (c *Config) Validate(ctx context.Context, env *provider.Env) error {
	c.From = strings.TrimSpace(c.From)
	switch {
	case c.APIKey == "":
		return provider.Errorf("apiKey", "is required")
	case len(c.APIKey) > provider.MaxSecretLen:
		return provider.Errorf("apiKey", "must be at most %d characters", provider.MaxSecretLen)
	}
	if err := provider.CheckSender(c.From); err != nil {
		return err
	}
	return env.CheckURL(ctx, "baseUrl", &c.BaseURL, false)
}

// Masked returns c with its API key masked.
func (c *Config) Masked() provider.Config {
	m := provider.Clone(c)
	m.APIKey = provider.MaskSet(c.APIKey)
	return m
}

// KeepSecrets restores a masked API key sent back unchanged.
func (c *Config) KeepSecrets(stored provider.Config) error {
	old, ok := provider.Stored[Config](stored)
	return provider.KeepMasked("apiKey", &c.APIKey, old.APIKey, ok,
		"is masked but does not match the stored key; send the key in full")
}

// Example is a valid configuration and its secrets.
func (c *Config) Example() (provider.Config, []string) {
	key := "acme-live-key-0123456789"
	return &Config{APIKey: key, From: "+14155550100"}, []string{key}
}

// NewSender returns the Sender of c.
func (c *Config) NewSender(env *provider.Env) (provider.Sender, error) {
	base, origin, ok := delivery.ProviderBase(c.BaseURL, "https://api.acme-sms.example")
	if !ok {
		return nil, fmt.Errorf("acme: base URL %q is not an absolute http(s) URL", c.BaseURL)
	}
	client := env.Client
	if client == nil {
		client = delivery.SenderClient()
	}
	return &Sender{cfg: *c, url: base + "/v1/messages", endpoint: origin, client: client}, nil
}

// Sender sends through one Acme account.
type Sender struct {
	cfg      Config
	url      string
	endpoint string
	client   *http.Client
}

// Endpoint keys the circuit breaker and concurrency cap.
func (s *Sender) Endpoint() string { return s.endpoint }

// Send posts ev once and classifies the answer.
func (s *Sender) Send(ctx context.Context, ev *event.SmsOtpNotificationEvent) delivery.Result {
	body, _ := json.Marshal(map[string]string{"from": s.cfg.From, "to": ev.SendTo, "text": ev.MessageBody})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return delivery.Result{Reason: delivery.ReasonInvalid, Err: fmt.Errorf("acme: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.cfg.APIKey)
	req.Header.Set("Idempotency-Key", ev.ID)
	resp, err := s.client.Do(req)
	if err != nil {
		return delivery.ClassifyTransport(ctx, "acme", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return delivery.Provider.Classify(resp.StatusCode, resp.Header, time.Now())
}

// --- its tests (smsprovider/acme/acme_test.go in the walkthrough) ---

func TestAcmeConforms(t *testing.T) {
	providertest.Run(t, Provider)
	sendertest.Run(t, sendertest.Harness{
		New: func(t *testing.T, base string, client *http.Client) delivery.Sender {
			s, err := (&Config{APIKey: "acme-live-key-0123456789", From: "+14155550100", BaseURL: base}).NewSender(&provider.Env{Client: client})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		Expect:         delivery.Provider.Rule,
		IdempotencyKey: sendertest.Header("Idempotency-Key"),
		Secrets:        []string{"acme-live-key-0123456789"},
	})
}

// --- the registration, and the provider through the real API ---

// tokens is a static access.Verifier.
type tokens map[string]access.Principal

func (v tokens) Verify(_ context.Context, tok string) (access.Principal, error) {
	if p, ok := v[tok]; ok {
		return p, nil
	}
	return access.Principal{}, errors.New("unknown token")
}

func TestAcmeThroughTheAPI(t *testing.T) {
	ctx := context.Background()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	st, err := sqlite.Open(ctx, t.TempDir(), store.Options{EncryptionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	org, err := st.CreateOrg(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	eg, err := egress.New(egress.Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := smsprovider.New(smsprovider.Config{AllowHTTP: true,
		Providers: append(smsprovider.Registered(), Provider),
	}, st, eg.HTTP(), eg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Register(mux, tokens{"admin": {ClientID: "a", OrgID: org.ID, OrgName: org.Name, Scopes: []string{access.ScopeAdmin}}})
	api := httptest.NewServer(mux)
	t.Cleanup(api.Close)

	var mu sync.Mutex
	var sent []map[string]string
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]string
		_ = json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		sent = append(sent, m)
		mu.Unlock()
		if r.URL.Path != "/v1/messages" || r.Header.Get("Authorization") != "Bearer acme-live-key-0123456789" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(gateway.Close)

	do := func(method, path string, body any) (int, map[string]any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, api.URL+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer admin")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	const path = "/api/v1/orgs/acme/sms-provider"
	cfg := map[string]any{"type": "acme", "apiKey": "acme-live-key-0123456789", "sender": "+14155550100", "baseUrl": gateway.URL}
	if code, out := do("PUT", path, cfg); code != 200 || out["apiKey"] != "****6789" {
		t.Fatalf("PUT: %d %v", code, out)
	}
	if code, out := do("PUT", path, map[string]any{"type": "acme", "accountSid": "AC0123456789abcdef0123456789abcdef"}); code != 400 || out["field"] != "accountSid" {
		t.Fatalf("a Twilio field on an acme provider: %d %v", code, out)
	}
	code, out := do("GET", path, nil)
	if code != 200 || out["type"] != "acme" || out["apiKey"] != "****6789" || out["baseUrl"] != gateway.URL {
		t.Fatalf("GET: %d %v", code, out)
	}
	out["sender"] = "Acme"
	if code, back := do("PUT", path, out); code != 200 || back["sender"] != "Acme" {
		t.Fatalf("the GET body edited and PUT back: %d %v", code, back)
	}
	if code, res := do("POST", path+"/test", map[string]any{"mobile": "+94771234567"}); code != 200 || res["ok"] != true {
		t.Fatalf("test send: %d %v", code, res)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(sent) != 1 || sent[0]["to"] != "+94771234567" || sent[0]["from"] != "Acme" {
		t.Fatalf("the gateway got %v", sent)
	}
	if types := svc.Resolver().Types(); types[len(types)-1] != "acme" {
		t.Fatalf("the resolver resolves %v", types)
	}
}

// TestWalkthroughIsThisCode: every Go block of docs/adding-a-provider.md
// is code of this file, so the page cannot drift from what compiles.
func TestWalkthroughIsThisCode(t *testing.T) {
	doc, err := os.ReadFile("../docs/adding-a-provider.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("adding_test.go")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) < 3 {
		t.Fatalf("the walkthrough has %d Go blocks", len(blocks))
	}
	for _, b := range blocks {
		code := strings.TrimSpace(string(b[1]))
		if strings.HasPrefix(code, "// smsprovider/registry.go") {
			continue // checked against registry.go below
		}
		if !bytes.Contains(src, []byte(code)) {
			t.Errorf("this Go block of the walkthrough is not the tested code:\n%s", code)
		}
	}
	reg, err := os.ReadFile("registry.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(reg, []byte("\t\ttwilio.Provider,\n")) {
		t.Error("registry.go no longer lists providers one a line, as the walkthrough says")
	}
}
