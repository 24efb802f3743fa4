package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/store"
)

// SMSStep is the console's SecondFactor: otphub's own hosted SMS OTP step
// (the login step), with the console as an application of the org Org, so
// that org's SMS OTP settings, provider, templates and budgets send the
// console's sign-in codes. The application ("otphub console") is created
// through the applications API at the first sign-in; its credentials are
// kept sealed in the store. The ID token is verified with go-oidc against
// otphub's own discovery document and keys, fetched in process.
type SMSStep struct {
	c   *Console
	org string

	mu           sync.Mutex
	clientID     string
	clientSecret string
	verifier     *oidc.IDTokenVerifier
}

// appName names the console's application in its org.
const appName = "otphub console"

// NewSMSStep returns the step for the console c, sending codes through org.
func NewSMSStep(c *Console, org string) *SMSStep { return &SMSStep{c: c, org: org} }

func (s *SMSStep) redirectURI() string {
	return strings.TrimSuffix(s.c.cfg.PublicURL, "/") + "/console/sign-in/callback"
}

// platform is the principal the step acts as towards the API.
var platform = access.Principal{ClientID: "console", PlatformAdmin: true}

// inProcess is an http.Client whose requests the API handler serves in
// process, whatever their host (otphub talking to itself).
func (s *SMSStep) inProcess() *http.Client {
	return &http.Client{Transport: roundTrip(func(req *http.Request) (*http.Response, error) {
		rec := newRecorder()
		s.c.api.ServeHTTP(rec, req.WithContext(access.InProcess(req.Context(), platform)))
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		return &http.Response{StatusCode: rec.status, Header: rec.h, Body: io.NopCloser(bytes.NewReader(rec.body.Bytes())), Request: req}, nil
	}), Timeout: 10 * time.Second}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// ensure makes sure the console's application exists with known
// credentials and the ID token verifier is ready.
func (s *SMSStep) ensure(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.verifier != nil {
		return nil
	}
	hc := s.inProcess()
	api := func(method, path string, in, out any) (int, error) {
		return s.call(ctx, method, "/orgs/"+url.PathEscape(s.org)+path, in, out)
	}
	type app struct {
		ID, ClientID, ClientSecret string
		RedirectURIs               []string
	}
	var list struct{ Applications []app }
	if code, err := api("GET", "/applications", nil, &list); err != nil || code != http.StatusOK {
		return fmt.Errorf("console sign-in org %s: list applications: %d %v", s.org, code, err)
	}
	var mine *app
	for i := range list.Applications {
		if a := &list.Applications[i]; slices.Contains(a.RedirectURIs, s.redirectURI()) {
			mine = a
		}
	}
	// The secret is shown once: it is kept sealed in the store, under the
	// client ID (DataKey stores the first value given for a name). An
	// application found without a kept secret gets a new one.
	var clientID string
	var initial func() ([]byte, error)
	if mine != nil {
		clientID = mine.ClientID
		initial = func() ([]byte, error) {
			var rotated app
			if code, err := api("POST", "/applications/"+url.PathEscape(mine.ID)+"/secret", nil, &rotated); err != nil || code >= 300 {
				return nil, fmt.Errorf("console sign-in application: rotate secret: %d %v", code, err)
			}
			return []byte(rotated.ClientSecret), nil
		}
	} else {
		var created app
		body := map[string]any{"name": appName, "redirectUris": []string{s.redirectURI()},
			"loginFlow": map[string]any{"firstFactors": []string{"pwd"}, "secondFactor": "sms-otp", "backupCodes": false}}
		if code, err := api("POST", "/applications", body, &created); err != nil || code != http.StatusCreated {
			return fmt.Errorf("console sign-in application: create: %d %v", code, err)
		}
		clientID = created.ClientID
		initial = func() ([]byte, error) { return []byte(created.ClientSecret), nil }
	}
	secret, err := s.c.st.DataKey(ctx, "console-sign-in-app:"+clientID, initial)
	if err != nil {
		return err
	}
	provider, err := oidc.NewProvider(oidc.ClientContext(ctx, hc), s.c.cfg.PublicURL)
	if err != nil {
		return fmt.Errorf("console sign-in: otphub's OIDC discovery: %w", err)
	}
	s.clientID, s.clientSecret = clientID, string(secret)
	s.verifier = provider.Verifier(&oidc.Config{ClientID: clientID})
	return nil
}

// call makes an API request in process as the platform: path is under
// /api/v1; out, when set, receives a 2xx answer's JSON.
func (s *SMSStep) call(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.c.cfg.PublicURL+"/api/v1"+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.inProcess().Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode < 300 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

// Provision creates the sign-in org when it does not exist, so a first
// start can sign in at all. With devProvider (a development server, which
// allows the console SMS provider) an org it creates gets that provider,
// so sign-in codes are printed on otphub's output. It reports whether it
// created the org.
func (s *SMSStep) Provision(ctx context.Context, devProvider bool) (bool, error) {
	code, err := s.call(ctx, "GET", "/orgs/"+url.PathEscape(s.org), nil, nil)
	switch {
	case err != nil:
		return false, err
	case code == http.StatusOK:
		return false, nil
	case code != http.StatusNotFound:
		return false, fmt.Errorf("console sign-in org %s: %d", s.org, code)
	}
	switch code, err := s.call(ctx, "POST", "/orgs", map[string]string{"name": s.org}, nil); {
	case err == nil && code == http.StatusConflict:
		return false, nil // another replica starting made it first
	case err != nil || code != http.StatusCreated:
		return false, fmt.Errorf("console sign-in org %s: create: %d %v", s.org, code, err)
	}
	if devProvider {
		if code, err := s.call(ctx, "PUT", "/orgs/"+url.PathEscape(s.org)+"/sms-provider", map[string]string{"type": "console"}, nil); err != nil || code != http.StatusOK {
			return true, fmt.Errorf("console sign-in org %s: console SMS provider: %d %v", s.org, code, err)
		}
	}
	return true, nil
}

// Ready says whether sign-in codes can be sent: an error wrapping
// ErrNotSetUp while the org has no SMS provider.
func (s *SMSStep) Ready(ctx context.Context) error {
	code, err := s.call(ctx, "GET", "/orgs/"+url.PathEscape(s.org)+"/sms-provider", nil, nil)
	switch {
	case err != nil:
		return err
	case code == http.StatusNotFound:
		return fmt.Errorf("%w: the org %s, which sends the console's sign-in codes, has no SMS provider", ErrNotSetUp, s.org)
	case code != http.StatusOK:
		return fmt.Errorf("console sign-in org %s: SMS provider: %d", s.org, code)
	}
	return nil
}

// pkce derives the PKCE verifier of a sign-in from its state, so nothing
// but the pending sign-in cookie is kept between Begin and Finish.
func (s *SMSStep) pkce(state string) (verifier, challenge string) {
	verifier = s.c.mac("pkce", state)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// Begin sends the browser to the hosted SMS OTP step for u.
func (s *SMSStep) Begin(w http.ResponseWriter, r *http.Request, u store.ConsoleUser, state string) error {
	if u.Mobile == "" {
		return errors.New("the user has no mobile number")
	}
	if err := s.ensure(r.Context()); err != nil {
		return err
	}
	_, challenge := s.pkce(state)
	now := s.c.cfg.Now()
	claims := jwt.MapClaims{
		"iss": s.clientID, "aud": s.c.cfg.PublicURL, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(), "jti": randomToken(),
		"client_id": s.clientID, "response_type": "code", "redirect_uri": s.redirectURI(), "scope": "openid",
		"state": state, "nonce": state, "code_challenge": challenge, "code_challenge_method": "S256",
		"login_hint": strconv.FormatInt(u.ID, 10), "phone_number": u.Mobile, "amr": []string{"pwd"},
	}
	ro, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(s.clientSecret))
	if err != nil {
		return err
	}
	q := url.Values{"client_id": {s.clientID}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {s.redirectURI()}, "request": {ro}}
	http.Redirect(w, r, "/oauth2/authorize?"+q.Encode(), http.StatusSeeOther)
	return nil
}

// Finish redeems the step's code and verifies its ID token: otphub's
// signature, issuer, audience, expiry, the sign-in's nonce, and an amr
// that says a one-time password was checked.
func (s *SMSStep) Finish(r *http.Request) (string, string, error) {
	q := r.URL.Query()
	state := q.Get("state")
	if e := q.Get("error"); e != "" {
		return state, "", fmt.Errorf("the SMS step answered %s", e)
	}
	if err := s.ensure(r.Context()); err != nil {
		return state, "", err
	}
	verifier, _ := s.pkce(state)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {s.redirectURI()}, "code_verifier": {verifier}}
	req, _ := http.NewRequestWithContext(r.Context(), "POST", s.c.cfg.PublicURL+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(s.clientID), url.QueryEscape(s.clientSecret))
	resp, err := s.inProcess().Do(req)
	if err != nil {
		return state, "", err
	}
	defer resp.Body.Close()
	var tok struct {
		IDToken string `json:"id_token"`
		Error   string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.IDToken == "" {
		return state, "", fmt.Errorf("token endpoint: %d %s", resp.StatusCode, tok.Error)
	}
	idt, err := s.verifier.Verify(oidc.ClientContext(r.Context(), s.inProcess()), tok.IDToken)
	if err != nil {
		return state, "", err
	}
	var claims struct {
		Nonce string   `json:"nonce"`
		AMR   []string `json:"amr"`
	}
	if err := idt.Claims(&claims); err != nil {
		return state, "", err
	}
	if claims.Nonce != state || !slices.Contains(claims.AMR, "otp") {
		return state, "", errors.New("the ID token is not this sign-in's")
	}
	return state, idt.Subject, nil
}
