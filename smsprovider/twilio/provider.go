package twilio

import (
	"context"
	"regexp"
	"strings"

	"github.com/otphub/otphub/receipts"
	"github.com/otphub/otphub/smsprovider/provider"
)

// Type is the provider type of Twilio.
const Type = "twilio"

// Provider is Twilio as smsprovider registers it.
var Provider = provider.Define[Config](Type)

var (
	accountSIDPattern = regexp.MustCompile(`^AC[0-9a-fA-F]{32}$`)
	serviceSIDPattern = regexp.MustCompile(`^MG[0-9a-fA-F]{32}$`)
	authTokenPattern  = regexp.MustCompile(`^[A-Za-z0-9]{16,128}$`)
)

// Validate checks and normalizes c.
func (c *Config) Validate(ctx context.Context, env *provider.Env) error {
	c.AccountSID = strings.TrimSpace(c.AccountSID)
	c.MessagingServiceSID = strings.TrimSpace(c.MessagingServiceSID)
	c.From = strings.TrimSpace(c.From)
	switch {
	case c.AccountSID == "":
		return provider.Errorf("accountSid", "is required")
	case !accountSIDPattern.MatchString(c.AccountSID):
		return provider.Errorf("accountSid", "must be AC followed by 32 hexadecimal digits")
	case c.AuthToken == "":
		return provider.Errorf("authToken", "is required")
	case !authTokenPattern.MatchString(c.AuthToken):
		return provider.Errorf("authToken", "must be 16 to 128 letters and digits")
	case c.From == "" && c.MessagingServiceSID == "":
		return provider.Errorf("sender", "is required unless messagingServiceSid is set")
	case c.MessagingServiceSID != "" && !serviceSIDPattern.MatchString(c.MessagingServiceSID):
		return provider.Errorf("messagingServiceSid", "must be MG followed by 32 hexadecimal digits")
	}
	if c.From != "" {
		if err := provider.CheckSender(c.From); err != nil {
			return err
		}
	}
	return env.CheckURL(ctx, "baseUrl", &c.BaseURL, false)
}

// Masked returns c with its auth token masked.
func (c *Config) Masked() provider.Config {
	m := provider.Clone(c)
	m.AuthToken = provider.MaskSet(c.AuthToken)
	return m
}

// KeepSecrets restores a masked auth token of the same account.
func (c *Config) KeepSecrets(stored provider.Config) error {
	old, ok := provider.Stored[Config](stored)
	return provider.KeepMasked("authToken", &c.AuthToken, old.AuthToken, ok && strings.TrimSpace(c.AccountSID) == old.AccountSID,
		"is masked but does not match the stored token of this account; send the token in full")
}

// NewSender returns the Sender of c: with receipts on, every message
// names its status callback.
func (c *Config) NewSender(env *provider.Env) (provider.Sender, error) {
	cfg := *c
	if cfg.DeliveryReceipts {
		cfg.StatusCallback = env.ReceiptURL
	}
	return New(cfg, env.Client, env.Now)
}

// ReceiptCredentials are what authenticates c's status callbacks.
func (c *Config) ReceiptCredentials() receipts.Credentials {
	return receipts.Credentials{Type: Type, TwilioReceipts: c.DeliveryReceipts, AccountSID: c.AccountSID, AuthToken: c.AuthToken}
}

// Example is a valid configuration.
func (c *Config) Example() (provider.Config, []string) {
	token := "ExampleAuthToken0000000000000042"
	return &Config{AccountSID: "AC0123456789abcdef0123456789abcdef", AuthToken: token, From: "+14155550100", DeliveryReceipts: true}, []string{token}
}
