package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/bus/bustest"
	"github.com/otphub/otphub/bus/kafka"
)

// newCluster starts an in-process Kafka-protocol broker on 127.0.0.1 with
// group timeouts short enough for fast rebalances. Topics are not
// auto-created: the adapter must create them.
func newCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{
		kfake.NumBrokers(1),
		kfake.GroupMinSessionTimeout(100 * time.Millisecond),
	}, opts...)...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// testConfig is the adapter configuration the tests use: kafka-go's group
// timings shortened so joins and rebalances take well under a second.
func testConfig(c *kfake.Cluster) kafka.Config {
	return kafka.Config{
		Brokers:           c.ListenAddrs(),
		Partitions:        4,
		HeartbeatInterval: 100 * time.Millisecond,
		SessionTimeout:    10 * time.Second, // generous: a loaded CI machine must not drop a member
		RebalanceTimeout:  5 * time.Second,
		JoinGroupBackoff:  100 * time.Millisecond,
		MaxWait:           100 * time.Millisecond,
	}
}

func newBus(t testing.TB, cfg kafka.Config) *kafka.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := kafka.New(ctx, cfg)
	if err != nil {
		t.Fatalf("kafka.New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	bustest.Run(t, bustest.Features{}, func(t *testing.T, o bustest.Options) (bustest.Bus, func() bustest.Bus) {
		c := newCluster(t)
		cfg := testConfig(c)
		cfg.MaxInFlight = o.MaxInFlight
		return newBus(t, cfg), func() bustest.Bus { return newBus(t, cfg) }
	})
}

// TestConformanceThreeBrokers runs the suite against three brokers with
// replicated topics, so partition leaders and the group coordinator live on
// different brokers, as in a real cluster.
func TestConformanceThreeBrokers(t *testing.T) {
	bustest.Run(t, bustest.Features{}, func(t *testing.T, o bustest.Options) (bustest.Bus, func() bustest.Bus) {
		c := newCluster(t, kfake.NumBrokers(3))
		cfg := testConfig(c)
		cfg.ReplicationFactor = 3
		cfg.MaxInFlight = o.MaxInFlight
		return newBus(t, cfg), func() bustest.Bus { return newBus(t, cfg) }
	})
}

var _ bus.Pinger = (*kafka.Bus)(nil)
