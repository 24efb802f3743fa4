package smsprovider

import (
	"testing"

	"github.com/otphub/otphub/smsprovider/providertest"
)

// Every registered provider passes the provider conformance suite.
func TestRegisteredProvidersConform(t *testing.T) {
	for _, p := range Registered() {
		t.Run(p.Type(), func(t *testing.T) { providertest.Run(t, p) })
	}
	if _, err := newRegistry(append(Registered(), Registered()[0])); err == nil {
		t.Error("a provider type registered twice was accepted")
	}
}
