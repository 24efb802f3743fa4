package login

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/otphub/otphub/authcore"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/store"
)

const (
	maxQueryLen  = 16 << 10
	maxParamLen  = 1024
	maxUserChars = 128
	leeway       = 30 * time.Second
	cookieName   = "otphub_login"
)

var codeChallengePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

// requestClaims are a request object's claims (RFC 9101): the
// authorization parameters, which win over the query's, and what the
// relying party knows of the user.
type requestClaims struct {
	jwt.RegisteredClaims
	ClientID            string   `json:"client_id"`
	ResponseType        string   `json:"response_type"`
	RedirectURI         string   `json:"redirect_uri"`
	Scope               string   `json:"scope"`
	State               string   `json:"state"`
	Nonce               string   `json:"nonce"`
	CodeChallenge       string   `json:"code_challenge"`
	CodeChallengeMethod string   `json:"code_challenge_method"`
	UILocales           string   `json:"ui_locales"`
	Prompt              string   `json:"prompt"`
	LoginHint           string   `json:"login_hint"`
	PhoneNumber         string   `json:"phone_number"`
	AMR                 []string `json:"amr"`
}

// authRequest is the authorization request once the request object is
// merged in.
type authRequest struct {
	responseType, redirectURI, scope, state, nonce string
	codeChallenge, codeChallengeMethod, uiLocales  string
	prompt                                         string
}

func pick(claim, query string) string {
	if claim != "" {
		return claim
	}
	return query
}

func validUser(s string) bool {
	if s == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > maxUserChars {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// authorize serves GET /oauth2/authorize. Until the client and the
// redirect URI are known good, errors are pages (redirecting would be an
// open redirect); after that they go back to the relying party.
func (s *Service) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if len(r.URL.RawQuery) > maxQueryLen {
		s.reject(w, r, http.StatusRequestURITooLong, "the request is too long")
		return
	}
	q := r.URL.Query()
	for k, v := range q {
		if len(v) > 1 {
			s.reject(w, r, http.StatusBadRequest, fmt.Sprintf("parameter %q is repeated", k))
			return
		}
	}
	clientID := q.Get("client_id")
	if clientID == "" || len(clientID) > maxParamLen {
		s.reject(w, r, http.StatusBadRequest, "client_id is required")
		return
	}
	app, err := s.st.GetApplicationByClientID(ctx, clientID)
	if errors.Is(err, store.ErrNotFound) {
		s.reject(w, r, http.StatusBadRequest, "unknown client_id")
		return
	}
	if err != nil {
		s.log.Error("authorize: get application failed", "err", err)
		s.errorPage(w, r, http.StatusInternalServerError, "", "internal", "")
		return
	}
	registered := func(u string) bool { return u != "" && slices.Contains(app.RedirectURIs, u) }

	// The request object is verified first: until then its redirect_uri
	// cannot be trusted, and an error goes to the query's, if registered.
	var claims requestClaims
	raw := q.Get("request")
	var roErr string
	switch {
	case q.Get("request_uri") != "":
		roErr = "request_uri is not supported; pass the request object in the request parameter"
	case raw == "":
		roErr = "a signed request object (the request parameter) is required"
	default:
		roErr = s.parseRequestObject(raw, app, &claims)
	}
	if roErr != "" {
		if u := q.Get("redirect_uri"); registered(u) {
			code := "invalid_request_object"
			if q.Get("request_uri") != "" {
				code = "request_uri_not_supported"
			}
			s.redirectError(w, r, u, q.Get("state"), code, roErr)
			return
		}
		s.reject(w, r, http.StatusBadRequest, "invalid request object, and no registered redirect_uri to report it to: "+roErr)
		return
	}
	req := authRequest{
		responseType:        pick(claims.ResponseType, q.Get("response_type")),
		redirectURI:         pick(claims.RedirectURI, q.Get("redirect_uri")),
		scope:               pick(claims.Scope, q.Get("scope")),
		state:               pick(claims.State, q.Get("state")),
		nonce:               pick(claims.Nonce, q.Get("nonce")),
		codeChallenge:       pick(claims.CodeChallenge, q.Get("code_challenge")),
		codeChallengeMethod: pick(claims.CodeChallengeMethod, q.Get("code_challenge_method")),
		uiLocales:           pick(claims.UILocales, q.Get("ui_locales")),
		prompt:              pick(claims.Prompt, q.Get("prompt")),
	}
	if claims.ClientID != "" && claims.ClientID != clientID {
		s.reject(w, r, http.StatusBadRequest, "the request object's client_id is not the query's")
		return
	}
	if !registered(req.redirectURI) {
		s.reject(w, r, http.StatusBadRequest, "redirect_uri is not registered for this application")
		return
	}
	fail := func(code, desc string) { s.redirectError(w, r, req.redirectURI, req.state, code, desc) }
	// The jti is spent only once the request object is otherwise valid.
	switch {
	case len(req.state) > maxParamLen:
		fail("invalid_request", fmt.Sprintf("state is longer than %d bytes", maxParamLen))
	case req.responseType != "code":
		fail("unsupported_response_type", "response_type must be code")
	case !slices.Contains(strings.Fields(req.scope), "openid"):
		fail("invalid_scope", "scope must include openid")
	case req.codeChallengeMethod != "S256" || !codeChallengePattern.MatchString(req.codeChallenge):
		fail("invalid_request", "PKCE is required: code_challenge (43 base64url characters) with code_challenge_method=S256")
	case req.nonce == "" || len(req.nonce) > maxParamLen:
		fail("invalid_request", "nonce is required (at most 1024 bytes)")
	case slices.Contains(strings.Fields(req.prompt), "none"):
		fail("login_required", "the SMS OTP step needs the user: prompt=none is not possible")
	case !validUser(claims.LoginHint):
		fail("invalid_request_object", "login_hint: the user id is required: 1 to 128 characters, no control characters")
	case !event.ValidMobile(claims.PhoneNumber):
		fail("invalid_request_object", "phone_number: the user's registered mobile is required, in E.164 form (+ then digits)")
	default:
		amr := acceptedAMR(claims.AMR, app.FirstFactors)
		if len(amr) == 0 {
			fail("invalid_request_object", "amr: the first factor already checked is required, one of this application's: "+strings.Join(app.FirstFactors, ", "))
			return
		}
		if replayed, err := s.spendJTI(r, app, claims); err != nil {
			s.log.Error("authorize: recording the request object's jti failed", "err", err)
			fail("server_error", "internal error")
			return
		} else if replayed {
			fail("invalid_request_object", "the request object was already used (jti replayed)")
			return
		}
		s.startFlow(w, r, app, req, claims, amr)
	}
}

// reject answers an authorization request with an error page.
func (s *Service) reject(w http.ResponseWriter, r *http.Request, status int, detail string) {
	s.metrics.outcome("rejected")
	s.log.Info("authorization request rejected", "reason", detail)
	s.errorPage(w, r, status, "", "badRequest", detail)
}

// parseRequestObject verifies raw (HS256 with the application's secret,
// iss the client id, aud otphub, not expired, not too long-lived, a jti)
// into claims; it returns what is wrong, or "".
func (s *Service) parseRequestObject(raw string, app store.Application, claims *requestClaims) string {
	if len(raw) > maxQueryLen {
		return "the request object is too long"
	}
	_, err := jwt.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return app.ClientSecret, nil },
		jwt.WithValidMethods([]string{"HS256"}),
		jwt.WithIssuer(app.ClientID),
		jwt.WithAudience(s.cfg.PublicURL),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(s.cfg.Now),
	)
	switch {
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "the request object's aud must be " + s.cfg.PublicURL
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "the request object's iss must be the client id"
	case errors.Is(err, jwt.ErrTokenExpired):
		return "the request object has expired"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "the request object's signature is not valid (HS256 with the client secret)"
	case err != nil:
		return "the request object is not valid: " + err.Error()
	}
	now := s.cfg.Now()
	if claims.ExpiresAt.Sub(now) > s.cfg.MaxRequestObjectAge+leeway ||
		(claims.IssuedAt != nil && claims.ExpiresAt.Sub(claims.IssuedAt.Time) > s.cfg.MaxRequestObjectAge) {
		return fmt.Sprintf("the request object may live at most %s (exp)", s.cfg.MaxRequestObjectAge)
	}
	if claims.ID == "" || len(claims.ID) > 256 {
		return "the request object needs a jti (at most 256 bytes) so that it is used once"
	}
	return ""
}

// spendJTI records the request object's jti until it expires and tells
// whether it was seen before.
func (s *Service) spendJTI(r *http.Request, app store.Application, claims requestClaims) (bool, error) {
	n, err := s.st.HitCounter(r.Context(), "login-jti:"+app.ClientID+":"+claims.ID, time.Unix(0, 0).UTC(), claims.ExpiresAt.Add(leeway))
	return n > 1, err
}

// acceptedAMR keeps the request object's amr values the application
// accepts as a first factor.
func acceptedAMR(amr, firstFactors []string) []string {
	var out []string
	for _, v := range amr {
		if slices.Contains(firstFactors, v) && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// startFlow creates the flow, sends the first SMS and sends the browser to
// the prompt. An SMS that cannot be sent (budget, lockout, backlog) does
// not stop the flow: the prompt says why and offers the backup code.
func (s *Service) startFlow(w http.ResponseWriter, r *http.Request, app store.Application, req authRequest, claims requestClaims, amr []string) {
	ctx := r.Context()
	org, err := s.st.GetOrgByID(ctx, app.OrgID)
	if err != nil {
		s.log.Error("authorize: get org failed", "err", err)
		s.redirectError(w, r, req.redirectURI, req.state, "server_error", "internal error")
		return
	}
	now := s.cfg.Now()
	secret := randomToken(32)
	f := store.LoginFlow{
		ID: uuid.NewString(), OrgID: org.ID, ApplicationID: app.ID, ClientID: app.ClientID, BrowserHash: sha(secret),
		RedirectURI: req.redirectURI, State: req.state, Nonce: req.nonce, CodeChallenge: req.codeChallenge,
		UserID: claims.LoginHint, Mobile: claims.PhoneNumber, AMR: amr,
		Locale:    pickLocale(req.uiLocales, r.Header.Get("Accept-Language")),
		ExpiresAt: now.Add(s.cfg.FlowTTL).UTC(), CreatedAt: now.UTC(),
	}
	next := "/login/" + f.ID
	ch, err := s.core.Start(ctx, org, authcore.StartRequest{
		Mobile: f.Mobile, UserID: f.UserID, Application: app.Name, Locale: f.Locale,
		IP: httpx.ClientIP(r, s.cfg.TrustProxyHeaders), WebOTP: true,
	})
	if e := authcore.AsError(err); e != nil {
		if e.Code == "invalid_field" {
			s.redirectError(w, r, req.redirectURI, req.state, "invalid_request_object", strings.Replace(e.Message, "mobile:", "phone_number:", 1))
			return
		}
		s.count(e)
		next += "?m=" + url.QueryEscape(e.Code) + "&wait=" + strconv.Itoa(int(e.RetryAfter/time.Second))
	} else if err != nil {
		s.log.Error("authorize: sending the first SMS failed", "err", err)
		next += "?m=internal"
	} else {
		f.ChallengeID = ch.ID
	}
	if err := s.st.CreateLoginFlow(ctx, f); err != nil {
		s.log.Error("authorize: create login flow failed", "err", err)
		s.redirectError(w, r, req.redirectURI, req.state, "server_error", "internal error")
		return
	}
	s.metrics.outcome("started")
	s.log.Info("login step started", "org", org.Name, "client_id", app.ClientID, "flow_id", f.ID, "sms_sent", f.ChallengeID != "")
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: secret, Path: "/login/" + f.ID, MaxAge: int(s.cfg.FlowTTL / time.Second),
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, next, http.StatusSeeOther)
}
