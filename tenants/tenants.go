// Package tenants owns the organizations and OAuth clients API
// (/api/v1/orgs…) and the one way every package resolves the {org} path
// value to a store.Org.
//
// Org enumeration: a route's scope check (access.Require) runs before the
// org is looked up, and it compares the token's org name with the path, so
// a client of another org gets 403 whether or not the org exists; only the
// platform admin, who may know every org, can get 404 org_not_found.
package tenants

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/internal/orgs"
	"github.com/otphub/otphub/oauth"
	"github.com/otphub/otphub/store"
)

// Config configures the API.
type Config struct {
	// OnClientDeleted, when set, is called after a client is deleted (the
	// lead wires (*oauth.Issuer).ForgetClient so its tokens stop working
	// at once on this replica).
	OnClientDeleted func(clientID string)
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// API serves the orgs and clients endpoints.
type API struct {
	cfg Config
	st  store.Store
	log *slog.Logger
}

// New returns the API over st.
func New(cfg Config, st store.Store, logger *slog.Logger) (*API, error) {
	if st == nil {
		return nil, errors.New("tenants: nil store")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &API{cfg: cfg, st: st, log: logger.With("component", "tenants")}, nil
}

// Register adds the orgs and clients routes to mux.
func (a *API) Register(mux httpx.Mux, v access.Verifier) {
	admin := orgs.Scoped(v, access.ScopeAdmin, a.st, a.log)
	mux.Handle("POST /api/v1/orgs", access.Authenticate(v, requirePlatformAdmin(http.HandlerFunc(a.createOrg))))
	mux.Handle("GET /api/v1/orgs", access.Authenticate(v, requirePlatformAdmin(http.HandlerFunc(a.listOrgs))))
	mux.Handle("GET /api/v1/orgs/{org}", access.Authenticate(v, requireMember(orgs.With(a.st, a.log, http.HandlerFunc(a.getOrg)))))
	mux.Handle("POST /api/v1/orgs/{org}/clients", admin(a.createClient))
	mux.Handle("GET /api/v1/orgs/{org}/clients", admin(a.listClients))
	mux.Handle("DELETE /api/v1/orgs/{org}/clients/{clientId}", admin(a.deleteClient))
}

func requirePlatformAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, _ := access.FromContext(r.Context()); !p.PlatformAdmin {
			httpx.Error(w, http.StatusForbidden, "forbidden", "only the platform admin may do this")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requireMember lets through the platform admin and any client of the
// {org} org, whatever its scopes.
func requireMember(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := access.FromContext(r.Context())
		if !p.PlatformAdmin && (p.OrgName == "" || p.OrgName != r.PathValue("org")) {
			httpx.Error(w, http.StatusForbidden, "forbidden", "the token does not grant access to this organization")
			return
		}
		next.ServeHTTP(w, r)
	})
}

type orgJSON struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
}

func orgOut(o store.Org) orgJSON { return orgJSON{o.ID, o.Name, o.CreatedAt.UTC()} }

func (a *API) createOrg(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := httpx.DecodeJSON(w, r, &req, 4<<10); err != nil {
		httpx.WriteDecodeError(w, err)
		return
	}
	if !event.ValidOrgName(req.Name) {
		httpx.Error(w, http.StatusBadRequest, "invalid_field", "name: must match ^[a-z0-9][a-z0-9-]{0,62}$")
		return
	}
	o, err := a.st.CreateOrg(r.Context(), req.Name)
	if errors.Is(err, store.ErrConflict) {
		httpx.Error(w, http.StatusConflict, "org_exists", "an organization with this name exists")
		return
	}
	if err != nil {
		a.internal(w, "create org", err)
		return
	}
	a.log.Info("org created", "org", o.Name, "org_id", o.ID)
	httpx.JSON(w, http.StatusCreated, orgOut(o))
}

func (a *API) listOrgs(w http.ResponseWriter, r *http.Request) {
	orgs, err := a.st.ListOrgs(r.Context())
	if err != nil {
		a.internal(w, "list orgs", err)
		return
	}
	out := make([]orgJSON, 0, len(orgs))
	for _, o := range orgs {
		out = append(out, orgOut(o))
	}
	httpx.JSON(w, http.StatusOK, map[string]any{"orgs": out})
}

func (a *API) getOrg(w http.ResponseWriter, r *http.Request) {
	o, _ := orgs.From(r.Context())
	httpx.JSON(w, http.StatusOK, orgOut(o))
}

type clientJSON struct {
	ClientID  string    `json:"clientId"`
	Name      string    `json:"name"`
	Scopes    []string  `json:"scopes"`
	CreatedAt time.Time `json:"createdAt"`
}

// ValidClientName reports whether name is an acceptable client name: 1 to
// 100 characters of valid UTF-8 without control characters.
func ValidClientName(name string) bool {
	if name == "" || !utf8.ValidString(name) || utf8.RuneCountInString(name) > 100 {
		return false
	}
	for _, c := range name {
		if unicode.IsControl(c) {
			return false
		}
	}
	return true
}

func (a *API) createClient(w http.ResponseWriter, r *http.Request) {
	org, _ := orgs.From(r.Context())
	var req struct {
		Name   string   `json:"name"`
		Scopes []string `json:"scopes"`
	}
	if err := httpx.DecodeJSON(w, r, &req, 4<<10); err != nil {
		httpx.WriteDecodeError(w, err)
		return
	}
	if !ValidClientName(req.Name) {
		httpx.Error(w, http.StatusBadRequest, "invalid_field", "name: 1 to 100 characters, no control characters")
		return
	}
	if len(req.Scopes) == 0 {
		httpx.Error(w, http.StatusBadRequest, "invalid_field", "scopes: at least one of subscribe, publish, otp, admin")
		return
	}
	for _, s := range req.Scopes {
		if !slices.Contains(access.AllScopes, s) {
			httpx.Error(w, http.StatusBadRequest, "invalid_field", fmt.Sprintf("scopes: unknown scope %q (subscribe, publish, otp, admin)", s))
			return
		}
	}
	scopes := slices.Clone(req.Scopes)
	slices.Sort(scopes)
	scopes = slices.Compact(scopes)
	secret, err := oauth.NewSecret()
	if err != nil {
		a.internal(w, "generate secret", err)
		return
	}
	hash, err := oauth.HashSecret(secret)
	if err != nil {
		a.internal(w, "hash secret", err)
		return
	}
	c := store.Client{
		ClientID: uuid.NewString(), OrgID: org.ID, Name: req.Name,
		SecretHash: hash, Scopes: scopes, CreatedAt: a.cfg.Now().UTC(),
	}
	if err := a.st.CreateClient(r.Context(), c); err != nil {
		a.internal(w, "create client", err)
		return
	}
	a.log.Info("client created", "org", org.Name, "client_id", c.ClientID, "scopes", scopes)
	httpx.JSON(w, http.StatusCreated, map[string]any{
		"clientId": c.ClientID, "clientSecret": secret, "name": c.Name, "scopes": scopes,
	})
}

func (a *API) listClients(w http.ResponseWriter, r *http.Request) {
	org, _ := orgs.From(r.Context())
	cs, err := a.st.ListClients(r.Context(), org.ID)
	if err != nil {
		a.internal(w, "list clients", err)
		return
	}
	out := make([]clientJSON, 0, len(cs))
	for _, c := range cs {
		out = append(out, clientJSON{c.ClientID, c.Name, c.Scopes, c.CreatedAt.UTC()})
	}
	httpx.JSON(w, http.StatusOK, map[string]any{"clients": out})
}

func (a *API) deleteClient(w http.ResponseWriter, r *http.Request) {
	org, _ := orgs.From(r.Context())
	id := r.PathValue("clientId")
	err := a.st.DeleteClient(r.Context(), org.ID, id)
	if errors.Is(err, store.ErrNotFound) {
		httpx.Error(w, http.StatusNotFound, "client_not_found", "no such client in this organization")
		return
	}
	if err != nil {
		a.internal(w, "delete client", err)
		return
	}
	if a.cfg.OnClientDeleted != nil {
		a.cfg.OnClientDeleted(id)
	}
	a.log.Info("client deleted", "org", org.Name, "client_id", id)
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) internal(w http.ResponseWriter, what string, err error) {
	a.log.Error(what+" failed", "err", err)
	httpx.Error(w, http.StatusInternalServerError, "internal", "internal error")
}
