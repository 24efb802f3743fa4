// Package console is the web console served at /console/ by the otphub
// binary: server-rendered pages (html/template, assets embedded in the
// binary, one small script for progressive enhancement, no CDN) for org
// admins and the platform admin.
//
// Every page reads and changes state through the API's own handlers,
// called in process with the signed-in user's principal
// (access.InProcess): the same role checks, validation and audit records
// as a curl request, and no second path to the store. The console itself
// owns only its users, invitations and sessions. docs/console.md
// describes what is built.
package console

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/audit"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config configures the console.
type Config struct {
	// PublicURL is where otphub is reached; an https one makes the session
	// cookie Secure (and __Host- prefixed).
	PublicURL string
	// IdleTimeout ends a session unused this long (default 30 min);
	// AbsoluteTimeout ends any session this long after sign-in (default 12 h).
	IdleTimeout, AbsoluteTimeout time.Duration
	// InvitationTTL is how long an invitation link works (default 72 h).
	InvitationTTL time.Duration
	// SignInLimit caps sign-in attempts per account and per address in
	// SignInWindow (defaults 10 and 15 min; per address, three times as many).
	SignInLimit  int
	SignInWindow time.Duration
	// SecondFactor, when set, runs after the password (see SecondFactor).
	SecondFactor SecondFactor
	Now          func() time.Time
}

// SecondFactor is the step a sign-in takes after the password is right:
// otphub's hosted SMS OTP step (issue 14), with the console as an
// application of otphub. Begin sends the browser there (a redirect) for
// user u, carrying state; the step comes back to
// /console/sign-in/callback, where Finish returns that state and the user
// ID the step verified. Without a SecondFactor sign-in is password only.
//
// Ready is asked before Begin. An error wrapping ErrNotSetUp means nothing
// is there yet to run the step with (the sign-in org has no SMS provider,
// as on a first start): sign-in is then password only, recorded in the
// audit log and said on every platform admin's page, so that the first
// admin can set the provider up. Any other error refuses the sign-in.
type SecondFactor interface {
	Ready(ctx context.Context) error
	Begin(w http.ResponseWriter, r *http.Request, u store.ConsoleUser, state string) error
	Finish(r *http.Request) (state, userID string, err error)
}

// ErrNotSetUp is what a SecondFactor's Ready wraps while it cannot run
// for want of set-up (see SecondFactor).
var ErrNotSetUp = errors.New("the second factor is not set up")

// Console serves the console's pages.
type Console struct {
	cfg    Config
	st     store.Store
	api    http.Handler
	audit  *audit.Log
	log    *slog.Logger
	pages  map[string]*template.Template
	key    []byte // CSRF and pending sign-in MACs
	secure bool
	static http.Handler
}

// New returns the console. api is the handler serving the API routes (the
// app's mux, behind the audit middleware); the console calls it in process.
func New(ctx context.Context, cfg Config, st store.Store, api http.Handler, auditLog *audit.Log, logger *slog.Logger) (*Console, error) {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Minute
	}
	if cfg.AbsoluteTimeout <= 0 {
		cfg.AbsoluteTimeout = 12 * time.Hour
	}
	if cfg.InvitationTTL <= 0 {
		cfg.InvitationTTL = 72 * time.Hour
	}
	if cfg.SignInLimit <= 0 {
		cfg.SignInLimit = 10
	}
	if cfg.SignInWindow <= 0 {
		cfg.SignInWindow = 15 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	key, err := st.DataKey(ctx, "console-csrf", func() ([]byte, error) {
		k := make([]byte, 32)
		_, err := rand.Read(k)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("console key: %w", err)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	sub, _ := fs.Sub(staticFS, "static")
	u, _ := url.Parse(cfg.PublicURL)
	return &Console{
		cfg: cfg, st: st, api: api, audit: auditLog, log: logger.With("component", "console"),
		pages: pages, key: key, secure: u != nil && u.Scheme == "https",
		static: http.StripPrefix("/console/static/", http.FileServerFS(sub)),
	}, nil
}

var funcs = template.FuncMap{
	"fmtTime": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"fmtTimePtr": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"join":        strings.Join,
	"has":         func(list []string, v string) bool { return slices.Contains(list, v) },
	"factorLabel": factorLabel,
	"plural": func(n int, one, many string) string {
		if n == 1 {
			return one
		}
		return many
	},
	// args bundles a form field for the "numfield" template.
	"args": func(id, label, value, hint string, errs map[string]string) map[string]string {
		return map[string]string{"ID": id, "Label": label, "Value": value, "Hint": hint, "Err": errs[id]}
	},
	// chartArgs bundles a chart with the id of the heading that names it,
	// for the "hourchart" template.
	"chartArgs": func(label string, ch *hourChart) map[string]any {
		return map[string]any{"Label": label, "Chart": ch}
	},
	// secretArgs bundles a secret field for the "secret" template.
	"secretArgs": func(id, label, example string, saved bool, errs map[string]string) map[string]any {
		return map[string]any{"ID": id, "Label": label, "Example": example, "Saved": saved, "Err": errs[id]}
	},
}

func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	entries, _ := fs.ReadDir(templateFS, "templates")
	pages := map[string]*template.Template{}
	for _, e := range entries {
		name := e.Name()
		if name == "layout.html" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		pages[strings.TrimSuffix(name, ".html")] = t
	}
	return pages, nil
}

// securityHeaders are on every console answer. The CSP allows no inline
// script or style and nothing from another origin.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: with no-referrer a browser sends
	// "Origin: null" on form posts, which checkOrigin must refuse.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
}

// page is what every template gets.
type page struct {
	Title   string
	Section string // the nav entry to mark current
	User    *store.ConsoleUser
	Org     string // the org the page is about; "" on platform pages
	Base    string // the path the org's pages are under: /console/orgs/{org}, or a portal session's
	orgID   int64  // the org's ID on an org page
	Portal  *portalView
	// FrameAncestors are the origins a portal page may be framed by.
	FrameAncestors []string
	Orgs           []string
	CSRF           string
	Notice         string // a warning about the whole console (second factor not set up)
	Flash          string // a success message
	Error          string // a page-level error
	Data           any
}

func (c *Console) render(w http.ResponseWriter, status int, name string, p page) {
	t, ok := c.pages[name]
	if !ok {
		panic("console: no template " + name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", p); err != nil {
		c.log.Error("render", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	securityHeaders(w.Header())
	if p.Portal != nil {
		// A portal page may be framed by the origins its link names.
		fa := "'none'"
		if len(p.FrameAncestors) > 0 {
			fa = strings.Join(p.FrameAncestors, " ")
			w.Header().Del("X-Frame-Options")
		}
		w.Header().Set("Content-Security-Policy", strings.Replace(w.Header().Get("Content-Security-Policy"), "frame-ancestors 'none'", "frame-ancestors "+fa, 1))
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (p *page) path(rest string) string { return p.Base + rest }

// UseSecondFactor makes sign-in ask sf after the password (see
// SecondFactor); call it before serving.
func (c *Console) UseSecondFactor(sf SecondFactor) { c.cfg.SecondFactor = sf }

// Register adds the console routes to mux.
func (c *Console) Register(mux httpx.Mux) {
	mux.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusSeeOther)
	})
	mux.Handle("GET /console/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w.Header())
		w.Header().Set("Cache-Control", "public, max-age=3600")
		c.static.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /console/{$}", c.authed(c.home))
	mux.HandleFunc("GET /console/sign-in", c.signInForm)
	mux.HandleFunc("POST /console/sign-in", c.signIn)
	mux.HandleFunc("GET /console/sign-in/callback", c.signInCallback)
	mux.HandleFunc("POST /console/sign-out", c.authed(c.signOut))
	mux.HandleFunc("POST /console/sign-out-everywhere", c.authed(c.signOutEverywhere))
	mux.HandleFunc("GET /console/account", c.authed(c.accountPage))
	mux.HandleFunc("POST /console/account", c.authed(c.changePassword))
	mux.HandleFunc("GET /console/invitations/{token}", c.invitationForm)
	mux.HandleFunc("POST /console/invitations/{token}", c.acceptInvitation)
	c.registerPages(mux)
	c.registerPortal(mux)
}

// call runs an API request in process as the session's user and returns
// the status and body. in is JSON-encoded, or form-encoded if url.Values.
func (c *Console) call(r *http.Request, s *session, method, path string, in any) (int, []byte) {
	var body io.Reader
	ct := ""
	switch v := in.(type) {
	case nil:
	case url.Values:
		body, ct = strings.NewReader(v.Encode()), "application/x-www-form-urlencoded"
	default:
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		body, ct = bytes.NewReader(b), "application/json"
	}
	req, err := http.NewRequestWithContext(access.InProcess(r.Context(), s.principal), method, path, body)
	if err != nil {
		return http.StatusInternalServerError, nil
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.RemoteAddr = r.RemoteAddr
	req.Host = r.Host
	if v := r.Header.Values("X-Forwarded-For"); len(v) > 0 {
		req.Header["X-Forwarded-For"] = v
	}
	rec := newRecorder()
	if id := r.Header.Get("X-Request-Id"); id != "" {
		rec.h.Set("X-Request-Id", id)
	}
	c.api.ServeHTTP(rec, req)
	return rec.status, rec.body.Bytes()
}

// apiError is an API error body.
type apiError struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Field   string `json:"field"`
}

// fieldErrors maps an API error onto the form field it names: the
// "field" member, or a "field: message" message; ok false when it names
// no field (then it is a page-level error).
func fieldErrors(body []byte) (apiError, map[string]string) {
	var e apiError
	_ = json.Unmarshal(body, &e)
	if e.Message == "" {
		e.Message = "the request failed"
	}
	if e.Field != "" {
		return e, map[string]string{e.Field: e.Message}
	}
	if f, msg, ok := strings.Cut(e.Message, ": "); ok && !strings.ContainsAny(f, " .") {
		return e, map[string]string{f: msg}
	}
	return e, nil
}

type recorder struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{h: http.Header{}} }

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}

// mac is the console's keyed hash of parts (CSRF tokens, pending sign-ins).
func (c *Console) mac(parts ...string) string {
	m := hmac.New(sha256.New, c.key)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

var errSameOrigin = errors.New("cross-origin request")

// checkOrigin refuses a state change another site started: a browser's
// Sec-Fetch-Site or Origin must say same origin when present.
func checkOrigin(r *http.Request) error {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" {
		return errSameOrigin
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			return errSameOrigin
		}
	}
	return nil
}
