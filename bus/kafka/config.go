package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/otphub/otphub/bus"
)

// Config configures the Kafka adapter. Zero fields take the documented
// defaults; Validate reports what is wrong before anything connects.
type Config struct {
	// Brokers are the bootstrap addresses (host:port). Required.
	Brokers []string
	// ClientID identifies otphub to the brokers. Default "otphub".
	ClientID string
	// Topics are created at start-up when missing. Default
	// [bus.NotificationsTopic, bus.DeadLetterTopic].
	Topics []string
	// Partitions of topics created at start-up. Default 12. Existing topics
	// are left as they are.
	Partitions int
	// ReplicationFactor of topics created at start-up. Default 1 (the Helm
	// chart sets 3).
	ReplicationFactor int
	// MinInSyncReplicas is set as min.insync.replicas on topics created at
	// start-up, so that acks=all means at least this many copies. Default
	// 2 when ReplicationFactor >= 3, else 1 (then left to the broker).
	MinInSyncReplicas int
	// Retention is set as retention.ms on topics created at start-up, and
	// a 24th of it (at least a minute) as their segment.ms, so that no
	// record outlives it by much more than that. Records carry OTPs in
	// clear, so keep it as short as the longest dispatcher outage to
	// survive. 0 leaves the broker's defaults.
	Retention time.Duration
	// BatchTimeout bounds how long the writer waits to fill a batch before
	// sending it; it is added to every Publish latency. Default 5ms (never
	// kafka-go's 1s default).
	BatchTimeout time.Duration
	// BatchSize is the writer's target batch size in records. Default 100.
	BatchSize int
	// MaxInFlight bounds the delivered but unacknowledged messages of one
	// consumer (back-pressure). Default 1024.
	MaxInFlight int
	// DialTimeout bounds connection set-up (TCP, TLS, SASL). Default 10s.
	DialTimeout time.Duration

	// Consumer group timings; the defaults are Kafka's usual ones. Tests
	// shorten them.
	HeartbeatInterval time.Duration // default 3s
	SessionTimeout    time.Duration // default 30s
	RebalanceTimeout  time.Duration // default 30s
	JoinGroupBackoff  time.Duration // default 1s
	// MaxWait is how long a fetch waits on the broker for new records.
	// Default 500ms.
	MaxWait time.Duration

	TLS  TLSConfig
	SASL SASLConfig

	// Logger receives kafka-go's error log at Warn and its chatter at
	// Debug. Default: discarded.
	Logger *slog.Logger
}

// TLSConfig enables TLS to the brokers. TLS is on when Enabled or
// InsecureSkipVerify is set, a CA or certificate file is given, or Config
// is non-nil.
type TLSConfig struct {
	Enabled bool
	// Config is used as is when set (the file fields are then ignored).
	Config *tls.Config
	// CAFile is a PEM bundle of CAs to trust instead of the system pool.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and key for mTLS.
	CertFile string
	KeyFile  string
	// InsecureSkipVerify disables broker certificate verification. Never
	// in production. Default false.
	InsecureSkipVerify bool
}

// SASLConfig enables SASL authentication when Mechanism is set.
type SASLConfig struct {
	// Mechanism is "plain", "scram-sha-256" or "scram-sha-512".
	Mechanism string
	Username  string
	Password  string
}

// Defaults of Config the server's settings take too (package config's
// --kafka-client-id, --kafka-partitions, --kafka-replication-factor,
// --kafka-session-timeout).
const (
	DefaultClientID          = "otphub"
	DefaultPartitions        = 12
	DefaultReplicationFactor = 1
	DefaultSessionTimeout    = 30 * time.Second
)

func (c *Config) applyDefaults() {
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	if len(c.Topics) == 0 {
		c.Topics = []string{bus.NotificationsTopic, bus.DeadLetterTopic}
	}
	if c.Partitions <= 0 {
		c.Partitions = DefaultPartitions
	}
	if c.ReplicationFactor <= 0 {
		c.ReplicationFactor = DefaultReplicationFactor
	}
	if c.MinInSyncReplicas <= 0 {
		c.MinInSyncReplicas = 1
		if c.ReplicationFactor >= 3 {
			c.MinInSyncReplicas = 2
		}
	}
	if c.BatchTimeout <= 0 {
		c.BatchTimeout = 5 * time.Millisecond
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 100
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 1024
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 3 * time.Second
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.RebalanceTimeout <= 0 {
		c.RebalanceTimeout = 30 * time.Second
	}
	if c.JoinGroupBackoff <= 0 {
		c.JoinGroupBackoff = time.Second
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 500 * time.Millisecond
	}
}

// Validate reports configuration errors.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("kafka: at least one broker address is required"))
	}
	for _, b := range c.Brokers {
		if !strings.Contains(b, ":") {
			errs = append(errs, fmt.Errorf("kafka: broker %q: want host:port", b))
		}
	}
	if c.HeartbeatInterval > 0 && c.SessionTimeout > 0 && c.HeartbeatInterval >= c.SessionTimeout {
		errs = append(errs, errors.New("kafka: HeartbeatInterval must be shorter than SessionTimeout"))
	}
	switch strings.ToLower(c.SASL.Mechanism) {
	case "":
	case "plain", "scram-sha-256", "scram-sha-512":
		if c.SASL.Username == "" {
			errs = append(errs, errors.New("kafka: SASL username is required"))
		}
	default:
		errs = append(errs, fmt.Errorf("kafka: SASL mechanism %q: want plain, scram-sha-256 or scram-sha-512", c.SASL.Mechanism))
	}
	if c.ReplicationFactor > 0 && c.MinInSyncReplicas > c.ReplicationFactor {
		errs = append(errs, errors.New("kafka: MinInSyncReplicas exceeds ReplicationFactor; every publish would fail"))
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("kafka: TLS cert file and key file go together"))
	}
	return errors.Join(errs...)
}

func (c TLSConfig) build() (*tls.Config, error) {
	if c.Config != nil {
		return c.Config, nil
	}
	if !c.Enabled && c.CAFile == "" && c.CertFile == "" && !c.InsecureSkipVerify {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka: TLS CA file %s holds no PEM certificate", c.CAFile)
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (c SASLConfig) build() (sasl.Mechanism, error) {
	switch strings.ToLower(c.Mechanism) {
	case "":
		return nil, nil
	case "plain":
		return plain.Mechanism{Username: c.Username, Password: c.Password}, nil
	case "scram-sha-256":
		return scram.Mechanism(scram.SHA256, c.Username, c.Password)
	case "scram-sha-512":
		return scram.Mechanism(scram.SHA512, c.Username, c.Password)
	}
	return nil, fmt.Errorf("kafka: SASL mechanism %q not supported", c.Mechanism)
}

// logger adapts kafka-go's printf loggers to slog.
func logger(l *slog.Logger, level slog.Level) kafkago.LoggerFunc {
	return func(format string, args ...any) {
		l.Log(context.Background(), level, "kafka-go: "+strings.TrimSpace(fmt.Sprintf(format, args...)))
	}
}
