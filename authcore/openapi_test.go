package authcore_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// routes are every route oauth, tenants and authcore register.
var routes = []struct{ method, path string }{
	{"POST", "/oauth2/token"},
	{"GET", "/.well-known/jwks.json"},
	{"POST", "/api/v1/orgs"},
	{"GET", "/api/v1/orgs"},
	{"GET", "/api/v1/orgs/{org}"},
	{"POST", "/api/v1/orgs/{org}/clients"},
	{"GET", "/api/v1/orgs/{org}/clients"},
	{"DELETE", "/api/v1/orgs/{org}/clients/{clientId}"},
	{"GET", "/api/v1/orgs/{org}/sms-otp/settings"},
	{"PUT", "/api/v1/orgs/{org}/sms-otp/settings"},
	{"GET", "/api/v1/orgs/{org}/sms-otp/templates"},
	{"GET", "/api/v1/orgs/{org}/sms-otp/templates/{locale}"},
	{"PUT", "/api/v1/orgs/{org}/sms-otp/templates/{locale}"},
	{"DELETE", "/api/v1/orgs/{org}/sms-otp/templates/{locale}"},
	{"POST", "/api/v1/orgs/{org}/sms-otp/challenges"},
	{"POST", "/api/v1/orgs/{org}/sms-otp/challenges/{id}/resend"},
	{"POST", "/api/v1/orgs/{org}/sms-otp/challenges/{id}/verify"},
	{"GET", "/api/v1/orgs/{org}/sms-otp/stats"},
	{"POST", "/api/v1/orgs/{org}/users/{userId}/backup-codes"},
	{"GET", "/api/v1/orgs/{org}/users/{userId}/backup-codes"},
	{"DELETE", "/api/v1/orgs/{org}/users/{userId}/backup-codes"},
	{"POST", "/api/v1/orgs/{org}/users/{userId}/backup-codes/verify"},
}

// TestOpenAPIMatchesRoutes: docs/openapi.yaml is a valid OpenAPI 3 document,
// describes every route served here, serves every operation it tags oauth,
// tenants or sms-otp, and every route answers JSON rather than the mux's
// 404/405.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	doc, err := openapi3.NewLoader().LoadFromFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("docs/openapi.yaml is not valid OpenAPI: %v", err)
	}
	served := map[string]bool{}
	for _, r := range routes {
		served[r.method+" "+r.path] = true
		item := doc.Paths.Find(r.path)
		if item == nil || item.GetOperation(r.method) == nil {
			t.Errorf("%s %s is served but not in docs/openapi.yaml", r.method, r.path)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			mine := slices.ContainsFunc(op.Tags, func(tag string) bool { return tag == "oauth" || tag == "tenants" || tag == "sms-otp" })
			if mine && !served[method+" "+path] {
				t.Errorf("%s %s is documented but not served", method, path)
			}
		}
	}

	e := newEnv(t, nil)
	for _, r := range routes {
		p := strings.NewReplacer("{org}", "acme", "{clientId}", "c", "{locale}", "en", "{id}", "00000000-0000-0000-0000-000000000000", "{userId}", "alice").Replace(r.path)
		req, _ := http.NewRequest(r.method, e.url+p, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: %d %s: not routed", r.method, p, res.StatusCode, ct)
		}
		if doc.Paths.Find(r.path) != nil {
			op := doc.Paths.Find(r.path).GetOperation(r.method)
			if op != nil && op.Responses.Status(res.StatusCode) == nil {
				t.Errorf("%s %s answered %d, not documented", r.method, r.path, res.StatusCode)
			}
		}
	}
}
