package bus

import (
	"context"
	"fmt"
	"maps"
)

// MaxDeadLetterReasonLen bounds the reason stored in the dead-letter header,
// so a huge decode error cannot bloat the record.
const MaxDeadLetterReasonLen = 1024

// DeadLetter copies m (key, value and headers) to DeadLetterTopic with the
// reason in the DeadLetterReasonHeader header, and returns once the copy is
// durable. The caller acknowledges m afterwards, so consumption goes on past
// the record that could not be processed without losing it.
func DeadLetter(ctx context.Context, pub Publisher, m *Message, reason string) error {
	if m == nil {
		return fmt.Errorf("bus: dead-letter: nil message")
	}
	if len(reason) > MaxDeadLetterReasonLen {
		reason = reason[:MaxDeadLetterReasonLen]
	}
	headers := make(map[string]string, len(m.Headers)+4)
	maps.Copy(headers, m.Headers)
	headers[DeadLetterReasonHeader] = reason
	if m.Topic != "" {
		headers[DeadLetterSourceHeader] = fmt.Sprintf("%s/%d/%d", m.Topic, m.Partition, m.Offset)
	}
	dl := Message{Key: m.Key, Value: m.Value, Headers: headers}
	if err := pub.Publish(ctx, DeadLetterTopic, dl); err != nil {
		return fmt.Errorf("bus: dead-letter: %w", err)
	}
	return nil
}

// DeadLetterSourceHeader names the header that records where a
// dead-lettered record came from, as "topic/partition/offset".
const DeadLetterSourceHeader = "otphub_dlq_source"
