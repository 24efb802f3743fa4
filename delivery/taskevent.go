package delivery

import (
	"encoding/json"
	"fmt"

	"github.com/otphub/otphub/event"
)

// taskEvent is how a delivery task keeps its event (store.DeliveryTask.Event):
// the log record itself, in CloudEvents binary mode (event.EncodeBinary),
// wrapped in JSON. One codec for the log and the task table, so a retry
// decodes exactly what the router decoded.
type taskEvent struct {
	Key     string            `json:"key"`
	Headers map[string]string `json:"headers"`
	Value   json.RawMessage   `json:"value"`
}

// EncodeTaskEvent encodes ev for store.DeliveryTask.Event.
func EncodeTaskEvent(ev *event.SmsOtpNotificationEvent) ([]byte, error) {
	key, headers, value, err := event.EncodeBinary(ev)
	if err != nil {
		return nil, fmt.Errorf("delivery: encode task event: %w", err)
	}
	return json.Marshal(taskEvent{Key: string(key), Headers: headers, Value: value})
}

// DecodeTaskEvent decodes store.DeliveryTask.Event (the engine's retries,
// the deliveries API's replays).
func DecodeTaskEvent(b []byte) (*event.SmsOtpNotificationEvent, error) {
	var te taskEvent
	if err := json.Unmarshal(b, &te); err != nil {
		return nil, fmt.Errorf("delivery: decode task event: %w", err)
	}
	ev, err := event.DecodeBinary([]byte(te.Key), te.Headers, te.Value)
	if err != nil {
		return nil, fmt.Errorf("delivery: decode task event: %w", err)
	}
	return ev, nil
}
