// Package bus owns the durable log port: append records with a key (ordered
// per key), read them in consumer groups, and commit a position only after
// the records before it were processed. Adapters live in bus/embedded and
// bus/kafka; bus/bustest is the conformance suite both must pass.
package bus

import (
	"context"
	"errors"
	"time"
)

// Topics used by otphub.
const (
	// NotificationsTopic carries SmsOtpNotificationEvents as CloudEvents in
	// binary mode (docs/event-formats.md); the record key is the org name.
	NotificationsTopic = "otphub.notifications"
	// DeadLetterTopic receives records that could not be decoded, with the
	// reason in the DeadLetterReasonHeader header.
	DeadLetterTopic = "otphub.notifications.dlq"
	// DeadLetterReasonHeader names the header that says why a record was
	// dead-lettered.
	DeadLetterReasonHeader = "otphub_dlq_reason"
)

// ErrClosed is returned by operations on a closed publisher or consumer.
var ErrClosed = errors.New("bus: closed")

// Message is one log record. Headers carry the CloudEvents binary-mode
// attributes (ce_*) and content-type.
type Message struct {
	Key     []byte
	Value   []byte
	Headers map[string]string

	// Set on messages received from a Consumer.
	Topic     string
	Partition int
	Offset    int64
	// Time is when the record was appended, to millisecond precision:
	// the embedded log's append time; in Kafka the record's timestamp
	// (otphub's producers set it when they publish). Zero when the record
	// has none. The dispatcher measures how long records wait in the log
	// with it.
	Time time.Time

	ack func()
}

// NewReceived builds a received message, appended at appended, whose Ack
// calls ack. Adapters use it.
func NewReceived(topic string, partition int, offset int64, appended time.Time, key, value []byte, headers map[string]string, ack func()) *Message {
	return &Message{Key: key, Value: value, Headers: headers, Topic: topic, Partition: partition, Offset: offset, Time: appended, ack: ack}
}

// Ack marks the message processed. The adapter commits a partition's
// position only up to the end of its contiguous acknowledged prefix, so an
// unacknowledged message (and everything after it) is redelivered after a
// restart or rebalance. Ack is idempotent and safe from any goroutine.
func (m *Message) Ack() {
	if m.ack != nil {
		m.ack()
	}
}

// Publisher appends records to the log.
type Publisher interface {
	// Publish appends msgs to topic and returns nil only once every one of
	// them is durable (fsynced for the embedded log, acknowledged by all
	// in-sync replicas for Kafka). Records with the same key keep their
	// order. Safe for concurrent use.
	Publish(ctx context.Context, topic string, msgs ...Message) error
	// Close flushes and releases resources; Publish after Close returns ErrClosed.
	Close() error
}

// Subscriber reads the log in consumer groups.
type Subscriber interface {
	// Subscribe joins group on topic. Partitions are split between the
	// members of a group; each message is delivered to one member, in
	// order per partition. At most the configured number of unacknowledged
	// messages are outstanding per consumer (back-pressure).
	Subscribe(ctx context.Context, topic, group string) (Consumer, error)
}

// Consumer is one member of a consumer group.
type Consumer interface {
	// Messages returns the channel of received messages. It is closed when
	// the consumer is closed or its context is done.
	Messages() <-chan *Message
	// Close leaves the group after committing the acknowledged prefix.
	Close() error
}

// Pinger reports whether the log is reachable; /readyz uses it.
type Pinger interface {
	Ping(ctx context.Context) error
}
