package interop

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/otphub/otphub/app/apptest"
)

// otphub is the whole server started in-process.
type otphub struct {
	t   *testing.T
	srv *apptest.TestServer
}

func start(t *testing.T, args ...string) *otphub {
	t.Helper()
	return &otphub{t: t, srv: apptest.Start(t, args...)}
}

// call makes a JSON API call and decodes the answer into out (if set).
func (o *otphub) call(method, path, token string, in, out any, wantCode int) {
	o.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, o.srv.URL+path, body)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantCode {
		o.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			o.t.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
}

// token gets a token with client credentials (form body, HTTP Basic).
func (o *otphub) token(id, secret string) string {
	o.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, o.srv.URL+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		o.t.Fatalf("token: %d %v", resp.StatusCode, err)
	}
	return tok.AccessToken
}

// client is an OAuth client's credentials.
type client struct{ ClientID, ClientSecret string }

// org creates org and returns its id, a client with scopes, and an admin
// token of the org (otp and admin scopes).
func (o *otphub) org(name string, scopes ...string) (orgID int64, c client, adminToken string) {
	o.t.Helper()
	admin := o.token(o.srv.AdminClientID, o.srv.AdminClientSecret)
	var created struct{ ID int64 }
	o.call(http.MethodPost, "/api/v1/orgs", admin, map[string]string{"name": name}, &created, http.StatusCreated)
	o.call(http.MethodPost, "/api/v1/orgs/"+name+"/clients", admin,
		map[string]any{"name": "outside-client", "scopes": scopes}, &c, http.StatusCreated)
	var app client
	o.call(http.MethodPost, "/api/v1/orgs/"+name+"/clients", admin,
		map[string]any{"name": "myapp", "scopes": []string{"otp", "admin"}}, &app, http.StatusCreated)
	return created.ID, c, o.token(app.ClientID, app.ClientSecret)
}

// challenge starts an SMS OTP challenge for mobile.
func (o *otphub) challenge(org, token, mobile string) {
	o.t.Helper()
	o.call(http.MethodPost, "/api/v1/orgs/"+org+"/sms-otp/challenges", token,
		map[string]string{"mobile": mobile, "userId": "alice", "application": "myapp"}, nil, http.StatusCreated)
}

var nodeOnce sync.Once
var nodeErr error

// node returns the node binary with testdata/node's packages installed
// (npm ci, once per test binary). Without node the test skips, except
// under CI=true, where it fails: CI must run these tests.
func node(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node is not installed: CI must run the npm interop tests (.ci/run installs nodejs and npm)")
		}
		t.Skip("node not installed")
	}
	dir, _ := filepath.Abs("testdata/node")
	nodeOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "standardwebhooks", "package.json")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "node_modules", "cloudevents", "package.json")); err == nil {
				return
			}
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			nodeErr = err
			t.Logf("npm ci: %s", out)
		}
	})
	if nodeErr != nil {
		t.Fatalf("installing testdata/node's packages with npm ci: %v", nodeErr)
	}
	return bin
}

// runNode runs a script of testdata/node with stdin and returns stdout.
func runNode(t *testing.T, script string, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(node(t), append([]string{script}, args...)...)
	cmd.Dir = "testdata/node"
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", script, err, stderr.String())
	}
	return out
}
