package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/otphub/otphub/app"
	"github.com/otphub/otphub/app/apptest"
	"github.com/otphub/otphub/config"
)

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestHealthReadyMetrics(t *testing.T) {
	srv := apptest.Start(t)

	resp, body := get(t, srv.URL+"/healthz")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"status":"ok"`) {
		t.Fatalf("healthz: %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id on responses")
	}

	resp, body = get(t, srv.URL+"/readyz")
	var ready struct {
		Ready  bool              `json:"ready"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.Unmarshal(body, &ready); err != nil || resp.StatusCode != 200 || !ready.Ready {
		t.Fatalf("readyz: %d %s", resp.StatusCode, body)
	}
	if ready.Checks["store"] != "ok" || ready.Checks["log"] != "ok" {
		t.Fatalf("readyz must report each dependency: %v", ready.Checks)
	}

	resp, body = get(t, srv.URL+"/metrics")
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	for _, name := range []string{
		"otphub_http_requests_total", "otphub_deliveries_total", "otphub_delivery_failures_total",
		"otphub_otp_challenges_started_total", "otphub_events_published_total", "otphub_egress_refused_total",
		"otphub_circuit_breakers", "go_goroutines", "process_resident_memory_bytes",
	} {
		if !strings.Contains(string(body), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

func TestUnknownRouteIsJSON404(t *testing.T) {
	srv := apptest.Start(t)
	resp, body := get(t, srv.URL+"/no/such/thing")
	if resp.StatusCode != 404 || !strings.Contains(resp.Header.Get("Content-Type"), "application/json") ||
		!strings.Contains(string(body), `"error":"not_found"`) {
		t.Fatalf("got %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

func TestDispatcherOnlyServesNoAPI(t *testing.T) {
	srv := apptest.Start(t, "--roles", "dispatcher")
	resp, _ := get(t, srv.URL+"/.well-known/jwks.json")
	if resp.StatusCode != 404 {
		t.Fatalf("a dispatcher-only process must not serve the API: %d", resp.StatusCode)
	}
	resp, _ = get(t, srv.URL+"/readyz")
	if resp.StatusCode != 200 {
		t.Fatalf("readyz: %d", resp.StatusCode)
	}
}

// TestNewFailsCleanly shows a dependency that cannot be reached fails
// start-up with an error naming it (and closes what was opened), not a panic.
func TestNewFailsCleanly(t *testing.T) {
	cfg, err := config.Parse([]string{"--data-dir", t.TempDir(),
		"--database-url", "postgres://otphub@127.0.0.1:1/none?sslmode=disable&connect_timeout=2",
		"--encryption-key", strings.Repeat("ab", 32)}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, err = app.New(context.Background(), cfg, app.Options{Stdout: io.Discard, Stderr: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "postgresql store") {
		t.Fatalf("want a postgresql store error, got %v", err)
	}
}
