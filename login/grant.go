package login

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"regexp"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/otphub/otphub/oauth"
	"github.com/otphub/otphub/store"
)

// verifierPattern is an RFC 7636 §4.1 code verifier.
var verifierPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)

// IDTokenClaims are the claims of the step's ID token (OIDC Core §2).
type IDTokenClaims struct {
	jwt.RegisteredClaims
	Nonce    string   `json:"nonce,omitempty"`
	AuthTime int64    `json:"auth_time"`
	ACR      string   `json:"acr"`
	AMR      []string `json:"amr"`
	AZP      string   `json:"azp"`
}

// accessClaims are the claims of the access token that comes with the ID
// token: OAuth requires one, it grants nothing at otphub (its audience is
// the application, which no otphub API accepts).
type accessClaims struct {
	jwt.RegisteredClaims
	Scope    string `json:"scope"`
	ClientID string `json:"client_id"`
}

func grantError(code, desc string) *oauth.TokenError {
	return &oauth.TokenError{Status: http.StatusBadRequest, Code: code, Description: desc}
}

// AMR is the ID token's amr for a flow: the first factor's values, then
// sms (when the code came by SMS), otp and mfa.
func AMR(f store.LoginFlow) []string {
	out := append([]string(nil), f.AMR...)
	if f.Method == store.LoginBySMS {
		out = append(out, "sms")
	}
	return append(out, "otp", "mfa")
}

// Redeem serves grant_type=authorization_code: it authenticates the
// application, redeems the code (once: a code presented with a wrong
// redirect URI or verifier is spent all the same, as a leaked code must
// be) and returns an ID token.
func (s *Service) Redeem(ctx context.Context, req oauth.CodeRequest) (map[string]any, error) {
	app, err := s.st.GetApplicationByClientID(ctx, req.ClientID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	want := sha256.Sum256(app.ClientSecret) // zero app: compared all the same
	got := sha256.Sum256([]byte(req.ClientSecret))
	if subtle.ConstantTimeCompare(want[:], got[:]) != 1 || err != nil {
		s.metrics.outcome("token_refused")
		return nil, oauth.ErrInvalidClient
	}
	refuse := func(code, desc string) (map[string]any, error) {
		s.metrics.outcome("token_refused")
		s.log.Info("token request refused", "client_id", app.ClientID, "error", code, "error_description", desc)
		return nil, grantError(code, desc)
	}
	switch {
	case req.Code == "" || len(req.Code) > 256:
		return refuse("invalid_request", "code is required")
	case !verifierPattern.MatchString(req.CodeVerifier):
		return refuse("invalid_request", "code_verifier is required: 43 to 128 characters of [A-Za-z0-9._~-] (PKCE)")
	}
	now := s.cfg.Now()
	f, err := s.st.RedeemAuthorizationCode(ctx, sha(req.Code), now.UTC())
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrPrecondition) {
		return refuse("invalid_grant", "the code is invalid, expired or already used")
	}
	if err != nil {
		return nil, err
	}
	challenge := sha256.Sum256([]byte(req.CodeVerifier))
	switch {
	case f.ClientID != app.ClientID:
		return refuse("invalid_grant", "the code was issued to another client")
	case req.RedirectURI != f.RedirectURI:
		return refuse("invalid_grant", "redirect_uri is not the one of the authorization request")
	case subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(challenge[:])), []byte(f.CodeChallenge)) != 1:
		return refuse("invalid_grant", "code_verifier does not match the code_challenge")
	}
	exp := jwt.NewNumericDate(now.Add(s.cfg.IDTokenTTL))
	idToken, err := s.issuer.Sign(IDTokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: s.cfg.PublicURL, Subject: f.UserID, Audience: jwt.ClaimStrings{app.ClientID},
			ExpiresAt: exp, IssuedAt: jwt.NewNumericDate(now), ID: uuid.NewString(),
		},
		Nonce: f.Nonce, AuthTime: f.CompletedAt.Unix(), ACR: ACR, AMR: AMR(f), AZP: app.ClientID,
	})
	if err != nil {
		return nil, err
	}
	accessToken, err := s.issuer.Sign(accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: s.cfg.PublicURL, Subject: f.UserID, Audience: jwt.ClaimStrings{app.ClientID},
			ExpiresAt: exp, IssuedAt: jwt.NewNumericDate(now), ID: uuid.NewString(),
		},
		Scope: "openid", ClientID: app.ClientID,
	})
	if err != nil {
		return nil, err
	}
	s.metrics.outcome("token_issued")
	s.log.Info("id token issued", "client_id", app.ClientID, "flow_id", f.ID, "method", f.Method)
	return map[string]any{
		"access_token": accessToken,
		"token_type":   "Bearer",
		"expires_in":   int(s.cfg.IDTokenTTL / time.Second),
		"id_token":     idToken,
		"scope":        "openid",
	}, nil
}
