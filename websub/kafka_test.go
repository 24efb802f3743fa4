package websub_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/otphub/otphub/access"
	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/bus/kafka"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/websub"
)

// TestPublishIntoKafka: in the Kafka mode, a 202 from POST /hub publish
// means the record is in Kafka, where another client library (franz-go)
// reads it as a binary-mode CloudEvent keyed by org.
func TestPublishIntoKafka(t *testing.T) {
	t.Parallel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kb, err := kafka.New(ctx, kafka.Config{Brokers: cluster.ListenAddrs(), Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kb.Close() })

	e := newEnv(t)
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	hub, err := websub.New(websub.Config{PublicURL: e.base}, e.st, kb, e.eg, e.iss, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	hub.Register(mux, e.iss)

	org := e.org("kafkaorg")
	tok := e.token(org, access.ScopePublish)
	ev, body := eventFor(t, org)
	q := url.Values{"hub.mode": {"publish"}, "hub.topic": {e.topic(org.Name)}}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/hub?"+q.Encode(), strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish: %d", resp.StatusCode)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics(bus.NotificationsTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("franz-go read no record")
		}
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		r := recs[0]
		headers := map[string]string{}
		for _, h := range r.Headers {
			headers[h.Key] = string(h.Value)
		}
		if string(r.Key) != org.Name || headers["ce_id"] != ev.ID || headers["ce_specversion"] != "1.0" {
			t.Fatalf("record key %q headers %v", r.Key, headers)
		}
		got, err := event.DecodeBinary(r.Key, headers, r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != ev.ID || got.SendTo != ev.SendTo || got.OrganizationID != org.ID {
			t.Fatalf("decoded %+v", got)
		}
		return
	}
}
