package console

import (
	"context"
	"errors"

	"github.com/otphub/otphub/smsprovider/provider"
)

// Type is the provider type of the console.
const Type = "console"

// Provider is the console as smsprovider registers it.
var Provider = provider.Define[Config](Type)

// Config is the console's configuration: it has none.
type Config struct{}

// Validate refuses the console unless the server allows it.
func (c *Config) Validate(_ context.Context, env *provider.Env) error {
	if !env.AllowConsole {
		return provider.Errorf("type", "the console provider is for development only and is disabled on this server (start otphub with --allow-console-provider)")
	}
	return nil
}

// Masked returns c: the console has no secret.
func (c *Config) Masked() provider.Config { return provider.Clone(c) }

// KeepSecrets has nothing to keep.
func (c *Config) KeepSecrets(provider.Config) error { return nil }

// NewSender returns the console writing to env.Stdout, unless the server
// disallows the console (a configuration stored before the flag was
// removed).
func (c *Config) NewSender(env *provider.Env) (provider.Sender, error) {
	if !env.AllowConsole {
		return nil, errors.New("console: the console provider is disabled on this server")
	}
	return New(env.Stdout), nil
}

// Example is the configuration.
func (c *Config) Example() (provider.Config, []string) { return &Config{}, nil }
