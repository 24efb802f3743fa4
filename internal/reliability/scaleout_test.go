package reliability_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/otphub/otphub/bus"
)

// postgresURL is the test PostgreSQL (make test needs it; .ci/postgres.sh
// starts one).
func postgresURL() string {
	if u := os.Getenv("OTPHUB_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// freshSchema creates a schema dropped in t.Cleanup and returns a URL whose
// search_path selects it.
func freshSchema(t *testing.T) string {
	t.Helper()
	db, err := sql.Open("pgx", postgresURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	schema := "otphub_reliability_" + randomHex(6)
	if _, err := db.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatalf("PostgreSQL at %s: create schema: %v", postgresURL(), err)
	}
	// Registered after db.Close, so it runs before it, and after the
	// processes' kill (registered later still).
	t.Cleanup(func() {
		if _, err := db.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(postgresURL())
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestScaleOutKafkaPostgres runs two otphub processes (the real binary)
// sharing a Kafka-protocol broker (kfake, in this test process) and one
// PostgreSQL schema, publishes through both under load while the
// subscriber refuses every fourth first delivery, kills one with SIGKILL
// mid-load, keeps publishing through the survivor, and checks that every
// acknowledged event reaches the subscriber at least once. The killed
// member's partitions move to the survivor when its group session
// (--kafka-session-timeout, 6 s here) lapses; its leased retry tasks when
// their leases (30 s) do. The soak form
// restarts the killed process and kills the other one, for several rounds.
func TestScaleOutKafkaPostgres(t *testing.T) {
	if !soak {
		t.Parallel() // mostly waiting (leases, group sessions): overlaps the other long test
	}
	var (
		rounds      = pick(1, 4)
		perRound    = pick(int64(400), int64(4000))
		afterKill   = pick(int64(200), int64(2000))
		publishers  = 8
		rate        = pick(0, soakRate()) // see TestCrashEmbeddedKill9
		deliverWait = pick(3*time.Minute, 10*time.Minute)
	)
	otphubBinary(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	dbURL := freshSchema(t)
	began := time.Now()

	addrs := []string{freeAddr(t), freeAddr(t)}
	for i := 0; addrs[1] == addrs[0] && i < 10; i++ {
		addrs[1] = freeAddr(t)
	}
	// One public URL for both, as behind a load balancer: topic URLs and
	// the token issuer are the same whichever process serves a request.
	publicURL := "http://" + addrs[0]
	adminID, adminSecret := "admin-reliability", "reliability-admin-secret-"+randomHex(8)
	args := []string{
		"--public-url", publicURL,
		"--kafka-brokers", strings.Join(cluster.ListenAddrs(), ","), "--kafka-partitions", "6", "--kafka-session-timeout", "6s",
		"--log-retention", "6h",
		"--database-url", dbURL, "--encryption-key", randomHex(32),
		"--admin-client-id", adminID, "--admin-client-secret", adminSecret,
		"--egress-allow-cidrs", "127.0.0.0/8",
	}
	start := func(i, gen int) *proc {
		return startProc(t, fmt.Sprintf("otphub-%c#%d", 'A'+i, gen), addrs[i], append([]string{"--data-dir", t.TempDir()}, args...)...)
	}
	procs := []*proc{start(0, 1), start(1, 1)}
	// The topics otphub created keep events (OTPs in clear) for --log-retention only.
	if info := cluster.TopicInfo(bus.NotificationsTopic); info == nil || info.Configs["retention.ms"] == nil || *info.Configs["retention.ms"] != "21600000" {
		t.Fatalf("%s was not created with retention.ms 21600000 (--log-retention 6h): %+v", bus.NotificationsTopic, info)
	}
	if info := cluster.TopicInfo(bus.NotificationsTopic); info.Configs["segment.ms"] == nil || *info.Configs["segment.ms"] != "900000" {
		t.Fatalf("%s was not created with segment.ms 900000 (a 24th of --log-retention 6h): %+v", bus.NotificationsTopic, info)
	}
	clients := []*client{newClient(procs[0].URL), newClient(procs[1].URL)}
	tn := setupTenant(t, clients[0], adminID, adminSecret, "scale", "publish", "subscribe", "admin")

	var failing atomic.Bool
	rcv := newReceiver(t, func(_ string, nth int, seq int64) int {
		if failing.Load() && nth == 1 && seq%4 == 0 {
			return 503
		}
		return 204
	})
	subscribe(t, clients[1], publicURL, tn, rcv.URL+"/cb")
	pub := newPublisher(publicURL, tn)

	failing.Store(true)
	for round := 1; round <= rounds; round++ {
		victim := (round - 1) % 2
		target, refused := pub.n.Load()+perRound, rcv.refused.Load()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { pub.runPaced(ctx, publishers, rate, clients...); close(done) }()
		waitFor(t, 2*time.Minute, "load through both processes", func() bool {
			return pub.n.Load() >= target && rcv.refused.Load() >= refused+5
		})
		procs[victim].kill9()
		t.Logf("round %d: SIGKILL of %s after %d acknowledged publishes", round, procs[victim].name, pub.n.Load())
		// The publishers through the dead process fail; those through the
		// survivor go on.
		target = pub.n.Load() + afterKill
		waitFor(t, 2*time.Minute, "load through the survivor", func() bool { return pub.n.Load() >= target })
		cancel()
		<-done
		if round < rounds {
			procs[victim] = start(victim, round+1)
		}
	}
	failing.Store(false)

	acked := pub.ackedIDs()
	loadDone := time.Now()
	waitDelivered(t, rcv, acked, deliverWait, deliveryDiag(t, clients[rounds%2], tn)) // the last survivor
	t.Logf("all acknowledged events delivered %v after the load ended", time.Since(loadDone).Round(100*time.Millisecond))
	distinct, dups, unacked := rcv.tally(acked)
	t.Logf("scale-out kill -9 (Kafka + PostgreSQL, 2 processes): %d rounds, %d acknowledged events all delivered; %d distinct received (%d unacknowledged), "+
		"%d duplicates (%.2f%% of acknowledged), %d deliveries refused with 503, %d publishes failed; %v",
		rounds, len(acked), distinct, unacked, dups, 100*float64(dups)/float64(len(acked)),
		rcv.refused.Load(), pub.failed.Load(), time.Since(began).Round(100*time.Millisecond))
}
