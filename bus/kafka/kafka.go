// Package kafka is the bus adapter for Apache Kafka (and Kafka-protocol
// brokers), built on github.com/segmentio/kafka-go. Publishing waits for
// every in-sync replica (RequiredAcks=all) and partitions by a hash of the
// key, so records of one org keep their order. Consuming uses one
// kafka-go group Reader per consumer with FetchMessage and commits only
// the contiguous acknowledged prefix of each partition. docs/log.md
// explains the settings.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/otphub/otphub/bus"
)

// Bus publishes to and consumes from a Kafka cluster. It implements
// bus.Publisher, bus.Subscriber and bus.Pinger.
type Bus struct {
	cfg       Config
	log       *slog.Logger
	transport *kafkago.Transport
	client    *kafkago.Client
	dialer    *kafkago.Dialer
	writer    *kafkago.Writer

	closed    atomic.Bool
	closeOnce sync.Once
	mu        sync.Mutex
	consumers map[*consumer]struct{}
}

var (
	_ bus.Publisher  = (*Bus)(nil)
	_ bus.Subscriber = (*Bus)(nil)
	_ bus.Pinger     = (*Bus)(nil)
)

// New validates cfg, connects, and creates the configured topics that do
// not exist yet. It fails when the cluster cannot be reached within ctx.
func New(ctx context.Context, cfg Config) (*Bus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.applyDefaults()
	tlsCfg, err := cfg.TLS.build()
	if err != nil {
		return nil, err
	}
	mech, err := cfg.SASL.build()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	b := &Bus{cfg: cfg, log: log, consumers: map[*consumer]struct{}{}}
	b.transport = &kafkago.Transport{
		Dial:        (&net.Dialer{Timeout: cfg.DialTimeout}).DialContext,
		DialTimeout: cfg.DialTimeout,
		ClientID:    cfg.ClientID,
		TLS:         tlsCfg,
		SASL:        mech,
		MetadataTTL: 5 * time.Second,
	}
	b.client = &kafkago.Client{Addr: kafkago.TCP(cfg.Brokers...), Transport: b.transport, Timeout: cfg.DialTimeout}
	b.dialer = &kafkago.Dialer{ClientID: cfg.ClientID, Timeout: cfg.DialTimeout, DualStack: true, TLS: tlsCfg, SASLMechanism: mech}
	b.writer = &kafkago.Writer{
		Addr: kafkago.TCP(cfg.Brokers...),
		// murmur2, as the Java client and librdkafka's murmur2_random: records
		// keyed by an org land on the same partition whichever of them produced
		// them, so per-org order holds across producers (docs/log.md).
		Balancer:               kafkago.Murmur2Balancer{},
		RequiredAcks:           kafkago.RequireAll,
		BatchTimeout:           cfg.BatchTimeout,
		BatchSize:              cfg.BatchSize,
		AllowAutoTopicCreation: false,
		Transport:              b.transport,
		ErrorLogger:            logger(log, slog.LevelWarn),
	}
	if err := b.ensureTopics(ctx); err != nil {
		b.transport.CloseIdleConnections()
		return nil, err
	}
	return b, nil
}

// ensureTopics creates the configured topics that the cluster lacks.
func (b *Bus) ensureTopics(ctx context.Context) error {
	md, err := b.client.Metadata(ctx, &kafkago.MetadataRequest{Topics: b.cfg.Topics})
	if err != nil {
		return fmt.Errorf("kafka: metadata: %w", err)
	}
	var missing []kafkago.TopicConfig
	for _, name := range b.cfg.Topics {
		exists := false
		for _, t := range md.Topics {
			if t.Name == name && t.Error == nil {
				exists = true
			}
		}
		if !exists {
			tc := kafkago.TopicConfig{Topic: name, NumPartitions: b.cfg.Partitions, ReplicationFactor: b.cfg.ReplicationFactor}
			if b.cfg.MinInSyncReplicas > 1 {
				tc.ConfigEntries = append(tc.ConfigEntries, kafkago.ConfigEntry{ConfigName: "min.insync.replicas", ConfigValue: strconv.Itoa(b.cfg.MinInSyncReplicas)})
			}
			if b.cfg.Retention > 0 {
				// Kafka deletes whole segments once their newest record is
				// older than retention.ms, and rolls the active one only at
				// segment.ms (default 7 days): without it a busy partition
				// would keep records about a week past the retention.
				roll := max(b.cfg.Retention/24, time.Minute)
				tc.ConfigEntries = append(tc.ConfigEntries,
					kafkago.ConfigEntry{ConfigName: "retention.ms", ConfigValue: strconv.FormatInt(b.cfg.Retention.Milliseconds(), 10)},
					kafkago.ConfigEntry{ConfigName: "segment.ms", ConfigValue: strconv.FormatInt(roll.Milliseconds(), 10)})
			}
			missing = append(missing, tc)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	res, err := b.client.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: missing})
	if err != nil {
		return fmt.Errorf("kafka: create topics: %w", err)
	}
	var errs []error
	for name, terr := range res.Errors {
		if terr != nil && !errors.Is(terr, kafkago.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("kafka: create topic %s: %w", name, terr))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, t := range missing {
		b.log.Info("kafka: created topic", "topic", t.Topic, "partitions", t.NumPartitions, "replication_factor", t.ReplicationFactor)
	}
	return nil
}

// Publish writes msgs and returns once every in-sync replica has them.
// Records with the same key go to the same partition (murmur2, see New),
// so they keep their order. Each record's timestamp is the time of the
// call: consumers measure how long records waited in the log with it.
func (b *Bus) Publish(ctx context.Context, topic string, msgs ...bus.Message) error {
	if b.closed.Load() {
		return bus.ErrClosed
	}
	if len(msgs) == 0 {
		return nil
	}
	out := make([]kafkago.Message, len(msgs))
	now := time.Now()
	for i, m := range msgs {
		out[i] = kafkago.Message{Topic: topic, Key: m.Key, Value: m.Value, Headers: toHeaders(m.Headers), Time: now}
	}
	if err := b.writer.WriteMessages(ctx, out...); err != nil {
		if b.closed.Load() || errors.Is(err, io.ErrClosedPipe) {
			return bus.ErrClosed
		}
		return fmt.Errorf("kafka: publish to %s: %w", topic, err)
	}
	return nil
}

func toHeaders(h map[string]string) []kafkago.Header {
	if len(h) == 0 {
		return nil
	}
	out := make([]kafkago.Header, 0, len(h))
	for k, v := range h {
		out = append(out, kafkago.Header{Key: k, Value: []byte(v)})
	}
	slices.SortFunc(out, func(a, b kafkago.Header) int {
		switch {
		case a.Key < b.Key:
			return -1
		case a.Key > b.Key:
			return 1
		}
		return 0
	})
	return out
}

func fromHeaders(h []kafkago.Header) map[string]string {
	if len(h) == 0 {
		return nil
	}
	out := make(map[string]string, len(h))
	for _, x := range h {
		out[x.Key] = string(x.Value) // a repeated header keeps its last value
	}
	return out
}

// Ping dials a broker on a fresh connection (TCP, TLS and SASL as
// configured) and sends a metadata request for the configured topics. It
// bypasses the client's metadata cache, so it fails as soon as no broker
// answers.
func (b *Bus) Ping(ctx context.Context) error {
	if b.closed.Load() {
		return bus.ErrClosed
	}
	var errs []error
	for _, addr := range b.cfg.Brokers {
		err := b.pingBroker(ctx, addr)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("kafka: ping: %w", errors.Join(errs...))
}

func (b *Bus) pingBroker(ctx context.Context, addr string) error {
	conn, err := b.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline := time.Now().Add(b.cfg.DialTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	conn.SetDeadline(deadline)
	parts, err := conn.ReadPartitions(b.cfg.Topics...)
	if err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	for _, p := range parts {
		if p.Error != nil {
			return fmt.Errorf("%s: topic %s partition %d: %w", addr, p.Topic, p.ID, p.Error)
		}
	}
	return nil
}

// Close closes every consumer (committing their acknowledged prefixes),
// flushes the writer and releases connections. Publish and Subscribe after
// Close return bus.ErrClosed.
func (b *Bus) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed.Store(true)
		cs := make([]*consumer, 0, len(b.consumers))
		for c := range b.consumers {
			cs = append(cs, c)
		}
		b.mu.Unlock()
		var errs []error
		for _, c := range cs {
			errs = append(errs, c.Close())
		}
		errs = append(errs, b.writer.Close())
		b.transport.CloseIdleConnections()
		err = errors.Join(errs...)
	})
	return err
}
