package kafka_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/otphub/otphub/bus"
)

// BenchmarkKafkaPublish measures Publish against an in-process kfake broker
// over loopback TCP with RequiredAcks=all and a 5ms BatchTimeout. "serial"
// shows the per-call latency floor (about one BatchTimeout); "parallel"
// shows that concurrent publishers share batches.
func BenchmarkKafkaPublish(b *testing.B) {
	value := []byte(`{"organizationId":3,"organizationName":"myorg","sendTo":"+1234567890","messageBody":"Your one-time password is 075052."}`)
	headers := map[string]string{"ce_specversion": "1.0", "ce_type": "urn:ietf:params:notifications:smsOtp", "content-type": "application/json"}
	for _, mode := range []string{"serial", "parallel"} {
		b.Run(mode, func(b *testing.B) {
			cluster := newCluster(b)
			bu := newBus(b, testConfig(cluster))
			var n atomic.Int64
			publish := func() error {
				i := n.Add(1)
				m := bus.Message{Key: []byte("org-" + strconv.FormatInt(i%64, 10)), Value: value, Headers: headers}
				return bu.Publish(context.Background(), bus.NotificationsTopic, m)
			}
			b.ReportAllocs()
			if mode == "serial" {
				for b.Loop() {
					if err := publish(); err != nil {
						b.Fatal(err)
					}
				}
				return
			}
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := publish(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
