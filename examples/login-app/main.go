// Command login-app is an example relying party of otphub's hosted login
// step: a small web app with a demo username/password first factor that
// then sends the user to otphub's SMS OTP prompt with OpenID Connect, and
// shows the verified ID token's claims.
//
// It uses golang.org/x/oauth2 (authorization code flow with PKCE) and
// github.com/coreos/go-oidc/v3 (discovery, JWKS, ID token verification)
// only: it writes no token check of its own. The one otphub-specific step
// is the signed request object (RFC 9101) that tells otphub who the user is
// and which first factor the app checked. See README.md and docs/login.md.
//
// Every flag has an environment twin (LOGIN_APP_*).
package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/oauth2"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "login-app:", err)
		os.Exit(1)
	}
}

// options are the app's settings.
type options struct {
	addr, url              string // listen address; the app's own public URL
	issuer                 string // otphub's public URL
	clientID, clientSecret string
	users                  map[string]user
}

// user is a demo account: its password (the first factor) and the mobile
// registered for it (where otphub sends the SMS).
type user struct{ password, mobile string }

func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("login-app", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := getenv("LOGIN_APP_" + name); v != "" {
			return v
		}
		return def
	}
	o := &options{}
	var users string
	fs.StringVar(&o.addr, "addr", env("ADDR", "127.0.0.1:9000"), "listen address (LOGIN_APP_ADDR)")
	fs.StringVar(&o.url, "url", env("URL", "http://127.0.0.1:9000"), "the app's public URL; the redirect URI is <url>/callback (LOGIN_APP_URL)")
	fs.StringVar(&o.issuer, "issuer", env("ISSUER", "http://127.0.0.1:8080"), "otphub's public URL (LOGIN_APP_ISSUER)")
	fs.StringVar(&o.clientID, "client-id", env("CLIENT_ID", ""), "the application's client id (LOGIN_APP_CLIENT_ID)")
	fs.StringVar(&o.clientSecret, "client-secret", env("CLIENT_SECRET", ""), "the application's client secret (LOGIN_APP_CLIENT_SECRET)")
	fs.StringVar(&users, "users", env("USERS", "alice:wonderland:+94771234567"),
		"demo accounts, comma-separated user:password:mobile (LOGIN_APP_USERS)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.clientID == "" || o.clientSecret == "" {
		return nil, errors.New("--client-id and --client-secret are required (create the application in otphub first; see README.md)")
	}
	o.url = strings.TrimRight(o.url, "/")
	o.users = map[string]user{}
	for _, u := range strings.Split(users, ",") {
		parts := strings.SplitN(strings.TrimSpace(u), ":", 3)
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" || !strings.HasPrefix(parts[2], "+") {
			return nil, fmt.Errorf("--users: %q is not user:password:+mobile", u)
		}
		o.users[parts[0]] = user{password: parts[1], mobile: parts[2]}
	}
	return o, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	o, err := parseOptions(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	a, err := newApp(ctx, o, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	log.Info("login-app serving", "url", o.url, "issuer", o.issuer)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// app is the relying party.
type app struct {
	o        *options
	log      *slog.Logger
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
	mux      *http.ServeMux
	// issuerOrigin is otphub's scheme://host[:port].
	issuerOrigin string

	mu       sync.Mutex
	sessions map[string]*session
}

// session is one browser's state in this app (kept in memory: a demo).
type session struct {
	csrf    string
	pending *pending      // a sign-in sent to otphub, not back yet
	claims  *signedInUser // set once signed in
	expires time.Time
}

// pending is what the callback checks: the state and nonce sent, and the
// PKCE verifier.
type pending struct {
	user, state, nonce, verifier string
}

type signedInUser struct {
	Subject  string
	AMR      []string
	ACR      string
	AuthTime time.Time
	Issuer   string
}

func newApp(ctx context.Context, o *options, log *slog.Logger) (*app, error) {
	// Discovery: otphub's endpoints and keys, from
	// <issuer>/.well-known/openid-configuration.
	provider, err := oidc.NewProvider(ctx, o.issuer)
	if err != nil {
		return nil, fmt.Errorf("discover otphub at %s: %w", o.issuer, err)
	}
	a := &app{
		o: o, log: log, mux: http.NewServeMux(), sessions: map[string]*session{},
		oauth: oauth2.Config{
			ClientID: o.clientID, ClientSecret: o.clientSecret,
			Endpoint: provider.Endpoint(), RedirectURL: o.url + "/callback",
			Scopes: []string{oidc.ScopeOpenID},
		},
		verifier: provider.Verifier(&oidc.Config{ClientID: o.clientID}),
	}
	if u, err := url.Parse(o.issuer); err == nil {
		a.issuerOrigin = u.Scheme + "://" + u.Host
	}
	a.mux.HandleFunc("GET /{$}", a.home)
	a.mux.HandleFunc("POST /login", a.login)
	a.mux.HandleFunc("GET /callback", a.callback)
	a.mux.HandleFunc("POST /logout", a.logout)
	return a, nil
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The sign-in form's POST redirects to otphub: form-action allows it.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' "+a.issuerOrigin+"; frame-ancestors 'none'")
	w.Header().Set("Cache-Control", "no-store")
	a.mux.ServeHTTP(w, r)
}

func random() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

const cookieName = "login_app_session"

// session returns the browser's session, creating one.
func (a *app) session(w http.ResponseWriter, r *http.Request) *session {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	for id, s := range a.sessions {
		if now.After(s.expires) {
			delete(a.sessions, id)
		}
	}
	if c, err := r.Cookie(cookieName); err == nil {
		if s, ok := a.sessions[c.Value]; ok {
			return s
		}
	}
	id := random()
	s := &session{csrf: random(), expires: now.Add(time.Hour)}
	a.sessions[id] = s
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: strings.HasPrefix(a.o.url, "https://")})
	return s
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Example app</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}label,input,button{display:block;margin:.25rem 0}input{font:inherit;padding:.4rem}dt{font-weight:600}</style>
</head><body>
<h1>Example app</h1>
{{with .Error}}<p role="alert">{{.}}</p>{{end}}
{{with .User}}
<p id="signed-in">Signed in as <strong>{{.Subject}}</strong>.</p>
<dl>
<dt>amr (how you signed in)</dt><dd id="amr">{{range $i, $v := .AMR}}{{if $i}} {{end}}{{$v}}{{end}}</dd>
<dt>acr</dt><dd>{{.ACR}}</dd>
<dt>auth_time</dt><dd>{{.AuthTime.UTC.Format "2006-01-02 15:04:05 MST"}}</dd>
<dt>iss</dt><dd>{{.Issuer}}</dd>
</dl>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{{$.CSRF}}"><button>Sign out</button></form>
{{else}}
<form method="post" action="/login">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button>Sign in</button>
</form>
<p>Demo account: alice / wonderland. The second step is otphub's SMS OTP prompt.</p>
{{end}}
</body></html>`))

func (a *app) render(w http.ResponseWriter, status int, s *session, errMsg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = page.Execute(w, map[string]any{"User": s.claims, "CSRF": s.csrf, "Error": errMsg})
}

func (a *app) home(w http.ResponseWriter, r *http.Request) {
	s := a.session(w, r)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.render(w, http.StatusOK, s, "")
}

func (a *app) checkCSRF(r *http.Request, s *session) bool {
	return subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.csrf)) == 1
}

// login checks the first factor, then sends the browser to otphub.
func (a *app) login(w http.ResponseWriter, r *http.Request) {
	s := a.session(w, r)
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.checkCSRF(r, s) {
		a.render(w, http.StatusForbidden, s, "The form expired; try again.")
		return
	}
	name := r.PostFormValue("username")
	u, ok := a.o.users[name]
	if !ok || subtle.ConstantTimeCompare([]byte(r.PostFormValue("password")), []byte(u.password)) != 1 {
		a.render(w, http.StatusUnauthorized, s, "Wrong username or password.")
		return
	}
	p := &pending{user: name, state: random(), nonce: random(), verifier: oauth2.GenerateVerifier()}
	authURL, err := a.authURL(p, u.mobile, []string{"pwd"})
	if err != nil {
		a.log.Error("signing the request object failed", "err", err)
		a.render(w, http.StatusInternalServerError, s, "Something went wrong.")
		return
	}
	s.pending = p
	http.Redirect(w, r, authURL, http.StatusSeeOther)
}

// authURL is the authorization request for p: the oauth2 library's URL
// (state, nonce, PKCE S256) plus the request object that tells otphub the
// user, the mobile registered for them and the first factor checked.
func (a *app) authURL(p *pending, mobile string, amr []string) (string, error) {
	ro, err := a.requestObject(p, mobile, amr, time.Now())
	if err != nil {
		return "", err
	}
	return a.oauth.AuthCodeURL(p.state, oidc.Nonce(p.nonce), oauth2.S256ChallengeOption(p.verifier),
		oauth2.SetAuthURLParam("request", ro)), nil
}

// requestObject signs the request object (RFC 9101) with the client
// secret (HS256): iss is the client id, aud otphub, valid two minutes,
// used once (jti). The authorization parameters are in it too, so that
// nothing in the query can be changed on the way.
func (a *app) requestObject(p *pending, mobile string, amr []string, now time.Time) (string, error) {
	sum := oauth2.S256ChallengeFromVerifier(p.verifier)
	claims := jwt.MapClaims{
		"iss": a.o.clientID, "aud": a.o.issuer, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(), "jti": random(),
		"client_id": a.o.clientID, "response_type": "code", "redirect_uri": a.oauth.RedirectURL, "scope": oidc.ScopeOpenID,
		"state": p.state, "nonce": p.nonce, "code_challenge": sum, "code_challenge_method": "S256",
		"login_hint": p.user, "phone_number": mobile, "amr": amr,
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(a.o.clientSecret))
}

// callback finishes the sign-in: the code is exchanged (with the PKCE
// verifier) and the ID token verified by go-oidc (signature from the JWKS,
// issuer, audience, expiry); the nonce is the app's to compare.
func (a *app) callback(w http.ResponseWriter, r *http.Request) {
	s := a.session(w, r)
	a.mu.Lock()
	p := s.pending
	s.pending = nil
	a.mu.Unlock()
	fail := func(status int, msg string) {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.render(w, status, s, msg)
	}
	q := r.URL.Query()
	switch {
	case p == nil || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(p.state)) != 1:
		fail(http.StatusBadRequest, "This sign-in is not the one this browser started; sign in again.")
		return
	case q.Get("error") != "":
		fail(http.StatusUnauthorized, "otphub: "+q.Get("error")+": "+q.Get("error_description"))
		return
	}
	tok, err := a.oauth.Exchange(r.Context(), q.Get("code"), oauth2.VerifierOption(p.verifier))
	if err != nil {
		fail(http.StatusBadGateway, "The code exchange failed: "+err.Error())
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := a.verifier.Verify(r.Context(), raw)
	if err != nil {
		fail(http.StatusBadGateway, "The ID token is not valid: "+err.Error())
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(p.nonce)) != 1 || idt.Subject != p.user {
		fail(http.StatusBadGateway, "The ID token is not for this sign-in.")
		return
	}
	var claims struct {
		AMR      []string `json:"amr"`
		ACR      string   `json:"acr"`
		AuthTime int64    `json:"auth_time"`
	}
	if err := idt.Claims(&claims); err != nil {
		fail(http.StatusBadGateway, "The ID token's claims are unreadable: "+err.Error())
		return
	}
	a.mu.Lock()
	s.claims = &signedInUser{Subject: idt.Subject, AMR: claims.AMR, ACR: claims.ACR, AuthTime: time.Unix(claims.AuthTime, 0), Issuer: idt.Issuer}
	a.mu.Unlock()
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (a *app) logout(w http.ResponseWriter, r *http.Request) {
	s := a.session(w, r)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.checkCSRF(r, s) {
		s.claims = nil
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
