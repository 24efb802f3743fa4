package embedded_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/bus/embedded"
)

// BenchmarkEmbeddedPublish measures durable publishes (each returns after
// fsync). "serial" pays one fsync per record; "parallel" runs 64 publishers
// whose records share fsyncs (group commit), so its ns/op is far lower on
// the same disk. cpu-µs/op is the process's CPU (user and system, the
// fsync's included) per publish.
func BenchmarkEmbeddedPublish(b *testing.B) {
	value := []byte(`{"organizationId":3,"organizationName":"myorg","sendTo":"+1234567890","messageBody":"Your one-time password is 075052."}`)
	headers := map[string]string{"ce_specversion": "1.0", "ce_type": "urn:ietf:params:notifications:smsOtp", "content-type": "application/json"}
	open := func(b *testing.B) *embedded.Log {
		l, err := embedded.Open(b.TempDir(), embedded.Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
		return l
	}
	b.Run("serial", func(b *testing.B) {
		l := open(b)
		b.ReportAllocs()
		cpu0 := cpuTime()
		for i := 0; b.Loop(); i++ {
			m := bus.Message{Key: []byte("org-" + strconv.Itoa(i%64)), Value: value, Headers: headers}
			if err := l.Publish(context.Background(), bus.NotificationsTopic, m); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	})
	b.Run("parallel", func(b *testing.B) {
		l := open(b)
		var n atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(32) // 32×GOMAXPROCS concurrent publishers
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				i := n.Add(1)
				m := bus.Message{Key: []byte("org-" + strconv.FormatInt(i%64, 10)), Value: value, Headers: headers}
				if err := l.Publish(context.Background(), bus.NotificationsTopic, m); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// cpuTime is the CPU time (user+system) this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
