package smsprovider

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/bus/embedded"
	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/dispatcher"
	dt "github.com/otphub/otphub/dispatcher/dispatchertest"
	"github.com/otphub/otphub/dispatcher/isolation"
	"github.com/otphub/otphub/smsprovider/custom"
	"github.com/otphub/otphub/smsprovider/twilio"
	"github.com/otphub/otphub/smsprovider/vonage"
	"github.com/otphub/otphub/store"
)

// startEngine runs the real delivery engine over an embedded log with the
// Service's Resolver as its only source of destinations.
func startEngine(t *testing.T, e *env) *embedded.Log {
	t.Helper()
	lg, err := embedded.Open(filepath.Join(t.TempDir(), "log"), embedded.Config{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	cfg := dispatcher.Config{
		Workers: 4, RetryWorkers: 2, PerEndpointConcurrency: 4, EndpointQueue: 16,
		AttemptTimeout: 5 * time.Second, DrainTimeout: 2 * time.Second, LeaseDuration: 10 * time.Second,
		RetryPolicy: dispatcher.RetryPolicy{Schedule: []time.Duration{20 * time.Millisecond}, Jitter: -1, MaxAttempts: 5,
			MinRetryAfter: 10 * time.Millisecond, MaxRetryAfter: 300 * time.Millisecond},
		Breaker:           isolation.BreakerConfig{FailureThreshold: -1},
		RetryPollInterval: 20 * time.Millisecond, StatsInterval: 20 * time.Millisecond, RecordInterval: 10 * time.Millisecond,
	}
	eng, err := dispatcher.New(cfg, lg, lg, e.st, []delivery.Resolver{e.svc.Resolver()}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the engine did not stop")
		}
	})
	return lg
}

func waitTask(t *testing.T, st store.Store, orgID int64, jti, destType, destID, status string) store.DeliveryTask {
	t.Helper()
	var task store.DeliveryTask
	dt.Eventually(t, 20*time.Second, func() bool {
		var err error
		task, err = st.FindDelivery(context.Background(), orgID, dt.Issuer, jti, destType, destID)
		return err == nil && task.Status == status
	}, "task of %s to %s/%s never became %s (last: %+v)", jti, destType, destID, status, &task)
	return task
}

// TestEngineFallsBackToSecondProvider: Twilio refuses the credentials
// (permanent), so the engine sends through the fallback custom gateway.
func TestEngineFallsBackToSecondProvider(t *testing.T) {
	e := newEnv(t, envOpts{})
	tw, _ := fakeTwilio(t)
	gw, _, bodies := gateway(t, http.StatusAccepted)
	bad := twilioBody(tw.URL)
	bad["authToken"] = "ffffffffffffffffffffffffffffffff"
	if code, body := e.do(t, "PUT", "/api/v1/orgs/acme/sms-provider", e.admin, bad); code != 200 {
		t.Fatalf("%d %v", code, body)
	}
	if code, body := e.do(t, "PUT", "/api/v1/orgs/acme/sms-provider/fallback", e.admin, map[string]any{"type": "custom", "url": gw.URL,
		"payloadTemplate": `{"to": {{mobile}}, "text": {{body}}}`}); code != 200 {
		t.Fatalf("%d %v", code, body)
	}
	lg := startEngine(t, e)
	ev := dt.NewEvent("acme", e.org.ID, time.Minute)
	if err := dt.Publish(context.Background(), lg, ev); err != nil {
		t.Fatal(err)
	}
	task := waitTask(t, e.st, ev.OrganizationID, ev.ID, twilio.Type, store.ProviderPrimary, store.DeliveryFailed)
	if task.LastError == "" {
		t.Error("the Twilio refusal was not recorded")
	}
	waitTask(t, e.st, ev.OrganizationID, ev.ID, custom.Type, store.ProviderFallback, store.DeliveryDelivered)
	var p struct{ To, Text string }
	if err := json.Unmarshal(<-bodies, &p); err != nil || p.To != ev.SendTo || p.Text != ev.MessageBody {
		t.Fatalf("gateway got %+v %v", p, err)
	}
}

// TestEngineRetriesThrottledVonage: Vonage answers HTTP 200 with status 1
// (throttled) once; the engine retries through Lookup and delivers.
func TestEngineRetriesThrottledVonage(t *testing.T) {
	e := newEnv(t, envOpts{})
	var calls atomic.Int32
	vo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if calls.Add(1) == 1 {
			_, _ = io.WriteString(w, `{"message-count":"1","messages":[{"status":"1","error-text":"Throughput Rate Exceeded"}]}`)
			return
		}
		_, _ = io.WriteString(w, `{"message-count":"1","messages":[{"status":"0","message-id":"0A0000001234ABCD"}]}`)
	}))
	t.Cleanup(vo.Close)
	if code, body := e.do(t, "PUT", "/api/v1/orgs/acme/sms-provider", e.admin, map[string]any{"type": "vonage", "apiKey": "abcd1234",
		"apiSecret": "s3cr3tV0nage", "sender": "MyApp", "baseUrl": vo.URL}); code != 200 {
		t.Fatalf("%d %v", code, body)
	}
	lg := startEngine(t, e)
	ev := dt.NewEvent("acme", e.org.ID, time.Minute)
	if err := dt.Publish(context.Background(), lg, ev); err != nil {
		t.Fatal(err)
	}
	task := waitTask(t, e.st, ev.OrganizationID, ev.ID, vonage.Type, store.ProviderPrimary, store.DeliveryDelivered)
	if task.Attempts != 2 || calls.Load() != 2 {
		t.Fatalf("attempts %d, calls %d", task.Attempts, calls.Load())
	}
}
