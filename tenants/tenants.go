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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/oauth"
	"github.com/otphub/otphub/store"
)

var orgNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ErrOrgNotFound is returned by ResolveOrg for an unknown org.
var ErrOrgNotFound = errors.New("tenants: org not found")

// ResolveOrg returns the org named name, or ErrOrgNotFound.
func ResolveOrg(ctx context.Context, st store.Store, name string) (store.Org, error) {
	if !orgNamePattern.MatchString(name) {
		return store.Org{}, ErrOrgNotFound
	}
	o, err := st.GetOrg(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return store.Org{}, ErrOrgNotFound
	}
	return o, err
}

// WriteOrgError writes the response for an error of ResolveOrg: 404
// org_not_found or 500.
func WriteOrgError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrOrgNotFound) {
		httpx.Error(w, http.StatusNotFound, "org_not_found", "no such organization")
		return
	}
	httpx.Error(w, http.StatusInternalServerError, "internal", "internal error")
}

type orgKey struct{}

// WithOrg resolves the {org} path value and stores the org in the request
// context (read it with OrgFrom); an unknown org is a 404 org_not_found.
// Put it inside access.Require so only authorised callers can tell an
// unknown org from a forbidden one:
//
//	access.Authenticate(v, access.Require(scope, tenants.WithOrg(st, h)))
func WithOrg(st store.Store, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o, err := ResolveOrg(r.Context(), st, r.PathValue("org"))
		if err != nil {
			WriteOrgError(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), orgKey{}, o)))
	})
}

// OrgFrom returns the org stored by WithOrg.
func OrgFrom(ctx context.Context) (store.Org, bool) {
	o, ok := ctx.Value(orgKey{}).(store.Org)
	return o, ok
}

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
	admin := func(h http.HandlerFunc) http.Handler {
		return access.Authenticate(v, access.Require(access.ScopeAdmin, WithOrg(a.st, h)))
	}
	mux.Handle("POST /api/v1/orgs", access.Authenticate(v, requirePlatformAdmin(http.HandlerFunc(a.createOrg))))
	mux.Handle("GET /api/v1/orgs", access.Authenticate(v, requirePlatformAdmin(http.HandlerFunc(a.listOrgs))))
	mux.Handle("GET /api/v1/orgs/{org}", access.Authenticate(v, requireMember(WithOrg(a.st, http.HandlerFunc(a.getOrg)))))
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
	if !orgNamePattern.MatchString(req.Name) {
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
	o, _ := OrgFrom(r.Context())
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
	org, _ := OrgFrom(r.Context())
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
	org, _ := OrgFrom(r.Context())
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
	org, _ := OrgFrom(r.Context())
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
