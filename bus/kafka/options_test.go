package kafka_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/bus/kafka"
)

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

// roundTrip publishes one record and reads it back through b.
func roundTrip(t *testing.T, b *kafka.Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := b.Publish(ctx, bus.NotificationsTopic, bus.Message{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	c, err := b.Subscribe(ctx, bus.NotificationsTopic, "g")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := receiveOne(t, c)
	m.Ack()
	if string(m.Value) != "v" {
		t.Fatalf("value %q", m.Value)
	}
}

func TestCreatesMissingTopicsAndKeepsExistingOnes(t *testing.T) {
	cluster := newCluster(t, kfake.SeedTopics(2, bus.DeadLetterTopic))
	cfg := testConfig(cluster)
	cfg.Partitions = 6
	b := newBus(t, cfg)
	if got := len(cluster.PartitionInfos(bus.NotificationsTopic)); got != 6 {
		t.Fatalf("%s has %d partitions, want 6", bus.NotificationsTopic, got)
	}
	if got := len(cluster.PartitionInfos(bus.DeadLetterTopic)); got != 2 {
		t.Fatalf("existing %s has %d partitions, want its own 2", bus.DeadLetterTopic, got)
	}
	if err := b.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	b2 := newBus(t, cfg) // second start-up: topics exist, nothing to do
	b2.Close()
	// Publishing to a topic that does not exist fails: no auto-creation.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := b.Publish(ctx, "no.such.topic", bus.Message{Value: []byte("x")}); err == nil {
		t.Fatal("Publish to a missing topic succeeded")
	}
}

func TestReplicatedTopicsGetMinInSyncReplicas(t *testing.T) {
	cluster := newCluster(t, kfake.NumBrokers(3))
	cfg := testConfig(cluster)
	cfg.ReplicationFactor = 3
	b := newBus(t, cfg)
	info := cluster.TopicInfo(bus.NotificationsTopic)
	if info == nil || info.NumReplicas != 3 {
		t.Fatalf("topic info %+v, want 3 replicas", info)
	}
	if v := info.Configs["min.insync.replicas"]; v == nil || *v != "2" {
		t.Fatalf("min.insync.replicas = %v, want 2", v)
	}
	roundTrip(t, b)
}

func TestCreatedTopicsGetRetention(t *testing.T) {
	cluster := newCluster(t)
	cfg := testConfig(cluster)
	cfg.Retention = 6 * time.Hour
	newBus(t, cfg)
	for _, topic := range []string{bus.NotificationsTopic, bus.DeadLetterTopic} {
		info := cluster.TopicInfo(topic)
		if info == nil {
			t.Fatalf("%s was not created", topic)
		}
		if v := info.Configs["retention.ms"]; v == nil || *v != "21600000" {
			t.Fatalf("%s retention.ms = %v, want 21600000", topic, v)
		}
		// A 24th of the retention: the active segment is rolled, and so
		// deletable, long before Kafka's 7-day default.
		if v := info.Configs["segment.ms"]; v == nil || *v != "900000" {
			t.Fatalf("%s segment.ms = %v, want 900000", topic, v)
		}
	}
}

func TestPingFailsWhenClusterIsGone(t *testing.T) {
	cluster := newCluster(t)
	b := newBus(t, testConfig(cluster))
	cluster.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := b.Ping(ctx); err == nil {
		t.Fatal("Ping succeeded with the cluster closed")
	}
}

func TestNewFailsWithoutCluster(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens here now
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := kafka.New(ctx, kafka.Config{Brokers: []string{addr}}); err == nil {
		t.Fatal("New succeeded without a broker")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  kafka.Config
		want string
	}{
		{kafka.Config{}, "broker"},
		{kafka.Config{Brokers: []string{"localhost"}}, "host:port"},
		{kafka.Config{Brokers: []string{"b:9092"}, SASL: kafka.SASLConfig{Mechanism: "gssapi"}}, "SASL mechanism"},
		{kafka.Config{Brokers: []string{"b:9092"}, SASL: kafka.SASLConfig{Mechanism: "plain"}}, "username"},
		{kafka.Config{Brokers: []string{"b:9092"}, TLS: kafka.TLSConfig{CertFile: "c.pem"}}, "key file"},
		{kafka.Config{Brokers: []string{"b:9092"}, HeartbeatInterval: time.Minute, SessionTimeout: time.Second}, "HeartbeatInterval"},
		{kafka.Config{Brokers: []string{"b:9092"}, ReplicationFactor: 1, MinInSyncReplicas: 2}, "MinInSyncReplicas"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want mention of %q", tc.cfg, err, tc.want)
		}
		if _, err := kafka.New(context.Background(), tc.cfg); err == nil {
			t.Errorf("New(%+v) succeeded", tc.cfg)
		}
	}
	if err := (kafka.Config{Brokers: []string{"b:9092"}, SASL: kafka.SASLConfig{Mechanism: "SCRAM-SHA-512", Username: "u"}}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func TestSASL(t *testing.T) {
	for _, mech := range []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(mech, func(t *testing.T) {
			cluster := newCluster(t, kfake.EnableSASL(), kfake.Superuser(mech, "otphub", "s3cret"))
			cfg := testConfig(cluster)
			cfg.SASL = kafka.SASLConfig{Mechanism: strings.ToLower(mech), Username: "otphub", Password: "s3cret"}
			roundTrip(t, newBus(t, cfg))

			cfg.SASL.Password = "wrong"
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if b, err := kafka.New(ctx, cfg); err == nil {
				b.Close()
				t.Fatal("New succeeded with a wrong password")
			}
		})
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, serverCert := selfSigned(t, dir)
	cluster := newCluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}))
	cfg := testConfig(cluster)
	cfg.TLS = kafka.TLSConfig{CAFile: caFile}
	roundTrip(t, newBus(t, cfg))

	// Without our CA the broker's certificate is refused.
	cfg.TLS = kafka.TLSConfig{Enabled: true}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if b, err := kafka.New(ctx, cfg); err == nil {
		b.Close()
		t.Fatal("New trusted an unknown CA")
	}
	// A CA file that is not PEM is reported before connecting.
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not pem"), 0o600)
	cfg.TLS = kafka.TLSConfig{CAFile: bad}
	if _, err := kafka.New(ctx, cfg); err == nil || !strings.Contains(err.Error(), "PEM") {
		t.Fatalf("bad CA file: %v", err)
	}
}

// selfSigned writes a self-signed CA certificate for 127.0.0.1 to dir and
// returns its path and the key pair for the broker.
func selfSigned(t *testing.T, dir string) (string, tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kfake"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
