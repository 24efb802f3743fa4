package dispatcher_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/dispatcher"
)

// tokens is a static access.Verifier: bearer token → principal.
type tokens map[string]access.Principal

func (t tokens) Verify(_ context.Context, tok string) (access.Principal, error) {
	p, ok := t[tok]
	if !ok {
		return access.Principal{}, errors.New("unknown token")
	}
	return p, nil
}

type apiClient struct {
	t   *testing.T
	srv *httptest.Server
	tok string
}

func newAPI(t *testing.T, e *env, eng *dispatcher.Engine) *apiClient {
	t.Helper()
	mux := http.NewServeMux()
	eng.Register(mux, tokens{
		"admin":    {ClientID: "a", OrgID: e.orgID, OrgName: org, Scopes: []string{access.ScopeAdmin}},
		"otp":      {ClientID: "o", OrgID: e.orgID, OrgName: org, Scopes: []string{access.ScopeOTP}},
		"platform": {ClientID: "p", PlatformAdmin: true},
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &apiClient{t: t, srv: srv, tok: "admin"}
}

// do sends a request and checks the status; out (if non-nil) receives the
// JSON body. It returns the body.
func (c *apiClient) do(method, path, body string, want int, out any) string {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.srv.URL+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if c.tok != "" {
		req.Header.Set("Authorization", "Bearer "+c.tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, resp.StatusCode, want, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		c.t.Errorf("%s %s: content type %q", method, path, ct)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return string(b)
}

func (c *apiClient) wantError(method, path, body string, status int, code string) {
	c.t.Helper()
	var eb struct{ Error, Message string }
	c.do(method, path, body, status, &eb)
	if eb.Error != code || eb.Message == "" {
		c.t.Errorf("%s %s: error %q (%q), want %q", method, path, eb.Error, eb.Message, code)
	}
}
