package dispatcher_test

import (
	"context"
	"testing"
	"time"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/dispatcher"
	dt "github.com/otphub/otphub/dispatcher/dispatchertest"
	"github.com/otphub/otphub/event"
)

// BenchmarkRouter measures events through the engine: read from the
// embedded log, routed, delivered to a loopback receiver, acknowledged and
// recorded in SQLite.
func BenchmarkRouter(b *testing.B) {
	e := newBenchEnv(b)
	rcv := dt.NewReceiver(b, nil)
	e.res.Set(org, dt.Webhook("sub-1", rcv.URL))
	cfg := testConfig(e.clock)
	cfg.PerEndpointConcurrency = 64
	cfg.EndpointQueue = 1024
	cfg.Workers = 256
	// Publish first, so the figure is the engine's: routing, delivery over
	// loopback HTTP, acknowledgement and the records of the deliveries.
	evs := make([]*event.SmsOtpNotificationEvent, b.N)
	for i := range evs {
		evs[i] = dt.NewEvent(org, e.orgID, time.Hour)
	}
	for i := 0; i < len(evs); i += 500 {
		if err := dt.Publish(context.Background(), e.log, evs[i:min(i+500, len(evs))]...); err != nil {
			b.Fatal(err)
		}
	}
	eng, err := dispatcher.New(cfg, e.log, e.log, e.st, []delivery.Resolver{e.res}, nil, newReg())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ResetTimer()
	go func() { done <- eng.Run(ctx) }()
	defer func() { cancel(); <-done }()
	dt.Eventually(b, 5*time.Minute, func() bool { return rcv.Total() >= b.N }, "not all delivered")
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
