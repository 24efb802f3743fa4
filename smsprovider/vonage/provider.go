package vonage

import (
	"context"
	"regexp"
	"slices"
	"strings"

	"github.com/otphub/otphub/receipts"
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
	case len(c.APISecret) > provider.MaxSecretLen || !provider.PrintableSecret(c.APISecret):
		return provider.Errorf("apiSecret", "must be at most %d printable ASCII characters without spaces", provider.MaxSecretLen)
	case c.From == "":
		return provider.Errorf("sender", "is required")
	}
	if err := provider.CheckSender(c.From); err != nil {
		return err
	}
	if err := c.checkSignature(); err != nil {
		return err
	}
	return env.CheckURL(ctx, "baseUrl", &c.BaseURL, false)
}

// checkSignature checks the signature secret and method (md5hash,
// Vonage's default, when a secret comes without one).
func (c *Config) checkSignature() error {
	c.SignatureMethod = strings.ToLower(strings.TrimSpace(c.SignatureMethod))
	switch {
	case c.SignatureSecret == "" && c.SignatureMethod != "":
		return provider.Errorf("signatureMethod", "needs signatureSecret")
	case c.SignatureSecret == "":
		return nil
	case len(c.SignatureSecret) > provider.MaxSecretLen || !provider.PrintableSecret(c.SignatureSecret):
		return provider.Errorf("signatureSecret", "must be at most %d printable ASCII characters without spaces", provider.MaxSecretLen)
	case c.SignatureMethod == "":
		c.SignatureMethod = receipts.SignatureMD5Hash
	case !slices.Contains(receipts.SignatureMethods, c.SignatureMethod):
		return provider.Errorf("signatureMethod", "must be one of %s (the signature method of the Vonage dashboard)",
			strings.Join(receipts.SignatureMethods, ", "))
	}
	return nil
}

// Masked returns c with its API secret masked.
func (c *Config) Masked() provider.Config {
	m := provider.Clone(c)
	m.APISecret = provider.MaskSet(c.APISecret)
	m.SignatureSecret = provider.MaskSet(c.SignatureSecret)
	return m
}

// KeepSecrets restores a masked API secret of the same API key.
func (c *Config) KeepSecrets(stored provider.Config) error {
	old, ok := provider.Stored[Config](stored)
	same := ok && strings.TrimSpace(c.APIKey) == old.APIKey
	if err := provider.KeepMasked("apiSecret", &c.APISecret, old.APISecret, same,
		"is masked but does not match the stored secret of this API key; send the secret in full"); err != nil {
		return err
	}
	return provider.KeepMasked("signatureSecret", &c.SignatureSecret, old.SignatureSecret, same,
		"is masked but does not match the stored signature secret of this API key; send the secret in full")
}

// NewSender returns the Sender of c: with a signature secret (receipts
// on), every SMS names its delivery receipt URL.
func (c *Config) NewSender(env *provider.Env) (provider.Sender, error) {
	cfg := *c
	if cfg.SignatureSecret != "" {
		cfg.Callback = env.ReceiptURL
	}
	return New(cfg, env.Client)
}

// ReceiptCredentials are what authenticates c's delivery receipts.
func (c *Config) ReceiptCredentials() receipts.Credentials {
	return receipts.Credentials{Type: Type, APIKey: c.APIKey, SignatureSecret: c.SignatureSecret, SignatureMethod: c.SignatureMethod}
}

// Example is a valid configuration.
func (c *Config) Example() (provider.Config, []string) {
	secret, sig := "s3cr3tV0nage-example", "Vonage-signature-secret-example"
	return &Config{APIKey: "abcd1234", APISecret: secret, From: "+14155550100", SignatureSecret: sig, SignatureMethod: receipts.SignatureSHA256},
		[]string{secret, sig}
}
