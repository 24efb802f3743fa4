// Package login owns otphub's hosted login step: the OpenID Connect
// discovery document, the authorization endpoint (authorization code flow,
// PKCE S256, signed request objects), the server-rendered SMS OTP prompt
// and the authorization_code grant of the token endpoint, which returns an
// ES256 ID token any OIDC library verifies against the JWKS. SMS are sent
// and codes verified by authcore, through the same settings, budgets,
// lockouts, templates and delivery pipeline as the API. docs/login.md
// describes the protocol, the decisions and the threat model.
package login

import (
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/authcore"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/oauth"
	"github.com/otphub/otphub/store"
)

//go:embed web
var webFS embed.FS

var pages = template.Must(template.New("").ParseFS(webFS, "web/*.html"))

// Config configures the Service.
type Config struct {
	// PublicURL is otphub's public base URL: the issuer, and the base of
	// every endpoint in the discovery document. Required.
	PublicURL string
	// TrustProxyHeaders: the per-IP send budget counts the right-most
	// X-Forwarded-For address instead of the TCP peer. Default false.
	TrustProxyHeaders bool
	// FlowTTL is how long a user has to finish the step. Default 15 min.
	FlowTTL time.Duration
	// CodeTTL is how long an authorization code can be redeemed. Default 60 s.
	CodeTTL time.Duration
	// IDTokenTTL is the ID token's (and access token's) lifetime. Default 5 min.
	IDTokenTTL time.Duration
	// MaxRequestObjectAge bounds a request object's lifetime (exp - iat,
	// and exp from now). Default 10 min.
	MaxRequestObjectAge time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) defaults() error {
	u, err := url.Parse(c.PublicURL)
	if c.PublicURL == "" || err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("login: Config.PublicURL %q is not an absolute URL", c.PublicURL)
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.FlowTTL <= 0 {
		c.FlowTTL = 15 * time.Minute
	}
	if c.CodeTTL <= 0 {
		c.CodeTTL = time.Minute
	}
	if c.IDTokenTTL <= 0 {
		c.IDTokenTTL = 5 * time.Minute
	}
	if c.MaxRequestObjectAge <= 0 {
		c.MaxRequestObjectAge = 10 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Service is the hosted login step.
type Service struct {
	cfg     Config
	st      store.Store
	core    *authcore.Service
	issuer  *oauth.Issuer
	log     *slog.Logger
	metrics *metrics
	secure  bool // cookies are Secure (PublicURL is https)
}

// New returns the Service and makes the issuer's token endpoint accept
// grant_type=authorization_code through it.
func New(cfg Config, st store.Store, core *authcore.Service, issuer *oauth.Issuer, logger *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if st == nil || core == nil || issuer == nil {
		return nil, errors.New("login: nil store, auth core or issuer")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, st: st, core: core, issuer: issuer, log: logger.With("component", "login"), metrics: m,
		secure: strings.HasPrefix(cfg.PublicURL, "https://")}
	issuer.UseCodeGrant(s)
	return s, nil
}

// Register adds the discovery document, the authorization endpoint and
// the prompt's pages to mux. None takes a bearer token: the prompt is
// bound to the browser by its flow cookie.
func (s *Service) Register(mux httpx.Mux, _ access.Verifier) {
	mux.HandleFunc("GET /.well-known/openid-configuration", s.discovery)
	mux.HandleFunc("GET /oauth2/authorize", s.authorize)
	mux.HandleFunc("GET /login/assets/{file}", s.asset)
	mux.HandleFunc("GET /login/{flow}", s.prompt)
	mux.HandleFunc("POST /login/{flow}/verify", s.verify)
	mux.HandleFunc("POST /login/{flow}/resend", s.resend)
	mux.HandleFunc("POST /login/{flow}/backup", s.backup)
	mux.HandleFunc("POST /login/{flow}/cancel", s.cancel)
}

// ACR is the acr of every ID token the step issues: the OpenID PAPE
// multi-factor policy (a first factor the relying party checked, then a
// second one otphub checked).
const ACR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"

func (s *Service) discovery(w http.ResponseWriter, r *http.Request) {
	base := s.cfg.PublicURL
	httpx.JSON(w, http.StatusOK, map[string]any{
		"issuer":                                      base,
		"authorization_endpoint":                      base + "/oauth2/authorize",
		"token_endpoint":                              base + "/oauth2/token",
		"jwks_uri":                                    base + "/.well-known/jwks.json",
		"response_types_supported":                    []string{"code"},
		"response_modes_supported":                    []string{"query"},
		"grant_types_supported":                       []string{"authorization_code", "client_credentials"},
		"subject_types_supported":                     []string{"public"},
		"scopes_supported":                            []string{"openid"},
		"claims_supported":                            []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp"},
		"id_token_signing_alg_values_supported":       []string{"ES256"},
		"token_endpoint_auth_methods_supported":       []string{"client_secret_basic", "client_secret_post"},
		"code_challenge_methods_supported":            []string{"S256"},
		"request_parameter_supported":                 true,
		"request_uri_parameter_supported":             false,
		"require_request_uri_registration":            false,
		"request_object_signing_alg_values_supported": []string{"HS256"},
		"amr_values_supported":                        []string{"pwd", "magic_link", "fed", "sms", "otp", "mfa"},
		"acr_values_supported":                        []string{ACR},
		"ui_locales_supported":                        Locales,
		"claims_parameter_supported":                  false,
	})
}

// asset serves the prompt's stylesheet and script (embedded).
func (s *Service) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	var ctype string
	switch name {
	case "login.css":
		ctype = "text/css; charset=utf-8"
	case "login.js":
		ctype = "text/javascript; charset=utf-8"
	default:
		http.NotFound(w, r)
		return
	}
	b, err := webFS.ReadFile("web/" + name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b)
}

// pageHeaders are the headers of every prompt page: never cached, never
// framed, no inline script, forms posting only to otphub (and, for the
// redirect after the last form, to the relying party's origin).
func pageHeaders(w http.ResponseWriter, formTarget string) {
	h := w.Header()
	formAction := "'self'"
	if formTarget != "" {
		formAction += " " + formTarget
	}
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "+
		"connect-src 'self'; form-action "+formAction+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Type", "text/html; charset=utf-8")
}

// errorPage renders an error that must not redirect (an unknown client or
// redirect URI: redirecting would make otphub an open redirector).
func (s *Service) errorPage(w http.ResponseWriter, r *http.Request, status int, locale, key, detail string) {
	if locale == "" {
		locale = pickLocale(r.URL.Query().Get("ui_locales"), r.Header.Get("Accept-Language"))
	}
	pageHeaders(w, "")
	w.WriteHeader(status)
	tr := translator{locale}
	if err := pages.ExecuteTemplate(w, "error", map[string]any{
		"Lang": locale, "T": tr, "Message": tr.T(key), "Detail": detail,
	}); err != nil {
		s.log.Error("rendering the error page failed", "err", err)
	}
}

func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func sha(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// redirect sends the user back to the relying party's registered
// redirectURI with params, state and iss (RFC 9207, against mix-up).
func (s *Service) redirect(w http.ResponseWriter, r *http.Request, redirectURI, state string, params url.Values) {
	u, _ := url.Parse(redirectURI)
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if state != "" {
		q.Set("state", state)
	}
	q.Set("iss", s.cfg.PublicURL)
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

// redirectError sends the user back with an OAuth error (RFC 6749
// §4.1.2.1).
func (s *Service) redirectError(w http.ResponseWriter, r *http.Request, redirectURI, state, code, desc string) {
	s.metrics.outcome("refused")
	s.log.Info("login step refused", "error", code, "error_description", desc)
	s.redirect(w, r, redirectURI, state, url.Values{"error": {code}, "error_description": {desc}})
}
