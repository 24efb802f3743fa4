// Package applications owns the applications API
// (/api/v1/orgs/{org}/applications): the relying parties of the hosted
// login step, each an OAuth 2.0 client of the authorization code flow
// (package login) with its redirect URIs, its login flow (the first
// factors it accepts, SMS OTP as the second) and whether its users may
// finish with a backup code. docs/login.md describes the decisions.
package applications

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/internal/orgs"
	"github.com/otphub/otphub/oauth"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/tenants"
)

// FirstFactors are the first factors an application may accept, by the
// amr value (RFC 8176 where it has one) its request objects carry: pwd
// (password), magic_link (a link sent by email) and fed (a federated
// identity provider).
var FirstFactors = []string{"pwd", "magic_link", "fed"}

// SecondFactorSMSOTP is the only second factor: the hosted SMS OTP prompt.
const SecondFactorSMSOTP = "sms-otp"

const (
	maxRedirectURIs   = 10
	maxRedirectURILen = 2000
	maxBody           = 32 << 10
)

// API serves the applications endpoints.
type API struct {
	st  store.Store
	log *slog.Logger
	now func() time.Time
}

// New returns the API over st.
func New(st store.Store, logger *slog.Logger) (*API, error) {
	if st == nil {
		return nil, errors.New("applications: nil store")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &API{st: st, log: logger.With("component", "applications"), now: time.Now}, nil
}

// Register adds the applications routes to mux; every one needs the org's
// admin scope.
func (a *API) Register(mux httpx.Mux, v access.Verifier) {
	admin := orgs.Scoped(v, access.ScopeAdmin, a.st, a.log)
	const base = "/api/v1/orgs/{org}/applications"
	mux.Handle("POST "+base, admin(a.create))
	mux.Handle("GET "+base, admin(a.list))
	mux.Handle("GET "+base+"/{id}", admin(a.get))
	mux.Handle("PUT "+base+"/{id}", admin(a.put))
	mux.Handle("DELETE "+base+"/{id}", admin(a.delete))
	mux.Handle("POST "+base+"/{id}/secret", admin(a.rotateSecret))
}

type loginFlowJSON struct {
	FirstFactors []string `json:"firstFactors"`
	SecondFactor string   `json:"secondFactor"`
	BackupCodes  bool     `json:"backupCodes"`
}

type appJSON struct {
	ID           string        `json:"id"`
	Name         string        `json:"name"`
	ClientID     string        `json:"clientId"`
	ClientSecret string        `json:"clientSecret,omitempty"` // on creation only
	RedirectURIs []string      `json:"redirectUris"`
	LoginFlow    loginFlowJSON `json:"loginFlow"`
	CreatedAt    time.Time     `json:"createdAt"`
	UpdatedAt    time.Time     `json:"updatedAt"`
}

func out(app store.Application) appJSON {
	return appJSON{
		ID: app.ID, Name: app.Name, ClientID: app.ClientID,
		RedirectURIs: app.RedirectURIs,
		LoginFlow:    loginFlowJSON{FirstFactors: app.FirstFactors, SecondFactor: SecondFactorSMSOTP, BackupCodes: app.BackupCodes},
		CreatedAt:    app.CreatedAt.UTC(), UpdatedAt: app.UpdatedAt.UTC(),
	}
}

// appRequest is the body of a create or a replace.
type appRequest struct {
	Name         string   `json:"name"`
	RedirectURIs []string `json:"redirectUris"`
	LoginFlow    *struct {
		FirstFactors []string `json:"firstFactors"`
		SecondFactor string   `json:"secondFactor"`
		BackupCodes  bool     `json:"backupCodes"`
	} `json:"loginFlow"`
}

// read decodes and validates the body into app (name, redirect URIs,
// login flow); false when it answered.
func read(w http.ResponseWriter, r *http.Request, app *store.Application) bool {
	var req appRequest
	if err := httpx.DecodeJSON(w, r, &req, maxBody); err != nil {
		httpx.WriteDecodeError(w, err)
		return false
	}
	if msg := validate(&req); msg != "" {
		httpx.Error(w, http.StatusBadRequest, "invalid_field", msg)
		return false
	}
	app.Name = req.Name
	app.RedirectURIs = req.RedirectURIs
	app.FirstFactors = req.LoginFlow.FirstFactors
	app.BackupCodes = req.LoginFlow.BackupCodes
	return true
}

func validate(req *appRequest) string {
	if !tenants.ValidClientName(req.Name) {
		return "name: 1 to 100 characters, no control characters"
	}
	if len(req.RedirectURIs) == 0 || len(req.RedirectURIs) > maxRedirectURIs {
		return fmt.Sprintf("redirectUris: 1 to %d URIs", maxRedirectURIs)
	}
	for i, u := range req.RedirectURIs {
		if msg := CheckRedirectURI(u); msg != "" {
			return fmt.Sprintf("redirectUris[%d]: %s", i, msg)
		}
	}
	slices.Sort(req.RedirectURIs)
	req.RedirectURIs = slices.Compact(req.RedirectURIs)
	if req.LoginFlow == nil {
		return "loginFlow: required: {\"firstFactors\": [\"pwd\"], \"secondFactor\": \"sms-otp\", \"backupCodes\": false}"
	}
	f := req.LoginFlow
	if f.SecondFactor == "" {
		f.SecondFactor = SecondFactorSMSOTP
	}
	if f.SecondFactor != SecondFactorSMSOTP {
		return "loginFlow.secondFactor: must be \"sms-otp\""
	}
	if len(f.FirstFactors) == 0 {
		// SMS OTP is a second factor only (as in Asgardeo): it follows a
		// step that identified the user.
		return "loginFlow.firstFactors: at least one of pwd, magic_link, fed: SMS OTP is only a second factor"
	}
	for _, ff := range f.FirstFactors {
		if !slices.Contains(FirstFactors, ff) {
			return fmt.Sprintf("loginFlow.firstFactors: unknown first factor %q (pwd, magic_link, fed)", ff)
		}
	}
	slices.Sort(f.FirstFactors)
	f.FirstFactors = slices.Compact(f.FirstFactors)
	return ""
}

// CheckRedirectURI says what is wrong with a redirect URI ("" when it is
// acceptable): absolute, https (or http on a loopback host, for native
// and development apps, RFC 8252 §7.3), no user info, no fragment.
func CheckRedirectURI(s string) string {
	if len(s) > maxRedirectURILen {
		return fmt.Sprintf("at most %d characters", maxRedirectURILen)
	}
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return "must be an absolute URL"
	}
	if u.User != nil {
		return "must not contain user info"
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return "must not contain a fragment"
	}
	switch u.Scheme {
	case "https":
		return ""
	case "http":
		if isLoopback(u.Hostname()) {
			return ""
		}
		return "http is allowed only on a loopback host (127.0.0.1, [::1], localhost); use https"
	}
	return "scheme must be https (or http on a loopback host)"
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (a *API) create(w http.ResponseWriter, r *http.Request) {
	org, _ := orgs.From(r.Context())
	app := store.Application{ID: uuid.NewString(), OrgID: org.ID}
	if !read(w, r, &app) {
		return
	}
	secret, err := oauth.NewSecret()
	if err != nil {
		a.internal(w, "generate secret", err)
		return
	}
	app.ClientID = "app-" + strings.ReplaceAll(uuid.NewString(), "-", "")
	app.ClientSecret = []byte(secret)
	app.CreatedAt = a.now().UTC().Truncate(time.Microsecond)
	app.UpdatedAt = app.CreatedAt
	if err := a.st.CreateApplication(r.Context(), app); err != nil {
		a.internal(w, "create application", err)
		return
	}
	a.log.Info("application created", "org", org.Name, "application_id", app.ID, "client_id", app.ClientID)
	body := out(app)
	body.ClientSecret = secret
	httpx.JSON(w, http.StatusCreated, body)
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	org, _ := orgs.From(r.Context())
	apps, err := a.st.ListApplications(r.Context(), org.ID)
	if err != nil {
		a.internal(w, "list applications", err)
		return
	}
	list := make([]appJSON, 0, len(apps))
	for _, app := range apps {
		list = append(list, out(app))
	}
	httpx.JSON(w, http.StatusOK, map[string]any{"applications": list})
}

// load reads the {id} application of the org; false when it answered.
func (a *API) load(w http.ResponseWriter, r *http.Request) (store.Application, bool) {
	org, _ := orgs.From(r.Context())
	app, err := a.st.GetApplication(r.Context(), org.ID, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		httpx.Error(w, http.StatusNotFound, "application_not_found", "no such application in this organization")
		return app, false
	}
	if err != nil {
		a.internal(w, "get application", err)
		return app, false
	}
	return app, true
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	if app, ok := a.load(w, r); ok {
		httpx.JSON(w, http.StatusOK, out(app))
	}
}

// put replaces the name, redirect URIs and login flow; the client id and
// secret stay.
func (a *API) put(w http.ResponseWriter, r *http.Request) {
	app, ok := a.load(w, r)
	if !ok || !read(w, r, &app) {
		return
	}
	app.UpdatedAt = a.now().UTC().Truncate(time.Microsecond)
	err := a.st.UpdateApplication(r.Context(), app)
	if errors.Is(err, store.ErrNotFound) {
		httpx.Error(w, http.StatusNotFound, "application_not_found", "no such application in this organization")
		return
	}
	if err != nil {
		a.internal(w, "update application", err)
		return
	}
	httpx.JSON(w, http.StatusOK, out(app))
}

// rotateSecret replaces the client secret (shown once); the old one stops
// working at once, for the token endpoint and for request objects.
func (a *API) rotateSecret(w http.ResponseWriter, r *http.Request) {
	app, ok := a.load(w, r)
	if !ok {
		return
	}
	secret, err := oauth.NewSecret()
	if err != nil {
		a.internal(w, "generate secret", err)
		return
	}
	app.UpdatedAt = a.now().UTC().Truncate(time.Microsecond)
	err = a.st.SetApplicationSecret(r.Context(), app.OrgID, app.ID, []byte(secret), app.UpdatedAt)
	if errors.Is(err, store.ErrNotFound) {
		httpx.Error(w, http.StatusNotFound, "application_not_found", "no such application in this organization")
		return
	}
	if err != nil {
		a.internal(w, "rotate application secret", err)
		return
	}
	org, _ := orgs.From(r.Context())
	a.log.Info("application secret rotated", "org", org.Name, "application_id", app.ID)
	body := out(app)
	body.ClientSecret = secret
	httpx.JSON(w, http.StatusOK, body)
}

func (a *API) delete(w http.ResponseWriter, r *http.Request) {
	org, _ := orgs.From(r.Context())
	err := a.st.DeleteApplication(r.Context(), org.ID, r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		httpx.Error(w, http.StatusNotFound, "application_not_found", "no such application in this organization")
		return
	}
	if err != nil {
		a.internal(w, "delete application", err)
		return
	}
	a.log.Info("application deleted", "org", org.Name, "application_id", r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) internal(w http.ResponseWriter, what string, err error) {
	a.log.Error(what+" failed", "err", err)
	httpx.Error(w, http.StatusInternalServerError, "internal", "internal error")
}
