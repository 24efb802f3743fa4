package oauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/store"
)

const (
	maxTokenBody     = 8 << 10
	maxCredentialLen = 256
	maxScopeLen      = 1024
	maxTokenLen      = 8 << 10
)

// Claims are the claims of an otphub access token.
type Claims struct {
	jwt.RegisteredClaims
	Scope         string `json:"scope"`
	Org           string `json:"org,omitempty"`
	OrgID         int64  `json:"org_id,omitempty"`
	PlatformAdmin bool   `json:"platform_admin,omitempty"`
}

// Register adds POST /oauth2/token and GET /.well-known/jwks.json to mux.
// Neither takes a bearer token, so v is unused; the parameter keeps the
// shape every component shares.
func (i *Issuer) Register(mux httpx.Mux, _ access.Verifier) {
	mux.HandleFunc("POST /oauth2/token", i.handleToken)
	mux.HandleFunc("GET /.well-known/jwks.json", i.handleJWKS)
}

func (i *Issuer) handleJWKS(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(marshalJWKS(i.JWKS()))
}

// tokenRequest is a token request, from a form or JSON body.
type tokenRequest struct {
	GrantType    string `json:"grant_type"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Scope        string `json:"scope"`
	// authorization_code
	Code         string `json:"code"`
	RedirectURI  string `json:"redirect_uri"`
	CodeVerifier string `json:"code_verifier"`
}

// CodeRequest is an authorization_code grant request (RFC 6749 §4.1.3,
// RFC 7636 §4.5), its client authentication already read from HTTP Basic
// or the body (not checked yet).
type CodeRequest struct {
	ClientID, ClientSecret          string
	Code, RedirectURI, CodeVerifier string
}

// TokenError is a refusal of a token request (RFC 6749 §5.2).
type TokenError struct {
	Status      int
	Code        string // invalid_client, invalid_grant, invalid_request…
	Description string
}

func (e *TokenError) Error() string { return "oauth: " + e.Code + ": " + e.Description }

// ErrInvalidClient is the refusal of a client whose authentication failed;
// the token endpoint counts it in its brute-force guard.
var ErrInvalidClient = &TokenError{Status: http.StatusUnauthorized, Code: "invalid_client", Description: "client authentication failed"}

// CodeGrant serves grant_type=authorization_code (package login): it
// authenticates the client, redeems the code and returns the token
// response's fields, or a *TokenError.
type CodeGrant interface {
	Redeem(ctx context.Context, req CodeRequest) (map[string]any, error)
}

// UseCodeGrant makes the token endpoint accept grant_type=authorization_code,
// served by g. Call it before serving.
func (i *Issuer) UseCodeGrant(g CodeGrant) { i.codeGrant = g }

// oauthError writes an RFC 6749 §5.2 error (with "message" too, the shape
// every other otphub error has).
func (i *Issuer) oauthError(w http.ResponseWriter, status int, code, desc string) {
	i.metrics.tokenRequests.WithLabelValues(code).Inc()
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="otphub", charset="UTF-8"`)
	}
	w.Header().Set("Pragma", "no-cache")
	httpx.ErrorWith(w, status, code, desc, map[string]any{"error_description": desc})
}

func (i *Issuer) handleToken(w http.ResponseWriter, r *http.Request) {
	req, status, desc := readTokenRequest(w, r)
	if status != 0 {
		i.oauthError(w, status, "invalid_request", desc)
		return
	}
	basicID, basicSecret, hasBasic := r.BasicAuth()
	if hasBasic {
		if req.ClientID != "" || req.ClientSecret != "" {
			i.oauthError(w, http.StatusBadRequest, "invalid_request", "use one client authentication method: HTTP Basic or client_id/client_secret in the body, not both")
			return
		}
		// RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
		req.ClientID, req.ClientSecret = formUnescape(basicID), formUnescape(basicSecret)
	}
	switch {
	case req.GrantType == "":
		i.oauthError(w, http.StatusBadRequest, "invalid_request", "grant_type is required")
		return
	case req.GrantType != "client_credentials" && (req.GrantType != "authorization_code" || i.codeGrant == nil):
		msg := "only grant_type=client_credentials is supported"
		if i.codeGrant != nil {
			msg = "grant_type must be client_credentials or authorization_code"
		}
		i.oauthError(w, http.StatusBadRequest, "unsupported_grant_type", msg)
		return
	case len(req.Scope) > maxScopeLen:
		i.oauthError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("scope is longer than %d bytes", maxScopeLen))
		return
	}
	if req.ClientID == "" || req.ClientSecret == "" || len(req.ClientID) > maxCredentialLen || len(req.ClientSecret) > maxCredentialLen {
		i.oauthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	now := i.cfg.Now()
	// The guard counts per (client id, source): checked before the secret,
	// a per-id count would let anyone lock the real client out.
	guardKey := failureKey(req.ClientID, httpx.ClientIP(r, i.cfg.TrustProxyHeaders))
	if until, ok := i.lockedUntil(guardKey, now); ok {
		httpx.RetryAfter(w, until.Sub(now))
		i.oauthError(w, http.StatusTooManyRequests, "rate_limited", "too many failed authentications for this client from this address; retry later")
		return
	}
	if req.GrantType == "authorization_code" {
		i.redeemCode(w, r, req, guardKey, now)
		return
	}
	client, err := i.st.GetClient(r.Context(), req.ClientID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		i.log.Error("token: get client failed", "err", err)
		i.oauthError(w, http.StatusInternalServerError, "server_error", "internal error")
		return
	}
	if err != nil || !CheckSecret(client.SecretHash, req.ClientSecret) {
		if err != nil {
			CheckSecret(nil, req.ClientSecret) // same work for unknown ids
		}
		i.recordFailure(r.Context(), guardKey, now)
		i.oauthError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	scopes := client.Scopes
	if req.Scope != "" {
		asked := strings.Fields(req.Scope)
		for _, s := range asked {
			if !slices.Contains(client.Scopes, s) {
				i.oauthError(w, http.StatusBadRequest, "invalid_scope", fmt.Sprintf("scope %q is not granted to this client", s))
				return
			}
		}
		slices.Sort(asked)
		scopes = slices.Compact(asked)
	}
	var org store.Org
	if !client.PlatformAdmin {
		if org, err = i.st.GetOrgByID(r.Context(), client.OrgID); err != nil {
			i.log.Error("token: get org of client failed", "err", err)
			i.oauthError(w, http.StatusInternalServerError, "server_error", "internal error")
			return
		}
	}
	tok, err := i.Issue(client, org, scopes)
	if err != nil {
		i.log.Error("token: signing failed", "err", err)
		i.oauthError(w, http.StatusInternalServerError, "server_error", "internal error")
		return
	}
	i.metrics.tokenRequests.WithLabelValues("issued").Inc()
	w.Header().Set("Pragma", "no-cache")
	httpx.JSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int(i.cfg.TokenTTL / time.Second),
		"scope":        strings.Join(scopes, " "),
	})
}

// redeemCode serves grant_type=authorization_code through the CodeGrant,
// behind the same brute-force guard as client credentials (checked by the
// caller; a failed client authentication counts in it here).
func (i *Issuer) redeemCode(w http.ResponseWriter, r *http.Request, req tokenRequest, guardKey string, now time.Time) {
	out, err := i.codeGrant.Redeem(r.Context(), CodeRequest{
		ClientID: req.ClientID, ClientSecret: req.ClientSecret,
		Code: req.Code, RedirectURI: req.RedirectURI, CodeVerifier: req.CodeVerifier,
	})
	var te *TokenError
	switch {
	case errors.As(err, &te):
		if te.Code == ErrInvalidClient.Code {
			i.recordFailure(r.Context(), guardKey, now)
		}
		i.oauthError(w, te.Status, te.Code, te.Description)
		return
	case err != nil:
		i.log.Error("token: authorization code grant failed", "err", err)
		i.oauthError(w, http.StatusInternalServerError, "server_error", "internal error")
		return
	}
	i.metrics.tokenRequests.WithLabelValues("issued").Inc()
	w.Header().Set("Pragma", "no-cache")
	httpx.JSON(w, http.StatusOK, out)
}

// readTokenRequest parses a form or JSON body; a non-zero status is an
// invalid_request with desc.
func readTokenRequest(w http.ResponseWriter, r *http.Request) (tokenRequest, int, string) {
	var req tokenRequest
	ct := strings.ToLower(strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0]))
	switch ct {
	case "application/x-www-form-urlencoded":
		r.Body = http.MaxBytesReader(w, r.Body, maxTokenBody)
		if err := r.ParseForm(); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return req, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body exceeds %d bytes", maxTokenBody)
			}
			return req, http.StatusBadRequest, "malformed form body"
		}
		for k, v := range r.PostForm {
			if len(v) > 1 {
				return req, http.StatusBadRequest, fmt.Sprintf("parameter %q is repeated", k)
			}
		}
		req.GrantType = r.PostForm.Get("grant_type")
		req.ClientID = r.PostForm.Get("client_id")
		req.ClientSecret = r.PostForm.Get("client_secret")
		req.Scope = r.PostForm.Get("scope")
		req.Code = r.PostForm.Get("code")
		req.RedirectURI = r.PostForm.Get("redirect_uri")
		req.CodeVerifier = r.PostForm.Get("code_verifier")
	case "application/json":
		if err := httpx.DecodeJSON(w, r, &req, maxTokenBody); err != nil {
			var re *httpx.RequestError
			if errors.As(err, &re) {
				return req, re.Status, re.Msg
			}
			return req, http.StatusBadRequest, err.Error()
		}
	default:
		return req, http.StatusUnsupportedMediaType, "the body must be application/x-www-form-urlencoded or application/json"
	}
	return req, 0, ""
}

func formUnescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// Issue signs an access token for client (of org; zero for a platform
// admin) with scopes.
func (i *Issuer) Issue(client store.Client, org store.Org, scopes []string) (string, error) {
	now := i.cfg.Now()
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.cfg.Issuer,
			Subject:   client.ClientID,
			Audience:  jwt.ClaimStrings{i.cfg.Audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(i.cfg.TokenTTL)),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        uuid.NewString(),
		},
		Scope:         strings.Join(scopes, " "),
		Org:           org.Name,
		OrgID:         org.ID,
		PlatformAdmin: client.PlatformAdmin,
	}
	return i.Sign(claims)
}

// Sign signs claims as an ES256 JWT with the current key (its kid in the
// header, its public half in the JWKS): access tokens and the login step's
// ID tokens.
func (i *Issuer) Sign(claims jwt.Claims) (string, error) {
	kid, key := i.tokenKey()
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["kid"] = kid
	return t.SignedString(key)
}

var errInvalidToken = errors.New("oauth: invalid token")

// Verify checks token (ES256 only, a known kid, iss, aud, exp required)
// and that its client still exists (cached for ClientCacheTTL), and returns
// its Principal.
func (i *Issuer) Verify(ctx context.Context, token string) (access.Principal, error) {
	if len(token) > maxTokenLen {
		return access.Principal{}, errInvalidToken
	}
	sum := sha256.Sum256([]byte(token))
	i.verifiedMu.Lock()
	claims, cached := i.verified[sum]
	i.verifiedMu.Unlock()
	if cached {
		// Signature, issuer and audience were checked when it was cached;
		// time moves on, so expiry is checked again with the same leeway.
		if exp := claims.ExpiresAt; exp == nil || !i.cfg.Now().Before(exp.Add(leeway)) {
			return access.Principal{}, fmt.Errorf("%w: token is expired", errInvalidToken)
		}
	} else if err := i.parse(ctx, token, &claims); err != nil {
		return access.Principal{}, err
	} else {
		i.verifiedMu.Lock()
		if i.verified == nil || len(i.verified) >= maxCacheEntries {
			i.verified = make(map[[32]byte]Claims)
		}
		i.verified[sum] = claims
		i.verifiedMu.Unlock()
	}
	c, err := i.clientOf(ctx, claims.Subject)
	if err != nil {
		return access.Principal{}, err
	}
	if c.PlatformAdmin != claims.PlatformAdmin || (!c.PlatformAdmin && c.OrgID != claims.OrgID) {
		return access.Principal{}, fmt.Errorf("%w: client does not match", errInvalidToken)
	}
	p := access.Principal{
		ClientID:      claims.Subject,
		Scopes:        strings.Fields(claims.Scope),
		PlatformAdmin: claims.PlatformAdmin,
	}
	if !p.PlatformAdmin {
		p.OrgID, p.OrgName = claims.OrgID, claims.Org
	}
	return p, nil
}

// leeway is the clock skew tolerated on exp, iat and nbf.
const leeway = 30 * time.Second

// parse verifies token's signature and claims into claims.
func (i *Issuer) parse(ctx context.Context, token string, claims *Claims) error {
	_, err := jwt.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("no kid")
		}
		k, ok := i.key(ctx, kid)
		if !ok {
			return nil, errors.New("unknown kid")
		}
		return &k.priv.PublicKey, nil
	},
		jwt.WithValidMethods([]string{"ES256"}),
		jwt.WithIssuer(i.cfg.Issuer),
		jwt.WithAudience(i.cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(i.cfg.Now),
	)
	if err != nil {
		return fmt.Errorf("%w: %v", errInvalidToken, err)
	}
	if claims.Subject == "" || (!claims.PlatformAdmin && (claims.Org == "" || claims.OrgID == 0)) {
		return fmt.Errorf("%w: incomplete claims", errInvalidToken)
	}
	return nil
}

// clientOf returns the client, from the cache when checked within
// ClientCacheTTL. A store error fails closed.
func (i *Issuer) clientOf(ctx context.Context, id string) (store.Client, error) {
	now := i.cfg.Now()
	i.clientsMu.Lock()
	e, ok := i.clients[id]
	i.clientsMu.Unlock()
	if !ok || now.Sub(e.checked) >= i.cfg.ClientCacheTTL || now.Before(e.checked) {
		c, err := i.st.GetClient(ctx, id)
		switch {
		case err == nil:
			e = clientEntry{client: c, found: true, checked: now}
		case errors.Is(err, store.ErrNotFound):
			e = clientEntry{checked: now}
		default:
			return store.Client{}, fmt.Errorf("oauth: check client: %w", err)
		}
		i.clientsMu.Lock()
		if len(i.clients) >= maxCacheEntries {
			clear(i.clients)
		}
		i.clients[id] = e
		i.clientsMu.Unlock()
	}
	if !e.found {
		return store.Client{}, fmt.Errorf("%w: client no longer exists", errInvalidToken)
	}
	return e.client, nil
}

// failureKey is the brute-force guard's key for clientID from the source
// address ip (httpx.ClientIP). An address never contains "|", so the key
// is unambiguous whatever the id holds.
func failureKey(clientID, ip string) string {
	return ip + "|" + clientID
}

// lockedUntil reports whether key (failureKey) is locked out of the token
// endpoint.
func (i *Issuer) lockedUntil(key string, now time.Time) (time.Time, bool) {
	if i.cfg.MaxClientFailures < 0 {
		return time.Time{}, false
	}
	i.failMu.Lock()
	defer i.failMu.Unlock()
	until, ok := i.locked[key]
	if ok && !now.Before(until) {
		delete(i.locked, key)
		return time.Time{}, false
	}
	return until, ok
}

// recordFailure counts a failed authentication of key (failureKey) in the
// store's fixed-window counter (shared by replicas) and locks the key out
// locally for the rest of the window once it reaches MaxClientFailures.
func (i *Issuer) recordFailure(ctx context.Context, key string, now time.Time) {
	if i.cfg.MaxClientFailures < 0 {
		return
	}
	start := now.Truncate(i.cfg.FailureWindow)
	end := start.Add(i.cfg.FailureWindow)
	n, err := i.st.HitCounter(ctx, "oauth-fail:"+key, start, end)
	if err != nil {
		i.log.Warn("token: counting a failed authentication failed", "err", err)
		return
	}
	if n < int64(i.cfg.MaxClientFailures) {
		return
	}
	i.failMu.Lock()
	defer i.failMu.Unlock()
	if len(i.locked) >= maxCacheEntries {
		for k, until := range i.locked {
			if !now.Before(until) {
				delete(i.locked, k)
			}
		}
	}
	if len(i.locked) < maxCacheEntries {
		i.locked[key] = end
	}
}
