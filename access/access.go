// Package access owns who may do what: the Principal a bearer token
// authenticates, the scopes, and the HTTP middleware that enforces them.
// Token issuance and verification live in package oauth.
package access

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/otphub/otphub/internal/httpx"
)

// Scopes a client may hold.
const (
	ScopeSubscribe = "subscribe" // WebSub subscribe/unsubscribe on its org's topics
	ScopePublish   = "publish"   // publish events to its org's topics
	ScopeOTP       = "otp"       // start, resend and verify SMS OTP challenges
	ScopeAdmin     = "admin"     // administer its org: settings, provider, clients, subscriptions, deliveries
)

// AllScopes lists every scope, in a stable order.
var AllScopes = []string{ScopeSubscribe, ScopePublish, ScopeOTP, ScopeAdmin}

// Principal is the authenticated caller.
type Principal struct {
	ClientID      string
	OrgID         int64  // 0 for the platform admin
	OrgName       string // "" for the platform admin
	Scopes        []string
	PlatformAdmin bool // may create orgs and act on every org
	// User is the console user's email when a console session acts
	// (through InProcess); "" for an OAuth client.
	User string
}

// Actor names p in the audit log: "user:<email>" or "client:<id>".
func (p Principal) Actor() string {
	if p.User != "" {
		return "user:" + p.User
	}
	return "client:" + p.ClientID
}

// Can reports whether p may use scope on org. The platform admin can do
// everything; an org client only on its own org, and org admin implies
// every other scope of that org.
func (p Principal) Can(org, scope string) bool {
	if p.PlatformAdmin {
		return true
	}
	if p.OrgName == "" || p.OrgName != org {
		return false
	}
	return slices.Contains(p.Scopes, scope) || slices.Contains(p.Scopes, ScopeAdmin)
}

// Verifier turns a bearer token into a Principal. Implemented by oauth.
type Verifier interface {
	Verify(ctx context.Context, token string) (Principal, error)
}

type ctxKey struct{}

type inProcessKey struct{}

// InProcess returns ctx for an API request made inside the process on p's
// behalf (the console calls the API handlers so, with the principal of
// its signed-in user): Authenticate takes p instead of a bearer token.
// A request from the network can never carry it; every check after
// Authenticate (scopes, org membership, validation) applies unchanged.
func InProcess(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, inProcessKey{}, p)
}

// InProcessPrincipal returns the principal InProcess put in ctx.
func InProcessPrincipal(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(inProcessKey{}).(Principal)
	return p, ok
}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// FromContext returns the Principal stored by Authenticate.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// BearerToken extracts the token of an "Authorization: Bearer" header.
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// Authenticate verifies the request's bearer token with v and stores the
// Principal in the request context; a missing or bad token is a 401.
func Authenticate(v Verifier, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := InProcessPrincipal(r.Context()); ok {
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
			return
		}
		tok, ok := BearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="otphub"`)
			httpx.Error(w, http.StatusUnauthorized, "unauthorized", "missing bearer token")
			return
		}
		p, err := v.Verify(r.Context(), tok)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="otphub", error="invalid_token"`)
			httpx.Error(w, http.StatusUnauthorized, "invalid_token", "the access token is invalid or expired")
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

// Require answers 403 unless the request's Principal (set by Authenticate)
// may use scope on the org named by the {org} path value.
func Require(scope string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := FromContext(r.Context())
		if !ok {
			httpx.Error(w, http.StatusUnauthorized, "unauthorized", "missing bearer token")
			return
		}
		if !p.Can(r.PathValue("org"), scope) {
			httpx.Error(w, http.StatusForbidden, "forbidden", "the token does not grant the "+scope+" scope on this organization")
			return
		}
		next.ServeHTTP(w, r)
	})
}
