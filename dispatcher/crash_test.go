package dispatcher_test

import (
	"context"
	"net/http"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/bus/embedded"
	"github.com/otphub/otphub/bus/kafka"
	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/dispatcher"
	dt "github.com/otphub/otphub/dispatcher/dispatchertest"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/sqlite"
)

// logBus is one process's handle on the log.
type logBus interface {
	bus.Publisher
	bus.Subscriber
}

// crashTest publishes events, runs an engine until part of them reached
// the receiver, kills it (its log handle and store closed under it, its
// context cancelled, nothing drained or awaited), then runs a new engine on
// the same data and checks that every published event is delivered at
// least once. openBus opens a new handle on the same log.
func crashTest(t *testing.T, openBus func() logBus) {
	const n = 150
	dir := t.TempDir()
	openStore := func() *sqlite.Store {
		st, err := sqlite.Open(context.Background(), filepath.Join(dir, "db"), store.Options{EncryptionKey: testKey})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	st1 := openStore()
	o, err := st1.CreateOrg(context.Background(), org)
	if err != nil {
		t.Fatal(err)
	}

	// A quarter of the events fail their first attempt (retry tasks exist
	// at the crash), every request takes a little while (attempts are in
	// flight at the crash).
	rcv := dt.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, jti string, nth int) {
		time.Sleep(time.Millisecond)
		if nth == 1 && jti[0] < '4' {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	res := dt.NewResolver()
	res.Set(org, dt.Webhook("sub-1", rcv.URL))
	clk := &clock{}
	cfg := testConfig(clk)
	cfg.AttemptTimeout = 500 * time.Millisecond
	cfg.PerEndpointConcurrency = 16
	cfg.EndpointQueue = 512
	cfg.LeaseDuration = 2 * time.Second // the dead engine's leases lapse quickly
	cfg.DrainTimeout = 50 * time.Millisecond

	start := func(b logBus, st store.Store) (context.CancelFunc, chan error) {
		eng, err := dispatcher.New(cfg, b, b, st, []delivery.Resolver{res}, nil, prometheus.NewRegistry())
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
			case <-time.After(30 * time.Second):
				var buf strings.Builder
				pprof.Lookup("goroutine").WriteTo(&buf, 1)
				t.Errorf("an engine did not stop; goroutines:\n%s", buf.String())
			}
		})
		return cancel, done
	}

	b1 := openBus()
	var evs []*event.SmsOtpNotificationEvent
	for range n {
		ev := dt.NewEvent(org, o.ID, time.Hour)
		evs = append(evs, ev)
	}
	for i := 0; i < n; i += 50 {
		if err := dt.Publish(context.Background(), b1, evs[i:i+50]...); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	cancel1, _ := start(b1, st1)
	dt.Eventually(t, 30*time.Second, func() bool { return rcv.Total() >= n/3 }, "the first engine made no progress")

	// kill: the process's log handle and store go away under it.
	b1.Close()
	st1.Close()
	cancel1()
	before := rcv.Total()
	t.Logf("killed after %v", time.Since(t0))
	t0 = time.Now()

	// restart on the same data.
	st2 := openStore()
	b2 := openBus()
	t.Logf("reopened in %v", time.Since(t0))
	t.Cleanup(func() { b2.Close() })
	start(b2, st2)
	dt.Eventually(t, 60*time.Second, func() bool {
		for _, ev := range evs {
			if rcv.Delivered(ev.ID) == 0 {
				return false
			}
		}
		return true
	}, "not every published event was delivered after the restart")
	t.Logf("recovered in %v", time.Since(t0))
	t.Logf("%d events: %d requests before the kill, %d in all, %d duplicate deliveries", n, before, rcv.Total(), rcv.Duplicates())
}

func TestCrashSafetyEmbedded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	crashTest(t, func() logBus {
		var lg *embedded.Log
		// The dead process's lock goes with its closed handle.
		dt.Eventually(t, 10*time.Second, func() bool {
			var err error
			lg, err = embedded.Open(dir, embedded.Config{Partitions: 4})
			return err == nil
		}, "cannot reopen the embedded log")
		t.Cleanup(func() { lg.Close() })
		return lg
	})
}

func TestCrashSafetyKafka(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	crashTest(t, func() logBus {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		b, err := kafka.New(ctx, kafka.Config{
			Brokers:           c.ListenAddrs(),
			Partitions:        4,
			HeartbeatInterval: 100 * time.Millisecond,
			SessionTimeout:    2 * time.Second,
			RebalanceTimeout:  2 * time.Second,
			JoinGroupBackoff:  100 * time.Millisecond,
			MaxWait:           100 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	})
}
