package reliability_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otphub/otphub/app/apptest"
)

// TestHangingEndpointDoesNotDelayOthers: two subscriptions of one org on
// two receivers; one never answers (until the test ends), the other must
// receive every event, and all of them before any attempt to the hanging
// one has ended: the healthy endpoint never waited for the hanging one's
// attempt timeout (set far beyond the test's length).
func TestHangingEndpointDoesNotDelayOthers(t *testing.T) {
	hangingTest(t, 200)
}

// TestSoakHangingEndpoint is the long form: more events than the hanging
// endpoint's concurrency cap plus queue (8 + 256), so its overflow becomes
// retry tasks, over 40 s, while the healthy endpoint keeps up.
func TestSoakHangingEndpoint(t *testing.T) {
	if !soak {
		t.Skip("soak test: set OTPHUB_SOAK=1 (make soak)")
	}
	hangingTest(t, 4000)
}

// hanger is a webhook endpoint that answers intent verification and then
// holds every delivery until released or abandoned by the hub.
type hanger struct {
	URL     string
	release chan struct{}
	once    sync.Once
	now     atomic.Int64 // deliveries being held
	peak    atomic.Int64
	started atomic.Int64
	ended   atomic.Int64 // held deliveries that ended before release (the hub gave up)
}

func newHanger(t *testing.T) *hanger {
	h := &hanger{release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte(r.URL.Query().Get("hub.challenge")))
			return
		}
		// Read the body: only then does the server notice the hub closing
		// the connection (its attempt timeout) and end r.Context().
		_, _ = io.Copy(io.Discard, r.Body)
		h.started.Add(1)
		n := h.now.Add(1)
		for p := h.peak.Load(); n > p && !h.peak.CompareAndSwap(p, n); p = h.peak.Load() {
		}
		defer h.now.Add(-1)
		select {
		case <-h.release:
			w.WriteHeader(http.StatusServiceUnavailable)
		case <-r.Context().Done():
			h.ended.Add(1)
		}
	}))
	h.URL = srv.URL
	t.Cleanup(srv.Close)
	// Registered after srv.Close, so it runs before it.
	t.Cleanup(h.unblock)
	return h
}

func (h *hanger) unblock() { h.once.Do(func() { close(h.release) }) }

func hangingTest(t *testing.T, events int64) {
	// The attempt timeout is the longest --delivery-timeout accepts. A
	// healthy delivery that waited for a hanging attempt to end would arrive
	// at least that long after its publish, and, while the test is shorter
	// than that, only after a hanging attempt ended.
	const attemptTimeout = 2 * time.Minute
	s := apptest.Start(t, "--delivery-timeout", attemptTimeout.String(), "--log-level", "error")
	hang := newHanger(t)
	t.Cleanup(func() {
		// Let held deliveries end before the server stops, so the graceful
		// shutdown does not wait on them.
		hang.unblock()
	})
	healthy := newReceiver(t, nil)
	c := newClient(s.URL)
	tn := setupTenant(t, c, s.AdminClientID, s.AdminClientSecret, "hang", "publish", "subscribe", "admin")
	subscribe(t, c, s.URL, tn, hang.URL+"/cb", healthy.URL+"/cb")

	began := time.Now()
	pub := newPublisher(s.URL, tn)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	// Paced below what this machine delivers, so that a healthy delivery's
	// delay is the engine's doing, not a backlog of our making.
	go func() { pub.runPaced(ctx, 4, 100, c); close(done) }()
	waitFor(t, 2*time.Minute, "events published", func() bool { return pub.n.Load() >= events })
	cancel()
	<-done
	acked := pub.ackedIDs()
	waitDelivered(t, healthy, acked, pick(60*time.Second, 5*time.Minute), deliveryDiag(t, c, tn))
	elapsed, endedBefore := time.Since(began), hang.ended.Load()

	if hang.started.Load() == 0 {
		t.Fatal("the hanging endpoint never received a delivery: the test shows nothing")
	}
	var slowest time.Duration
	for _, id := range acked {
		at, _ := healthy.acceptedAt(id)
		slowest = max(slowest, at.Sub(pub.sentAt(id)))
	}
	if slowest >= attemptTimeout {
		t.Errorf("a healthy delivery arrived %v after its publish: as long as the hanging endpoint's attempt timeout", slowest)
	}
	// While the run is shorter than the attempt timeout, no hanging attempt
	// may have ended: the healthy endpoint got everything while every
	// attempt to the hanging one was still held.
	if endedBefore != 0 && elapsed < attemptTimeout {
		t.Errorf("%d attempts to the hanging endpoint ended within %v, before their %v timeout", endedBefore, elapsed, attemptTimeout)
	}
	if peak := hang.peak.Load(); peak > 8 && endedBefore == 0 {
		t.Errorf("the hanging endpoint held %d concurrent deliveries; the per-endpoint cap is 8", peak)
	}
	_, dups, _ := healthy.tally(acked)
	t.Logf("hanging endpoint: %d events all delivered to the healthy endpoint in %v (slowest %v after its publish, %d duplicates) while the hanging one held %d (peak %d concurrent, %d received in all, %d ended)",
		len(acked), elapsed.Round(10*time.Millisecond), slowest.Round(time.Millisecond), dups, hang.now.Load(), hang.peak.Load(), hang.started.Load(), hang.ended.Load())
}
