package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/app"
	"github.com/otphub/otphub/app/apptest"
	"github.com/otphub/otphub/config"
	"github.com/otphub/otphub/dispatcher/backlog"
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

// TestMuxErrorsAreJSON: what no route takes is a JSON error like every
// other: 404 for an unknown path, 405 with Allow for a known path asked
// with another method.
func TestMuxErrorsAreJSON(t *testing.T) {
	srv := apptest.Start(t)
	for _, c := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/no/such/thing", 404, "not_found", ""},
		{"DELETE", "/no/such/thing", 404, "not_found", ""},
		{"DELETE", "/healthz", 405, "method_not_allowed", "GET, HEAD"},
		{"PUT", "/oauth2/token", 405, "method_not_allowed", "POST"},
		{"GET", "/api/v1/orgs/acme/sms-otp/challenges", 405, "method_not_allowed", "POST"},
		{"GET", "/topics/BAD/NOTIFICATIONS", 404, "unknown_topic", ""},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Error, Message string }
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") ||
			err != nil || body.Error != c.code || body.Message == "" {
			t.Errorf("%s %s: %d %s %+v (%v)", c.method, c.path, resp.StatusCode, resp.Header.Get("Content-Type"), body, err)
		}
		if c.status == 405 && resp.Header.Get("Allow") == "" || c.allow != "" && resp.Header.Get("Allow") != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, resp.Header.Get("Allow"), c.allow)
		}
	}
	// The mux's redirect to a cleaned path is not an error and passes through.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(srv.URL + "/x/../healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 3 || resp.Header.Get("Location") != "/healthz" {
		t.Errorf("cleaned path: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
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

// TestShutdownIgnoresConnectionsWithoutRequests: a connection that was
// opened and never sent a request (a client that dialed, then gave up and
// pooled it) does not make the shutdown unclean; a request still being
// handled when the shutdown timeout ends does.
func TestShutdownIgnoresConnectionsWithoutRequests(t *testing.T) {
	serve := func(t *testing.T) (addr string, stop func() error) {
		cfg, err := config.Parse([]string{"--data-dir", t.TempDir(), "--shutdown-timeout", "1s"},
			func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		a, err := app.New(context.Background(), cfg, app.Options{Stdout: io.Discard, Stderr: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Serve(ctx, ln) }()
		return ln.Addr().String(), func() error {
			cancel()
			select {
			case err := <-done:
				return err
			case <-time.After(10 * time.Second):
				t.Fatal("Serve did not return")
				return nil
			}
		}
	}
	dial := func(t *testing.T, addr, send string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, send); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("idle new connection", func(t *testing.T) {
		addr, stop := serve(t)
		dial(t, addr, "")
		time.Sleep(100 * time.Millisecond) // let the server accept it
		if err := stop(); err != nil {
			t.Fatalf("shutdown with a connection that sent nothing: %v", err)
		}
	})
	t.Run("request in flight", func(t *testing.T) {
		addr, stop := serve(t)
		// Headers and half the announced body: the handler waits for the rest.
		dial(t, addr, "POST /oauth2/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=")
		time.Sleep(100 * time.Millisecond) // let the server start handling it
		if err := stop(); err == nil || !strings.Contains(err.Error(), "1 requests still in flight") {
			t.Fatalf("shutdown with a request in flight: want an error naming it, got %v", err)
		}
	})
}

// TestBackpressureOnByDefault: the flag's default is the gate's documented
// default (written twice: config cannot import the dispatcher's constant
// into its flag table without a dependency it has no other use for), and
// its environment twin sets it.
func TestBackpressureOnByDefault(t *testing.T) {
	cfg, err := config.Parse(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxPendingPerDestination != backlog.DefaultLimit {
		t.Fatalf("--max-pending-per-destination defaults to %d, backlog.DefaultLimit is %d",
			cfg.MaxPendingPerDestination, backlog.DefaultLimit)
	}
	cfg, err = config.Parse(nil, func(k string) string {
		if k == "OTPHUB_MAX_PENDING_PER_DESTINATION" {
			return "0"
		}
		return ""
	}, io.Discard)
	if err != nil || cfg.MaxPendingPerDestination != 0 {
		t.Fatalf("OTPHUB_MAX_PENDING_PER_DESTINATION=0: %v, %d", err, cfg.MaxPendingPerDestination)
	}
}

// TestTokenGuardCannotLockOutTheAdmin: the chart's admin id is well known;
// failed authentications from one address (X-Forwarded-For behind a
// trusted proxy) lock out that address only, never the real admin.
func TestTokenGuardCannotLockOutTheAdmin(t *testing.T) {
	const id, secret = "otphub-admin", "a-long-enough-admin-secret-0123456789"
	srv := apptest.Start(t, "--admin-client-id", id, "--admin-client-secret", secret, "--trust-proxy-headers")
	token := func(from, secret string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", from)
		req.SetBasicAuth(id, secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := 0; i < 10; i++ {
		if code := token("198.51.100.7", "wrong"); code != 401 {
			t.Fatalf("wrong secret %d: %d", i, code)
		}
	}
	if code := token("198.51.100.7", secret); code != 429 {
		t.Fatalf("the attacking address after 10 failures: %d, want 429", code)
	}
	if code := token("203.0.113.5", secret); code != 200 {
		t.Fatalf("the real admin from another address: %d, want 200", code)
	}
}
