package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/otphub/otphub/app/apptest"
)

// TestOpenAPIMatchesServer checks docs/openapi.yaml is a valid OpenAPI 3
// document and that every operation it describes is served: a request with
// the operation's method and path reaches a handler (anything but the
// server's own "no such endpoint" answer).
func TestOpenAPIMatchesServer(t *testing.T) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("docs/openapi.yaml is not valid OpenAPI: %v", err)
	}
	srv := apptest.Start(t)
	param := regexp.MustCompile(`\{[^}]+\}`)
	var missing []string
	n := 0
	for path, item := range doc.Paths.Map() {
		concrete := param.ReplaceAllString(path, "x1")
		for method := range item.Operations() {
			n++
			req, _ := http.NewRequest(method, srv.URL+concrete, strings.NewReader(""))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e struct {
				Error string `json:"error"`
			}
			_ = json.Unmarshal(body, &e)
			if resp.StatusCode == http.StatusNotFound && e.Error == "not_found" {
				missing = append(missing, method+" "+path)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("documented but not served:\n  %s", strings.Join(missing, "\n  "))
	}

	// And the other way round: every route served is documented.
	var undocumented []string
	for _, pattern := range srv.Routes() {
		method, path, ok := strings.Cut(pattern, " ")
		if !ok {
			continue
		}
		item := doc.Paths.Find(path)
		if item == nil || item.GetOperation(method) == nil {
			undocumented = append(undocumented, pattern)
		}
	}
	sort.Strings(undocumented)
	if len(undocumented) > 0 {
		t.Errorf("served but not documented in docs/openapi.yaml:\n  %s", strings.Join(undocumented, "\n  "))
	}
	if n < 20 {
		t.Errorf("only %d operations documented", n)
	}
}
