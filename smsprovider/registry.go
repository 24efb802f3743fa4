package smsprovider

import (
	"fmt"
	"slices"
	"strings"

	"github.com/otphub/otphub/smsprovider/console"
	"github.com/otphub/otphub/smsprovider/custom"
	"github.com/otphub/otphub/smsprovider/provider"
	"github.com/otphub/otphub/smsprovider/twilio"
	"github.com/otphub/otphub/smsprovider/vonage"
)

// Registered returns every SMS provider type the server offers. Adding a
// provider is a package under smsprovider/ (see docs/adding-a-provider.md)
// and one line here.
func Registered() []provider.Provider {
	return []provider.Provider{
		twilio.Provider,
		vonage.Provider,
		custom.Provider,
		console.Provider,
	}
}

// registry is the provider types of a Service, by type.
type registry struct {
	byType map[string]provider.Provider
	types  []string
	fields map[string]bool // every field of every provider
}

func newRegistry(ps []provider.Provider) (*registry, error) {
	r := &registry{byType: map[string]provider.Provider{}, fields: map[string]bool{}}
	for _, p := range ps {
		t := p.Type()
		if t == "" || t != strings.ToLower(strings.TrimSpace(t)) {
			return nil, fmt.Errorf("smsprovider: provider type %q must be lower case", t)
		}
		if _, dup := r.byType[t]; dup {
			return nil, fmt.Errorf("smsprovider: provider type %q registered twice", t)
		}
		for _, f := range p.Fields() {
			if envelopeFields[f] {
				return nil, fmt.Errorf("smsprovider: provider %s: field %q is the API's own", t, f)
			}
			r.fields[f] = true
		}
		r.byType[t] = p
		r.types = append(r.types, t)
	}
	return r, nil
}

func (r *registry) get(t string) (provider.Provider, bool) {
	p, ok := r.byType[t]
	return p, ok
}

// list is the types for an error message: "twilio, vonage, custom, console".
func (r *registry) list() string { return strings.Join(r.types, ", ") }

// Types lists the registered types, in registration order.
func (r *registry) Types() []string { return slices.Clone(r.types) }
