package custom

import (
	"context"

	"github.com/otphub/otphub/smsprovider/provider"
)

// Type is the provider type of a custom gateway.
const Type = "custom"

// Provider is the custom gateway as smsprovider registers it.
var Provider = provider.Define[Config](Type)

// maxHeadersLen bounds the static header list.
const maxHeadersLen = 4 << 10

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
	n := c.Normalize()
	if _, err := New(n, nil); err != nil {
		return err
	}
	hs, _ := ParseHeaders(n.Headers)
	c.ContentType, c.Method, c.Headers = n.ContentType, n.Method, FormatHeaders(hs)
	return nil
}

// Masked returns c with every header value masked.
func (c *Config) Masked() provider.Config {
	m := provider.Clone(c)
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

// KeepSecrets restores masked header values: each must be the mask of the
// stored value of the same header name, in the same order.
func (c *Config) KeepSecrets(stored provider.Config) error {
	hs, err := ParseHeaders(c.Headers)
	if err != nil || !hasMasked(hs) {
		return nil // Validate reports a malformed list
	}
	old, _ := provider.Stored[Config](stored)
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

// Example is a valid configuration.
func (c *Config) Example() (provider.Config, []string) {
	secret := "qwer1234asdfzxcv"
	return &Config{URL: "https://127.0.0.1:9/sms", ContentType: ContentJSON, Method: "POST",
		PayloadTemplate: `{"content": {{body}}, "to": {{mobile}}}`, Headers: "Authorisation: " + secret}, []string{secret}
}
