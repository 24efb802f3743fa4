package smsprovider

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/smsprovider/provider"
	"github.com/otphub/otphub/store"
)

// A provider configuration on the wire (docs/providers.md) is one JSON
// object: "type", the read-only "slot" and "updatedAt" (filled in by GET,
// ignored by PUT, so a GET body can be edited and PUT back), and the
// fields of the type's provider.Config. The store keeps the provider's
// fields alone (the type is a column).

// envelope is the API's own part of a configuration.
type envelope struct {
	Type      string     `json:"type"`
	Slot      string     `json:"slot,omitempty"`
	UpdatedAt *time.Time `json:"updatedAt,omitempty"`
	// ReceiptURL (read-only) is where the provider posts the slot's
	// delivery receipts, when they are on and the URL is fixed (Vonage,
	// custom gateways).
	ReceiptURL string `json:"receiptUrl,omitempty"`
}

var envelopeFields = map[string]bool{"type": true, "slot": true, "updatedAt": true, "receiptUrl": true}

// parse reads a PUT body (already decoded as a JSON object): its type and
// that type's configuration. A field of another provider type is refused
// unless empty; a field of no provider type is an unknown field.
func (s *Service) parse(raw map[string]json.RawMessage) (provider.Provider, provider.Config, error) {
	var env envelope
	own := map[string]json.RawMessage{}
	rest := map[string]json.RawMessage{}
	for k, v := range raw {
		if envelopeFields[k] {
			own[k] = v
		} else {
			rest[k] = v
		}
	}
	if err := unmarshalPart(own, &env); err != nil {
		return nil, nil, err
	}
	typ := strings.ToLower(strings.TrimSpace(env.Type))
	p, ok := s.providers.get(typ)
	if !ok {
		return nil, nil, provider.Errorf("type", "must be one of %s", s.providers.list())
	}
	mine := p.Fields()
	var notMine []string
	for k, v := range rest {
		if s.providers.fields[k] && !slices.Contains(mine, k) {
			delete(rest, k)
			if string(v) != `""` && string(v) != "null" {
				notMine = append(notMine, k)
			}
		}
	}
	cfg := p.NewConfig()
	if err := unmarshalPart(rest, cfg); err != nil {
		return nil, nil, err // an unknown field, or a value of the wrong JSON type
	}
	if len(notMine) > 0 {
		slices.Sort(notMine)
		return nil, nil, provider.Errorf(notMine[0], "does not apply to provider type %s", typ)
	}
	return p, cfg, nil
}

func unmarshalPart(part map[string]json.RawMessage, dst any) error {
	b, err := json.Marshal(part)
	if err != nil {
		return err
	}
	return httpx.Unmarshal(b, dst)
}

// stored is a slot's stored configuration.
type stored struct {
	p   provider.Provider
	cfg provider.Config
	row store.SMSProvider
}

// load returns the configuration of org's slot (store.ErrNotFound when
// none). A type no longer offered loads with a nil provider: it cannot
// send, and GET shows its type alone.
func (s *Service) load(ctx context.Context, orgID int64, slot string) (stored, error) {
	row, err := s.st.GetSMSProvider(ctx, orgID, slot)
	if err != nil {
		return stored{}, err
	}
	p, ok := s.providers.get(row.Type)
	if !ok {
		return stored{row: row}, nil
	}
	cfg := p.NewConfig()
	if err := json.Unmarshal(row.Config, cfg); err != nil {
		return stored{}, fmt.Errorf("smsprovider: stored config of org %d slot %s: %w", orgID, slot, err)
	}
	return stored{p: p, cfg: cfg, row: row}, nil
}

// view is what GET and PUT answer: the configuration with its secrets
// masked, its type, slot and time of the last change, and the receipt URL
// of org's slot when it takes receipts.
func (s *Service) view(sp stored, org string) (map[string]any, error) {
	out := map[string]any{}
	if sp.cfg != nil {
		b, err := json.Marshal(sp.cfg.Masked())
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &out); err != nil {
			return nil, err
		}
	}
	out["type"], out["slot"] = sp.row.Type, sp.row.Slot
	if rc := s.cfg.Receipts; rc != nil && receiptCredentials(sp).ExpectsReceipts() {
		if u := rc.ReceiptURL(sp.row.Type, org, sp.row.Slot); u != "" {
			out["receiptUrl"] = u
		}
	}
	if !sp.row.UpdatedAt.IsZero() {
		out["updatedAt"] = sp.row.UpdatedAt.UTC()
	}
	return out, nil
}
