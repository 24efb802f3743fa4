package console

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/event"
)

func TestSendWritesMarkedLine(t *testing.T) {
	var buf bytes.Buffer
	s := New(&buf)
	ev := &event.SmsOtpNotificationEvent{ID: "id-1", OrganizationName: "myorg", SendTo: "+94771234567", MessageBody: "Your code is 123456\nbye"}
	res := s.Send(context.Background(), ev)
	if !res.OK || res.ProviderID != "console-id-1" {
		t.Fatalf("%+v", res)
	}
	want := Marker + ` org="myorg" to="+94771234567" id="id-1" body="Your code is 123456\nbye"` + "\n"
	if buf.String() != want {
		t.Fatalf("got %q\nwant %q", buf.String(), want)
	}
	if res := s.Send(context.Background(), &event.SmsOtpNotificationEvent{}); res.Reason != delivery.ReasonInvalid {
		t.Fatalf("empty event: %+v", res)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("closed") }

func TestSendWriteError(t *testing.T) {
	res := New(failWriter{}).Send(context.Background(), &event.SmsOtpNotificationEvent{SendTo: "+1", MessageBody: "x"})
	if res.OK || !res.Retry {
		t.Fatalf("%+v", res)
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func TestConcurrentLinesDoNotInterleave(t *testing.T) {
	var out lockedBuf
	s := New(&out)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			s.Send(context.Background(), &event.SmsOtpNotificationEvent{SendTo: "+1", MessageBody: strings.Repeat("x", 100)})
		})
	}
	wg.Wait()
	for line := range strings.SplitSeq(strings.TrimSuffix(out.b.String(), "\n"), "\n") {
		if !strings.HasPrefix(line, Marker) {
			t.Fatalf("line %q", line)
		}
	}
}
