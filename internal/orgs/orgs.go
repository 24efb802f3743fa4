// Package orgs resolves the {org} of an org API's path, the one way every
// org-scoped API does it: an unknown or malformed org is 404
// org_not_found, a store failure 503 unavailable, whichever API is asked.
package orgs

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/store"
)

// ErrNotFound is returned by Resolve for an unknown or malformed org name.
var ErrNotFound = errors.New("orgs: org not found")

// Getter is what resolving needs of the store.
type Getter interface {
	GetOrg(ctx context.Context, name string) (store.Org, error)
}

// Resolve returns the org named name, or ErrNotFound.
func Resolve(ctx context.Context, st Getter, name string) (store.Org, error) {
	if !event.ValidOrgName(name) {
		return store.Org{}, ErrNotFound
	}
	o, err := st.GetOrg(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return store.Org{}, ErrNotFound
	}
	return o, err
}

// WriteError writes the answer to an error of Resolve: 404 org_not_found,
// or 503 unavailable (logged to log) when the store failed.
func WriteError(w http.ResponseWriter, log *slog.Logger, err error) {
	if errors.Is(err, ErrNotFound) {
		httpx.Error(w, http.StatusNotFound, "org_not_found", "no such organization")
		return
	}
	log.Error("loading the org of a request failed", "err", err)
	httpx.Error(w, http.StatusServiceUnavailable, "unavailable", "the store is unavailable; try again")
}

type orgKey struct{}

// With resolves the {org} path value and stores the org in the request
// context (read it with From); log receives store failures. Put it inside
// access.Require (Scoped does) so only authorised callers can tell an
// unknown org from a forbidden one.
func With(st Getter, log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o, err := Resolve(r.Context(), st, r.PathValue("org"))
		if err != nil {
			WriteError(w, log, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), orgKey{}, o)))
	})
}

// Scoped returns the guard every route of an org API goes through:
// authenticate with v, require scope, then resolve {org} (With), in that
// order, so only authorised callers can tell an unknown org from a
// forbidden one.
func Scoped(v access.Verifier, scope string, st Getter, log *slog.Logger) func(http.HandlerFunc) http.Handler {
	return func(h http.HandlerFunc) http.Handler {
		return access.Authenticate(v, access.Require(scope, With(st, log, h)))
	}
}

// From returns the org stored by With.
func From(ctx context.Context) (store.Org, bool) {
	o, ok := ctx.Value(orgKey{}).(store.Org)
	return o, ok
}
