package kafka_test

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/event"
)

func receiveOne(t *testing.T, c bus.Consumer) *bus.Message {
	t.Helper()
	select {
	case m, ok := <-c.Messages():
		if !ok {
			t.Fatal("Messages closed")
		}
		return m
	case <-time.After(15 * time.Second):
		t.Fatal("no message within 15s")
	}
	return nil
}

// TestRecordFromAnotherClientIsConsumedAndDecoded produces a CloudEvents
// binary-mode record with franz-go (a different Kafka client library), as
// an external auth core would, and checks that our consumer receives it and
// event.DecodeBinary reads it.
func TestRecordFromAnotherClientIsConsumedAndDecoded(t *testing.T) {
	cluster := newCluster(t)
	b := newBus(t, testConfig(cluster)) // creates the topics

	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := &kgo.Record{
		Topic: bus.NotificationsTopic,
		Key:   []byte("myorg"),
		Value: []byte(`{"organizationId":3,"organizationName":"myorg","sendTo":"+1234567890","messageBody":"Your one-time password for the myapp is 075052. This expires in 5 minutes."}`),
		Headers: []kgo.RecordHeader{
			{Key: "ce_specversion", Value: []byte("1.0")},
			{Key: "ce_id", Value: []byte("5f0a7c1e-6d2b-4f1e-9a57-2b3c4d5e6f70")},
			{Key: "ce_source", Value: []byte("https://auth.example.com/oauth2/token")},
			{Key: "ce_type", Value: []byte(event.SmsOtpEventURI)},
			{Key: "ce_time", Value: []byte("2022-08-05T20:40:32.884Z")},
			{Key: "ce_expirytime", Value: []byte("2022-08-05T20:45:32.884Z")},
			{Key: "content-type", Value: []byte("application/json")},
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatalf("franz-go produce: %v", err)
	}

	c, err := b.Subscribe(ctx, bus.NotificationsTopic, "router")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := receiveOne(t, c)
	m.Ack()
	if string(m.Key) != "myorg" || m.Headers["ce_type"] != event.SmsOtpEventURI || m.Headers["content-type"] != "application/json" {
		t.Fatalf("received key %q headers %v", m.Key, m.Headers)
	}
	ev, err := event.DecodeBinary(m.Key, m.Headers, m.Value)
	if err != nil {
		t.Fatalf("DecodeBinary: %v", err)
	}
	if ev.ID != "5f0a7c1e-6d2b-4f1e-9a57-2b3c4d5e6f70" || ev.OrganizationName != "myorg" || ev.SendTo != "+1234567890" ||
		ev.Issuer != "https://auth.example.com/oauth2/token" || !ev.ExpiresAt.Equal(time.Date(2022, 8, 5, 20, 45, 32, 884e6, time.UTC)) {
		t.Fatalf("decoded %+v", ev)
	}
}

// TestOurRecordsReadByAnotherClient publishes an event encoded with
// event.EncodeBinary and reads it back with franz-go: the headers and key
// are plain Kafka record fields any client sees.
func TestOurRecordsReadByAnotherClient(t *testing.T) {
	cluster := newCluster(t)
	b := newBus(t, testConfig(cluster))
	ev := &event.SmsOtpNotificationEvent{
		Issuer: "https://otphub.example.com", ID: "0b9e5d0c-7c1f-4c44-8f1e-1d2a3b4c5d6e",
		IssuedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), OrganizationID: 3, OrganizationName: "myorg",
		SendTo: "+1234567890", MessageBody: "Your code is 123456", ExpiresAt: time.Date(2026, 1, 2, 3, 9, 5, 0, time.UTC),
	}
	key, headers, value, err := event.EncodeBinary(ev)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := b.Publish(ctx, bus.NotificationsTopic, bus.Message{Key: key, Value: value, Headers: headers}); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics(bus.NotificationsTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatal("franz-go saw no record")
		}
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		r := recs[0]
		got := map[string]string{}
		for _, h := range r.Headers {
			got[h.Key] = string(h.Value)
		}
		if string(r.Key) != "myorg" || got["ce_specversion"] != "1.0" || got["ce_id"] != ev.ID || got["ce_type"] != event.SmsOtpEventURI ||
			got["ce_time"] == "" || got["ce_expirytime"] == "" || got["content-type"] != "application/json" {
			t.Fatalf("franz-go read key %q headers %v", r.Key, got)
		}
		return
	}
}

// TestKcatProducedRecord uses kcat (Debian package kcat) when installed.
func TestKcatProducedRecord(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed")
	}
	cluster := newCluster(t)
	b := newBus(t, testConfig(cluster))
	body := `{"organizationId":3,"organizationName":"myorg","sendTo":"+1234567890","messageBody":"code 1"}`
	cmd := exec.Command(kcat, "-P", "-b", cluster.ListenAddrs()[0], "-t", bus.NotificationsTopic, "-k", "myorg",
		"-H", "ce_specversion=1.0", "-H", "ce_id=11111111-2222-4333-8444-555555555555", "-H", "ce_source=https://kcat.example",
		"-H", "ce_type="+event.SmsOtpEventURI, "-H", "ce_time=2026-01-02T03:04:05Z", "-H", "content-type=application/json")
	cmd.Stdin = stringsReader(body + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat: %v: %s", err, out)
	}
	c, err := b.Subscribe(context.Background(), bus.NotificationsTopic, "router")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := receiveOne(t, c)
	m.Ack()
	if _, err := event.DecodeBinary(m.Key, m.Headers, m.Value); err != nil {
		t.Fatalf("DecodeBinary of kcat record: %v", err)
	}
}
