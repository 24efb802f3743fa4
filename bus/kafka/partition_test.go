package kafka_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/otphub/otphub/bus"
)

// TestPartitionerAgreesWithOtherClients: a record keyed by an org lands
// on the same partition whether otphub, a Java-compatible client (franz-go's
// default partitioner hashes keys with murmur2 exactly as the Java client
// does) or librdkafka (kcat with partitioner=murmur2_random, what Java
// interop asks of librdkafka users) produced it, so per-org order holds
// across producers.
func TestPartitionerAgreesWithOtherClients(t *testing.T) {
	cluster := newCluster(t)
	cfg := testConfig(cluster)
	cfg.Partitions = 12
	b := newBus(t, cfg)
	keys := []string{"acme", "myorg", "a", "org-with-a-longer-name-1", "zz9"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, k := range keys {
		if err := b.Publish(ctx, bus.NotificationsTopic, bus.Message{Key: []byte(k), Value: []byte("otphub"), Headers: map[string]string{"producer": "otphub"}}); err != nil {
			t.Fatal(err)
		}
	}
	java, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...)) // default: murmur2 like Java
	if err != nil {
		t.Fatal(err)
	}
	defer java.Close()
	for _, k := range keys {
		rec := &kgo.Record{Topic: bus.NotificationsTopic, Key: []byte(k), Value: []byte("java"),
			Headers: []kgo.RecordHeader{{Key: "producer", Value: []byte("java")}}}
		if err := java.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	producers := []string{"otphub", "java"}
	if kcat, err := exec.LookPath("kcat"); err == nil {
		producers = append(producers, "librdkafka")
		for _, k := range keys {
			cmd := exec.Command(kcat, "-P", "-b", cluster.ListenAddrs()[0], "-t", bus.NotificationsTopic,
				"-X", "partitioner=murmur2_random", "-k", k, "-H", "producer=librdkafka")
			cmd.Stdin = strings.NewReader("librdkafka\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("kcat: %v: %s", err, out)
			}
		}
	} else {
		t.Log("kcat not installed: checked against the Java-compatible partitioner only")
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics(bus.NotificationsTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]map[string]int32{} // key → producer → partition
	want := len(keys) * len(producers)
	for n := 0; n < want; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records: %v", n, want, got)
		}
		for _, r := range fs.Records() {
			producer := ""
			for _, h := range r.Headers {
				if h.Key == "producer" {
					producer = string(h.Value)
				}
			}
			if got[string(r.Key)] == nil {
				got[string(r.Key)] = map[string]int32{}
			}
			got[string(r.Key)][producer] = r.Partition
			n++
		}
	}
	spread := map[int32]bool{}
	for _, k := range keys {
		p := got[k]
		for _, producer := range producers {
			if _, ok := p[producer]; !ok {
				t.Fatalf("no record of %s for key %q", producer, k)
			}
			if p[producer] != p["otphub"] {
				t.Errorf("key %q: partitions by producer %v; want all equal", k, p)
			}
		}
		spread[p["otphub"]] = true
	}
	// murmur2("acme") & 0x7fffffff % 12, as the Java client computes it
	// (docs/log.md quotes it).
	if p := got["acme"]["otphub"]; p != 0 {
		t.Errorf(`"acme" on partition %d of 12, want 0 (murmur2; FNV-1a gave 7, CRC32 gives 2)`, p)
	}
	if len(spread) < 2 {
		t.Errorf("every key on one partition: %v", fmt.Sprint(got))
	}
}
