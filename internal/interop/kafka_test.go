package interop

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/event"
)

// TestKafkaProducersInOtherLanguages runs otphub in Kafka mode (a
// Kafka-protocol broker, kfake) and produces records as outside producers
// do: kcat (librdkafka, partitioner=murmur2_random) and franz-go (the Java
// client's partitioner), with ids that are not UUIDs, no ce_time, and one
// id reused by two producers. Every record is delivered; one that cannot
// be decoded is dead-lettered and counted.
func TestKafkaProducersInOtherLanguages(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	o := start(t, "--kafka-brokers", strings.Join(cluster.ListenAddrs(), ","))
	const org = "kafkaorg"
	orgID, c, admin := o.org(org, "subscribe")
	rcv := newReceiver(t)
	o.subscribe(o.token(c.ClientID, c.ClientSecret), url.Values{"hub.mode": {"subscribe"}, "hub.topic": {org + "-NOTIFICATIONS"},
		"hub.callback": {rcv.URL + "/hook"}})
	o.waitActive(org, admin, 1)

	value := func(mobile string) string {
		return fmt.Sprintf(`{"organizationId":%d,"organizationName":%q,"sendTo":%q,"messageBody":"Your code is 075052"}`, orgID, org, mobile)
	}
	want := map[string]string{} // sendTo → source
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	produce := func(source, id, mobile string, extra ...kgo.RecordHeader) {
		rec := &kgo.Record{Topic: bus.NotificationsTopic, Key: []byte(org), Value: []byte(value(mobile)), Headers: append([]kgo.RecordHeader{
			{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_id", Value: []byte(id)}, {Key: "ce_source", Value: []byte(source)},
			{Key: "ce_type", Value: []byte(event.SmsOtpEventURI)}, {Key: "content-type", Value: []byte("application/json")}}, extra...)}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
		want[mobile] = source
	}
	produce("urn:producer:java", "ext-0001", "+94770000011")
	produce("urn:producer:other", "ext-0001", "+94770000012")
	produce("urn:producer:java", "9f1c2f4e7d3a4b8e9a610c5d2e7f8a90", "+94770000013",
		kgo.RecordHeader{Key: "ce_time", Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))})
	if kcat, err := exec.LookPath("kcat"); err == nil {
		cmd := exec.Command(kcat, "-P", "-b", cluster.ListenAddrs()[0], "-t", bus.NotificationsTopic, "-X", "partitioner=murmur2_random",
			"-k", org, "-H", "ce_specversion=1.0", "-H", "ce_id=urn:uuid:9f1c2f4e-7d3a-4b8e-9a61-0c5d2e7f8a90",
			"-H", "ce_source=https://librdkafka.example", "-H", "ce_type="+event.SmsOtpEventURI, "-H", "content-type=application/json")
		cmd.Stdin = strings.NewReader(value("+94770000014") + "\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kcat: %v: %s", err, out)
		}
		want["+94770000014"] = "https://librdkafka.example"
	} else {
		t.Log("kcat not installed: librdkafka's producer not checked")
	}
	// And one no decoder accepts (no ce_type).
	bad := &kgo.Record{Topic: bus.NotificationsTopic, Key: []byte(org), Value: []byte(value("+94770000019")),
		Headers: []kgo.RecordHeader{{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_id", Value: []byte("bad")}}}
	if err := cl.ProduceSync(ctx, bad).FirstErr(); err != nil {
		t.Fatal(err)
	}

	for len(want) > 0 {
		d := rcv.next(t)
		ev, err := event.UnmarshalAsgardeo(d.body)
		if err != nil {
			t.Fatalf("delivered %s: %v", d.body, err)
		}
		src, ok := want[ev.SendTo]
		if !ok || ev.Issuer != src {
			t.Fatalf("unexpected delivery %+v (left: %v)", ev, want)
		}
		delete(want, ev.SendTo)
	}
	eventually(t, "the undecodable record to be counted", func() bool {
		mfs, _ := o.srv.Registry.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "otphub_log_records_dead_lettered_total" {
				return mf.GetMetric()[0].GetCounter().GetValue() == 1
			}
		}
		return false
	})
}
