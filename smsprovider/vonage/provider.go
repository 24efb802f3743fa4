package vonage

import (
	"context"
	"regexp"
	"strings"

	"github.com/otphub/otphub/smsprovider/provider"
)

// Type is the provider type of Vonage.
const Type = "vonage"

// Provider is Vonage as smsprovider registers it.
var Provider = provider.Define[Config](Type)

var apiKeyPattern = regexp.MustCompile(`^[A-Za-z0-9]{1,64}$`)

// Validate checks and normalizes c.
func (c *Config) Validate(ctx context.Context, env *provider.Env) error {
	c.APIKey = strings.TrimSpace(c.APIKey)
	c.From = strings.TrimSpace(c.From)
	switch {
	case c.APIKey == "":
		return provider.Errorf("apiKey", "is required")
	case !apiKeyPattern.MatchString(c.APIKey):
		return provider.Errorf("apiKey", "must be 1 to 64 letters and digits")
	case c.APISecret == "":
		return provider.Errorf("apiSecret", "is required")
	case len(c.APISecret) > provider.MaxSecretLen || !printableASCII(c.APISecret):
		return provider.Errorf("apiSecret", "must be at most %d printable ASCII characters without spaces", provider.MaxSecretLen)
	case c.From == "":
		return provider.Errorf("sender", "is required")
	}
	if err := provider.CheckSender(c.From); err != nil {
		return err
	}
	return env.CheckURL(ctx, "baseUrl", &c.BaseURL, false)
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// Masked returns c with its API secret masked.
func (c *Config) Masked() provider.Config {
	m := provider.Clone(c)
	m.APISecret = provider.MaskSet(c.APISecret)
	return m
}

// KeepSecrets restores a masked API secret of the same API key.
func (c *Config) KeepSecrets(stored provider.Config) error {
	old, ok := provider.Stored[Config](stored)
	return provider.KeepMasked("apiSecret", &c.APISecret, old.APISecret, ok && strings.TrimSpace(c.APIKey) == old.APIKey,
		"is masked but does not match the stored secret of this API key; send the secret in full")
}

// NewSender returns the Sender of c.
func (c *Config) NewSender(env *provider.Env) (provider.Sender, error) {
	return New(*c, env.Client)
}

// Example is a valid configuration.
func (c *Config) Example() (provider.Config, []string) {
	secret := "s3cr3tV0nage-example"
	return &Config{APIKey: "abcd1234", APISecret: secret, From: "+14155550100"}, []string{secret}
}
