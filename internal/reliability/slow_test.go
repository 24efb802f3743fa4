package reliability_test

import (
	"context"
	"testing"
	"time"

	"github.com/otphub/otphub/app/apptest"
)

// TestSlowEndpointDoesNotDelayOthers: a slow but answering endpoint (each
// delivery takes 500 ms: at its cap of 8, 16 a second) beside a fast
// one in the same org. The router waits for room in a full endpoint queue
// only when that endpoint is fast (isolation.Gate.AdmitWait); had it waited
// for the slow one, the fast one would receive the events at the slow
// one's pace, and the slow one would have received all but the 8 + 256 it
// holds by then (and more than half of them). So when the fast endpoint
// has every event, the slow one must have received under a quarter.
func TestSlowEndpointDoesNotDelayOthers(t *testing.T) {
	const events = 600
	s := apptest.Start(t, "--log-level", "error")
	slow := newReceiver(t, func(string, int, int64) int { time.Sleep(500 * time.Millisecond); return 200 })
	fast := newReceiver(t, nil)
	c := newClient(s.URL)
	tn := setupTenant(t, c, s.AdminClientID, s.AdminClientSecret, "slow", "publish", "subscribe", "admin")
	subscribe(t, c, s.URL, tn, slow.URL+"/cb", fast.URL+"/cb")

	pub := newPublisher(s.URL, tn)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	// Paced (200/s, which the fast endpoint keeps up with), so the test
	// sees the steady state rather than the first burst.
	go func() { pub.runPaced(ctx, 8, 200, c); close(done) }()
	waitFor(t, time.Minute, "events published", func() bool { return pub.n.Load() >= events })
	cancel()
	<-done
	acked := pub.ackedIDs()
	waitDelivered(t, fast, acked, pick(60*time.Second, 5*time.Minute), deliveryDiag(t, c, tn))
	got := slow.acceptedCount()
	if got*4 >= len(acked) {
		t.Errorf("the slow endpoint had %d of %d events when the fast one had all: the fast one went at the slow one's pace", got, len(acked))
	}
	t.Logf("the fast endpoint had all %d events when the slow one had %d", len(acked), got)
}
