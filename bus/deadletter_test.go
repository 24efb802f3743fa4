package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/bus/embedded"
)

func TestDeadLetterBoundsReasonAndKeepsRecord(t *testing.T) {
	l, err := embedded.Open(t.TempDir(), embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	m := bus.NewReceived(bus.NotificationsTopic, 2, 7, time.Time{}, []byte("myorg"), []byte("{bad"), map[string]string{"ce_id": "x"}, nil)
	if err := bus.DeadLetter(ctx, l, m, strings.Repeat("r", 5000)); err != nil {
		t.Fatal(err)
	}
	if m.Headers[bus.DeadLetterReasonHeader] != "" {
		t.Fatal("DeadLetter modified the original message's headers")
	}
	c, err := l.Subscribe(ctx, bus.DeadLetterTopic, "ops")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case got := <-c.Messages():
		if n := len(got.Headers[bus.DeadLetterReasonHeader]); n != bus.MaxDeadLetterReasonLen {
			t.Fatalf("reason length %d, want %d", n, bus.MaxDeadLetterReasonLen)
		}
		if got.Headers[bus.DeadLetterSourceHeader] != bus.NotificationsTopic+"/2/7" || got.Headers["ce_id"] != "x" || string(got.Value) != "{bad" {
			t.Fatalf("dead letter %v %q", got.Headers, got.Value)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dead letter not readable")
	}
}

func TestDeadLetterErrors(t *testing.T) {
	l, err := embedded.Open(t.TempDir(), embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.DeadLetter(context.Background(), l, nil, "x"); err == nil {
		t.Fatal("nil message accepted")
	}
	l.Close()
	m := &bus.Message{Value: []byte("x")}
	if err := bus.DeadLetter(context.Background(), l, m, "x"); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("DeadLetter on a closed log = %v, want ErrClosed", err)
	}
}
