package dispatcher_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otphub/otphub/delivery"
	dt "github.com/otphub/otphub/dispatcher/dispatchertest"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
)

// refusing is a Sender the org's SMS policy stops (as smsprovider's
// guarded sender does).
type refusing struct{ calls atomic.Int32 }

func (r *refusing) Send(context.Context, *event.SmsOtpNotificationEvent) delivery.Result {
	r.calls.Add(1)
	return delivery.Result{Reason: delivery.ReasonPolicyRefused, Err: errors.New("refused by the organization's SMS policy: its budget per number is spent for this window")}
}

// TestPolicyRefusalIsNotHandedToFallback: a fallback provider would get
// the SMS the org's policy refused (its budget spent), bypassing it.
func TestPolicyRefusalIsNotHandedToFallback(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	fallback := dt.NewReceiver(t, nil)
	fb := dt.Webhook("fallback", fallback.URL)
	fb.Type, fb.AtLeastOnce = dt.TypeCustom, false
	primary := &refusing{}
	p := delivery.Target{Type: dt.TypeCustom, ID: "primary", Endpoint: "refusing:", Sender: primary, Fallback: &fb}
	e.res.Set(org, p)
	e.start(testConfig(e.clock))

	ev := e.event(time.Minute)
	e.publish(ev)
	task := e.waitTask(ev.ID, dt.TypeCustom, "primary", store.DeliveryFailed)
	if task.Attempts != 1 || primary.calls.Load() != 1 {
		t.Errorf("the refused delivery: %d attempts, %d sends; want one, not retried", task.Attempts, primary.calls.Load())
	}
	if _, err := e.st.FindDelivery(context.Background(), e.orgID, dt.Issuer, ev.ID, dt.TypeCustom, "fallback"); !errors.Is(err, store.ErrNotFound) || fallback.Delivered(ev.ID) != 0 {
		t.Errorf("the fallback got the refused SMS (task: %v, delivered %d)", err, fallback.Delivered(ev.ID))
	}
}

// TestHostCapAcrossEndpoints: with PerHostConcurrency, endpoints that
// each have their own cap share one host's politeness cap.
func TestHostCapAcrossEndpoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	release := make(chan struct{})
	var hung, most atomic.Int32
	host := dt.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ string, _ int) {
		n := hung.Add(1)
		defer hung.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	// Two endpoints (as two accounts on one provider host are), each with
	// its own cap of 4.
	a, b := dt.Webhook("a", host.URL), dt.Webhook("b", host.URL)
	a.Endpoint, b.Endpoint = host.URL+"#a", host.URL+"#b"
	e.res.Set(org, a, b)
	cfg := testConfig(e.clock)
	cfg.PerHostConcurrency = 2
	cfg.AttemptTimeout = time.Minute
	cfg.LeaseDuration = 2 * time.Minute
	cfg.DrainTimeout = 100 * time.Millisecond
	e.start(cfg)
	var evs []*event.SmsOtpNotificationEvent
	for range 6 {
		evs = append(evs, e.event(time.Hour))
	}
	e.publish(evs...)
	dt.Eventually(t, 10*time.Second, func() bool { return hung.Load() >= 2 }, "two attempts in flight to the host")
	// The other ten wait for the host (without the cap, each endpoint
	// would have 4 in flight within milliseconds): watch for a while.
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if m := most.Load(); m > 2 {
			t.Fatalf("%d attempts in flight to one host, want at most its cap of 2", m)
		}
	}
	close(release)
	dt.Eventually(t, 30*time.Second, func() bool {
		for _, ev := range evs {
			if host.Delivered(ev.ID) < 2 {
				return false
			}
		}
		return true
	}, "every event at both endpoints once the host answers")
	if m := most.Load(); m > 2 {
		t.Errorf("%d attempts in flight to one host, want at most its cap of 2", m)
	}
}
