package custom

import (
	"context"

	"github.com/otphub/otphub/receipts"
	"github.com/otphub/otphub/smsprovider/provider"
)

// Type is the provider type of a custom gateway.
const Type = "custom"

// Provider is the custom gateway as smsprovider registers it.
var Provider = provider.Define[Config](Type)

// maxHeadersLen bounds the static header list.
const maxHeadersLen = 4 << 10

// minReceiptSecretLen: the receipt secret is chosen by the org admin and
// is all that authenticates a gateway's receipts.
const minReceiptSecretLen = 16

// Validate checks c and normalizes it: upper-case content type and
// method, canonical header names.
func (c *Config) Validate(ctx context.Context, env *provider.Env) error {
	if c.URL == "" {
		return provider.Errorf("url", "is required")
	}
	if err := env.CheckURL(ctx, "url", &c.URL, true); err != nil {
		return err
	}
	if c.PayloadTemplate == "" {
		return provider.Errorf("payloadTemplate", "is required")
	}
	if len(c.Headers) > maxHeadersLen {
		return provider.Errorf("headers", "must be at most %d bytes", maxHeadersLen)
	}
	if v := c.ReceiptSecret; v != "" && (len(v) < minReceiptSecretLen || len(v) > provider.MaxSecretLen || !provider.PrintableSecret(v)) {
		return provider.Errorf("receiptSecret", "must be %d to %d printable ASCII characters without spaces", minReceiptSecretLen, provider.MaxSecretLen)
	}
	n := c.Normalize()
	if _, err := New(n, nil); err != nil {
		return err
	}
	hs, _ := ParseHeaders(n.Headers)
	c.ContentType, c.Method, c.Headers = n.ContentType, n.Method, FormatHeaders(hs)
	return nil
}

// Masked returns c with every header value and the receipt secret masked.
func (c *Config) Masked() provider.Config {
	m := provider.Clone(c)
	m.ReceiptSecret = provider.MaskSet(c.ReceiptSecret)
	if c.Headers == "" {
		return m
	}
	hs, err := ParseHeaders(c.Headers)
	if err != nil {
		m.Headers = provider.MaskPrefix
		return m
	}
	for i := range hs {
		hs[i].Value = provider.Mask(hs[i].Value)
	}
	m.Headers = FormatHeaders(hs)
	return m
}

// KeepSecrets restores masked header values (each must be the mask of the
// stored value of the same header name, in the same order) and a masked
// receipt secret of the same gateway URL.
func (c *Config) KeepSecrets(stored provider.Config) error {
	old, ok := provider.Stored[Config](stored)
	if err := provider.KeepMasked("receiptSecret", &c.ReceiptSecret, old.ReceiptSecret, ok && c.URL == old.URL,
		"is masked but does not match the stored receipt secret of this gateway URL; send the secret in full"); err != nil {
		return err
	}
	hs, err := ParseHeaders(c.Headers)
	if err != nil || !hasMasked(hs) {
		return nil // Validate reports a malformed list
	}
	oldHs, _ := ParseHeaders(old.Headers)
	for i, h := range hs {
		if !provider.IsMasked(h.Value) {
			continue
		}
		ov, ok := nthValue(oldHs, h.Name, occurrence(hs[:i], h.Name))
		if err := provider.KeepMasked("headers", &hs[i].Value, ov, ok,
			"the value of "+h.Name+" is masked but does not match a stored header; send it in full"); err != nil {
			return err
		}
	}
	c.Headers = FormatHeaders(hs)
	return nil
}

func hasMasked(hs []Header) bool {
	for _, h := range hs {
		if provider.IsMasked(h.Value) {
			return true
		}
	}
	return false
}

func occurrence(hs []Header, name string) int {
	n := 0
	for _, h := range hs {
		if h.Name == name {
			n++
		}
	}
	return n
}

func nthValue(hs []Header, name string, n int) (string, bool) {
	for _, h := range hs {
		if h.Name == name {
			if n == 0 {
				return h.Value, true
			}
			n--
		}
	}
	return "", false
}

// NewSender returns the Sender of c.
func (c *Config) NewSender(env *provider.Env) (provider.Sender, error) {
	return New(*c, env.Client)
}

// ReceiptCredentials are what authenticates c's delivery receipts.
func (c *Config) ReceiptCredentials() receipts.Credentials {
	return receipts.Credentials{Type: Type, ReceiptSecret: c.ReceiptSecret}
}

// Example is a valid configuration.
func (c *Config) Example() (provider.Config, []string) {
	secret, receipt := "qwer1234asdfzxcv", "receipt-secret-example-0123"
	return &Config{URL: "https://127.0.0.1:9/sms", ContentType: ContentJSON, Method: "POST",
			PayloadTemplate: `{"content": {{body}}, "to": {{mobile}}}`, Headers: "Authorisation: " + secret, ReceiptSecret: receipt},
		[]string{secret, receipt}
}
