// Package bustest is the conformance suite every bus adapter must pass
// (the embedded log and Kafka): ordering per key, at-least-once redelivery,
// contiguous-prefix commits, consumer groups, restart persistence,
// back-pressure and close semantics. An adapter's test calls Run with a
// constructor; see bus/embedded and bus/kafka.
package bustest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otphub/otphub/bus"
)

// Bus is what an adapter provides: both halves of the port.
type Bus interface {
	bus.Publisher
	bus.Subscriber
}

// Features describes the adapter under test.
type Features struct {
	// Timeout bounds each wait for a delivery or a rebalance. Default 20s.
	Timeout time.Duration
	// Topic is the topic the tests use; the constructor must make sure it
	// exists. Default bus.NotificationsTopic.
	Topic string
	// QuietPeriod is how long the back-pressure test waits to see that no
	// message beyond the bound arrives. Default 300ms.
	QuietPeriod time.Duration
}

// Options are the adapter settings a test needs.
type Options struct {
	// MaxInFlight is the per-consumer bound on unacknowledged messages;
	// 0 means the adapter's default (which must be at least 256).
	MaxInFlight int
}

// NewBus builds a fresh, empty bus for one test and returns a reopen
// function that builds a new Bus over the same storage (the same data
// directory, the same cluster) after the test closed the first one. Both
// buses should be closed by t.Cleanup; closing twice must be harmless.
type NewBus func(t *testing.T, o Options) (b Bus, reopen func() Bus)

// Run runs every conformance test as a subtest.
func Run(t *testing.T, f Features, newBus NewBus) {
	if f.Timeout <= 0 {
		f.Timeout = 20 * time.Second
	}
	if f.Topic == "" {
		f.Topic = bus.NotificationsTopic
	}
	if f.QuietPeriod <= 0 {
		f.QuietPeriod = 300 * time.Millisecond
	}
	s := &suite{f: f, newBus: newBus}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"PublishConsume", s.testPublishConsume},
		{"OrderingPerKey", s.testOrderingPerKey},
		{"RedeliveryAfterConsumerDies", s.testRedelivery},
		{"ContiguousPrefixCommit", s.testContiguousPrefix},
		{"GroupSplitsPartitions", s.testGroupSplit},
		{"RebalanceWithUnackedMessages", s.testRebalanceUnacked},
		{"IndependentGroups", s.testIndependentGroups},
		{"RestartKeepsRecordsAndPositions", s.testRestart},
		{"BackPressure", s.testBackPressure},
		{"CloseSemantics", s.testClose},
		{"ContextEndsConsumer", s.testContextEndsConsumer},
		{"ConcurrentPublishers", s.testConcurrentPublishers},
		{"DeadLetter", s.testDeadLetter},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.fn)
	}
}

type suite struct {
	f      Features
	newBus NewBus
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

func msg(key, value string) bus.Message {
	return bus.Message{Key: []byte(key), Value: []byte(value), Headers: map[string]string{"content-type": "application/json"}}
}

func publish(t *testing.T, p bus.Publisher, topic string, msgs ...bus.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Publish(ctx, topic, msgs...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

func subscribe(t *testing.T, b bus.Subscriber, topic, group string) bus.Consumer {
	t.Helper()
	c, err := b.Subscribe(ctxFor(t), topic, group)
	if err != nil {
		t.Fatalf("Subscribe(%s, %s): %v", topic, group, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// receive waits for n messages on c.
func (s *suite) receive(t *testing.T, c bus.Consumer, n int) []*bus.Message {
	t.Helper()
	var out []*bus.Message
	timer := time.NewTimer(s.f.Timeout)
	defer timer.Stop()
	for len(out) < n {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				t.Fatalf("Messages closed after %d of %d messages", len(out), n)
			}
			out = append(out, m)
		case <-timer.C:
			t.Fatalf("received %d of %d messages within %v: %v", len(out), n, s.f.Timeout, values(out))
		}
	}
	return out
}

// receiveAck waits for n messages on c, acknowledging each on receipt.
func (s *suite) receiveAck(t *testing.T, c bus.Consumer, n int) []*bus.Message {
	t.Helper()
	var out []*bus.Message
	timer := time.NewTimer(s.f.Timeout)
	defer timer.Stop()
	for len(out) < n {
		select {
		case m, ok := <-c.Messages():
			if !ok {
				t.Fatalf("Messages closed after %d of %d messages", len(out), n)
			}
			m.Ack()
			out = append(out, m)
		case <-timer.C:
			t.Fatalf("received %d of %d messages within %v", len(out), n, s.f.Timeout)
		}
	}
	return out
}

func values(ms []*bus.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m.Value)
	}
	return out
}

func ackAll(ms []*bus.Message) {
	for _, m := range ms {
		m.Ack()
	}
}

// keys returns n distinct keys, enough to land on every partition of any
// reasonable topic.
func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "org-" + strconv.Itoa(i)
	}
	return out
}

func (s *suite) testPublishConsume(t *testing.T) {
	b, _ := s.newBus(t, Options{})
	m := bus.Message{
		Key:   []byte("myorg"),
		Value: []byte(`{"organizationName":"myorg"}`),
		Headers: map[string]string{
			"ce_specversion": "1.0", "ce_id": "id-1", "ce_type": "urn:ietf:params:notifications:smsOtp",
			"content-type": "application/json",
		},
	}
	before := time.Now().Truncate(time.Millisecond)
	publish(t, b, s.f.Topic, m, msg("other", "second"))
	after := time.Now()
	c := subscribe(t, b, s.f.Topic, "g-basic")
	got := s.receive(t, c, 2)
	ackAll(got)
	for _, g := range got { // the append time, which the dispatcher's log wait is measured from
		if g.Time.Before(before) || g.Time.After(after) {
			t.Errorf("%s: Time %v, want the append time, between %v and %v", g.Key, g.Time, before, after)
		}
	}
	var first *bus.Message
	for _, g := range got {
		if string(g.Key) == "myorg" {
			first = g
		}
	}
	if first == nil {
		t.Fatalf("message with key myorg not received: %v", values(got))
	}
	if string(first.Value) != string(m.Value) {
		t.Errorf("value = %q, want %q", first.Value, m.Value)
	}
	for k, v := range m.Headers {
		if first.Headers[k] != v {
			t.Errorf("header %s = %q, want %q", k, first.Headers[k], v)
		}
	}
	if first.Topic != s.f.Topic || first.Partition < 0 || first.Offset < 0 {
		t.Errorf("position = %s/%d/%d", first.Topic, first.Partition, first.Offset)
	}
	if err := b.Publish(context.Background(), s.f.Topic); err != nil {
		t.Errorf("Publish of nothing: %v", err)
	}
}

func (s *suite) testOrderingPerKey(t *testing.T) {
	b, _ := s.newBus(t, Options{})
	const perKey = 40
	ks := keys(6)
	var wg sync.WaitGroup
	for _, k := range ks {
		wg.Go(func() {
			for i := 0; i < perKey; i += 2 { // one and two records per call
				n := min(2, perKey-i)
				batch := make([]bus.Message, n)
				for j := range n {
					batch[j] = msg(k, fmt.Sprintf("%s/%d", k, i+j))
				}
				publish(t, b, s.f.Topic, batch...)
			}
		})
	}
	wg.Wait()
	c := subscribe(t, b, s.f.Topic, "g-order")
	got := s.receiveAck(t, c, perKey*len(ks))
	next := map[string]int{}
	for _, m := range got {
		k, n, _ := strings.Cut(string(m.Value), "/")
		i, _ := strconv.Atoi(n)
		if string(m.Key) != k {
			t.Fatalf("key %q carries value %q", m.Key, m.Value)
		}
		if i != next[k] {
			t.Fatalf("key %s: got %d, want %d (order per key broken)", k, i, next[k])
		}
		next[k]++
	}
}

func (s *suite) testRedelivery(t *testing.T) {
	b, _ := s.newBus(t, Options{})
	var want []string
	for i, k := range keys(10) {
		v := fmt.Sprintf("m%d", i)
		want = append(want, v)
		publish(t, b, s.f.Topic, msg(k, v))
	}
	c1 := subscribe(t, b, s.f.Topic, "g-redeliver")
	got := s.receive(t, c1, len(want))
	if err := c1.Close(); err != nil { // dies before acknowledging anything
		t.Fatalf("Close: %v", err)
	}
	for range c1.Messages() {
	}
	got[0].Ack() // too late: the consumer left, nothing may be committed
	c2 := subscribe(t, b, s.f.Topic, "g-redeliver")
	again := s.receive(t, c2, len(want))
	ackAll(again)
	gv, av := values(got), values(again)
	slices.Sort(gv)
	slices.Sort(av)
	slices.Sort(want)
	if !slices.Equal(gv, want) || !slices.Equal(av, want) {
		t.Fatalf("first delivery %v, redelivery %v, want %v", gv, av, want)
	}
}

func (s *suite) testContiguousPrefix(t *testing.T) {
	b, _ := s.newBus(t, Options{})
	publish(t, b, s.f.Topic, msg("k", "m0"), msg("k", "m1"), msg("k", "m2"))
	const group = "g-prefix"

	c1 := subscribe(t, b, s.f.Topic, group)
	got := s.receive(t, c1, 3)
	if v := values(got); !slices.Equal(v, []string{"m0", "m1", "m2"}) {
		t.Fatalf("first delivery %v", v)
	}
	got[1].Ack() // m1 processed, m0 not: nothing may be committed
	got[1].Ack() // idempotent
	c1.Close()

	c2 := subscribe(t, b, s.f.Topic, group)
	got = s.receive(t, c2, 3)
	if v := values(got); !slices.Equal(v, []string{"m0", "m1", "m2"}) {
		t.Fatalf("after acking only m1, redelivery was %v, want m0 m1 m2", v)
	}
	got[1].Ack()
	got[0].Ack() // now m0 and m1 form the prefix
	c2.Close()

	c3 := subscribe(t, b, s.f.Topic, group)
	got = s.receive(t, c3, 1)
	if v := string(got[0].Value); v != "m2" {
		t.Fatalf("after acking m0 and m1, first redelivery was %s, want m2", v)
	}
	got[0].Ack()
}

// awaitAllAssigned publishes probe records over many keys until each of
// cs has received one, so the group has settled with every member owning
// partitions. Probes are acknowledged and dropped.
func (s *suite) awaitAllAssigned(t *testing.T, b Bus, cs ...bus.Consumer) {
	t.Helper()
	deadline := time.Now().Add(s.f.Timeout)
	seen := make([]bool, len(cs))
	for round := 0; ; round++ {
		if time.Now().After(deadline) {
			t.Fatalf("group did not settle within %v: members seen %v", s.f.Timeout, seen)
		}
		var probes []bus.Message
		for _, k := range keys(16) {
			probes = append(probes, msg(k, fmt.Sprintf("probe-%d", round)))
		}
		publish(t, b, s.f.Topic, probes...)
		wait := time.NewTimer(200 * time.Millisecond)
	drain:
		for {
			// Take whatever arrives within the round; remember who got any.
			ready := false
			for i, c := range cs {
				select {
				case m := <-c.Messages():
					m.Ack()
					seen[i] = true
					ready = true
				default:
				}
			}
			if !ready {
				select {
				case <-wait.C:
					break drain
				case <-time.After(5 * time.Millisecond):
				}
			}
		}
		if !slices.Contains(seen, false) {
			// Drain late probes of earlier rounds.
			for _, c := range cs {
				for {
					select {
					case m := <-c.Messages():
						if !strings.HasPrefix(string(m.Value), "probe-") {
							t.Fatalf("unexpected record %q", m.Value)
						}
						m.Ack()
						continue
					case <-time.After(100 * time.Millisecond):
					}
					break
				}
			}
			return
		}
	}
}

func (s *suite) testGroupSplit(t *testing.T) {
	b, _ := s.newBus(t, Options{})
	const group = "g-split"
	c1 := subscribe(t, b, s.f.Topic, group)
	c2 := subscribe(t, b, s.f.Topic, group)
	s.awaitAllAssigned(t, b, c1, c2)

	var want []string
	var batch []bus.Message
	for i, k := range keys(40) {
		v := fmt.Sprintf("m%d", i)
		want = append(want, v)
		batch = append(batch, msg(k, v))
	}
	publish(t, b, s.f.Topic, batch...)

	got := [2]map[string]bool{{}, {}}
	timer := time.NewTimer(s.f.Timeout)
	defer timer.Stop()
	for len(got[0])+len(got[1]) < len(want) {
		var m *bus.Message
		var i int
		select {
		case m = <-c1.Messages():
			i = 0
		case m = <-c2.Messages():
			i = 1
		case <-timer.C:
			t.Fatalf("received %d+%d of %d", len(got[0]), len(got[1]), len(want))
		}
		if m == nil {
			t.Fatal("a consumer's Messages closed")
		}
		m.Ack()
		v := string(m.Value)
		if strings.HasPrefix(v, "probe-") {
			continue
		}
		if got[1-i][v] {
			t.Fatalf("%s delivered to both members of the group", v)
		}
		if got[i][v] {
			t.Fatalf("%s delivered twice to one member", v)
		}
		got[i][v] = true
	}
	if len(got[0]) == 0 || len(got[1]) == 0 {
		t.Fatalf("partitions not split: member shares %d and %d", len(got[0]), len(got[1]))
	}

	// When one member leaves, the other takes over its partitions.
	c1.Close()
	var more []bus.Message
	for i, k := range keys(40) {
		more = append(more, msg(k, fmt.Sprintf("after-%d", i)))
	}
	publish(t, b, s.f.Topic, more...)
	seen := map[string]bool{}
	timer.Reset(s.f.Timeout)
	for len(seen) < len(more) {
		select {
		case m, ok := <-c2.Messages():
			if !ok {
				t.Fatal("Messages closed")
			}
			m.Ack()
			if strings.HasPrefix(string(m.Value), "after-") {
				seen[string(m.Value)] = true
			}
		case <-timer.C:
			t.Fatalf("remaining member got %d of %d after the other left", len(seen), len(more))
		}
	}
}

func (s *suite) testIndependentGroups(t *testing.T) {
	b, _ := s.newBus(t, Options{})
	var batch []bus.Message
	for i, k := range keys(20) {
		batch = append(batch, msg(k, fmt.Sprintf("m%d", i)))
	}
	publish(t, b, s.f.Topic, batch...)
	for _, g := range []string{"g-a", "g-b"} {
		c := subscribe(t, b, s.f.Topic, g)
		seen := map[string]bool{}
		timer := time.NewTimer(s.f.Timeout)
		for len(seen) < len(batch) {
			select {
			case m := <-c.Messages():
				m.Ack()
				seen[string(m.Value)] = true
			case <-timer.C:
				t.Fatalf("group %s got %d of %d", g, len(seen), len(batch))
			}
		}
		timer.Stop()
	}
}

func (s *suite) testRestart(t *testing.T) {
	b, reopen := s.newBus(t, Options{})
	const group = "g-restart"
	for i := range 10 {
		publish(t, b, s.f.Topic, msg("k", fmt.Sprintf("m%d", i)))
	}
	c := subscribe(t, b, s.f.Topic, group)
	got := s.receive(t, c, 10)
	ackAll(got[:5])
	if err := c.Close(); err != nil {
		t.Fatalf("consumer Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	b2 := reopen()
	publish(t, b2, s.f.Topic, msg("k", "m10"))
	c2 := subscribe(t, b2, s.f.Topic, group)
	got2 := s.receive(t, c2, 6)
	if v := values(got2); !slices.Equal(v, []string{"m5", "m6", "m7", "m8", "m9", "m10"}) {
		t.Fatalf("after restart got %v, want m5..m10 (committed position and records kept)", v)
	}
	if got2[5].Offset <= got2[4].Offset {
		t.Errorf("offset after restart %d not past %d", got2[5].Offset, got2[4].Offset)
	}
	ackAll(got2)

	// A new group still sees the records published before the restart.
	c3 := subscribe(t, b2, s.f.Topic, "g-restart-new")
	if v := values(s.receive(t, c3, 11)); v[0] != "m0" || v[10] != "m10" {
		t.Fatalf("new group after restart got %v", v)
	}
}

func (s *suite) testBackPressure(t *testing.T) {
	const n = 4
	b, _ := s.newBus(t, Options{MaxInFlight: n})
	total := 3 * n
	var batch []bus.Message
	for i := range total {
		batch = append(batch, msg(keys(total)[i], fmt.Sprintf("m%d", i)))
	}
	publish(t, b, s.f.Topic, batch...)
	c := subscribe(t, b, s.f.Topic, "g-backpressure")
	held := s.receive(t, c, n)
	select {
	case m := <-c.Messages():
		t.Fatalf("message %q delivered beyond MaxInFlight=%d with nothing acknowledged", m.Value, n)
	case <-time.After(s.f.QuietPeriod):
	}
	held[0].Ack()
	one := s.receive(t, c, 1)
	select {
	case m := <-c.Messages():
		t.Fatalf("message %q delivered beyond MaxInFlight=%d after one ack", m.Value, n)
	case <-time.After(s.f.QuietPeriod):
	}
	ackAll(held)
	ackAll(one)
	rest := s.receiveAck(t, c, total-n-1)
	seen := map[string]bool{}
	for _, m := range append(append(held, one...), rest...) {
		seen[string(m.Value)] = true
	}
	if len(seen) != total {
		t.Fatalf("got %d distinct of %d", len(seen), total)
	}
}

func (s *suite) testClose(t *testing.T) {
	b, _ := s.newBus(t, Options{})
	if p, ok := b.(bus.Pinger); ok {
		if err := p.Ping(ctxFor(t)); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	}
	c := subscribe(t, b, s.f.Topic, "g-close")
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := b.Publish(context.Background(), s.f.Topic, msg("k", "v")); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("Publish after Close = %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe(context.Background(), s.f.Topic, "g-close-2"); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("Subscribe after Close = %v, want ErrClosed", err)
	}
	if p, ok := b.(bus.Pinger); ok {
		if err := p.Ping(context.Background()); err == nil {
			t.Fatal("Ping after Close succeeded")
		}
	}
	c.Close() // the consumer closes too; Close again is harmless
	timer := time.NewTimer(s.f.Timeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-c.Messages():
			if !ok {
				return
			}
		case <-timer.C:
			t.Fatal("consumer Messages not closed after the bus closed")
		}
	}
}

func (s *suite) testContextEndsConsumer(t *testing.T) {
	b, _ := s.newBus(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	c, err := b.Subscribe(ctx, s.f.Topic, "g-ctx")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cancel()
	timer := time.NewTimer(s.f.Timeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-c.Messages():
			if !ok {
				return
			}
		case <-timer.C:
			t.Fatal("Messages not closed after the subscription context ended")
		}
	}
}

func (s *suite) testConcurrentPublishers(t *testing.T) {
	b, _ := s.newBus(t, Options{})
	const publishers, each = 8, 25
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				publish(t, b, s.f.Topic, msg(fmt.Sprintf("org-%d", (p*each+i)%13), fmt.Sprintf("p%d-%d", p, i)))
			}
		})
	}
	wg.Wait()
	c := subscribe(t, b, s.f.Topic, "g-concurrent")
	got := s.receiveAck(t, c, publishers*each)
	if lag, ok := lagOf(c); ok && lag < 0 {
		t.Errorf("Lag = %d, want >= 0", lag)
	}
	seen := map[string]bool{}
	for _, m := range got {
		seen[string(m.Value)] = true
	}
	if len(seen) != publishers*each {
		t.Fatalf("got %d distinct of %d", len(seen), publishers*each)
	}
}

func (s *suite) testDeadLetter(t *testing.T) {
	b, _ := s.newBus(t, Options{})
	publish(t, b, s.f.Topic, bus.Message{Key: []byte("myorg"), Value: []byte("not json"), Headers: map[string]string{"ce_id": "x"}})
	c := subscribe(t, b, s.f.Topic, "g-router")
	m := s.receive(t, c, 1)[0]
	if err := bus.DeadLetter(ctxFor(t), b, m, "decode: invalid character"); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	m.Ack()
	d := subscribe(t, b, bus.DeadLetterTopic, "g-dlq")
	got := s.receive(t, d, 1)[0]
	got.Ack()
	if string(got.Key) != "myorg" || string(got.Value) != "not json" || got.Headers["ce_id"] != "x" {
		t.Fatalf("dead letter = %q %q %v", got.Key, got.Value, got.Headers)
	}
	if r := got.Headers[bus.DeadLetterReasonHeader]; r != "decode: invalid character" {
		t.Fatalf("reason header = %q", r)
	}
	if src := got.Headers[bus.DeadLetterSourceHeader]; !strings.HasPrefix(src, s.f.Topic+"/") {
		t.Fatalf("source header = %q", src)
	}
}

// lagOf returns c's lag when the adapter reports it.
func lagOf(c bus.Consumer) (int64, bool) {
	l, ok := c.(bus.Lagger)
	if !ok {
		return 0, false
	}
	return l.Lag(), true
}

// drainUntil acknowledges everything arriving on cs until every value in
// want has arrived, and returns the other values seen.
func (s *suite) drainUntil(t *testing.T, want []string, cs ...bus.Consumer) []string {
	t.Helper()
	missing := map[string]bool{}
	for _, v := range want {
		missing[v] = true
	}
	var other []string
	timer := time.NewTimer(s.f.Timeout)
	defer timer.Stop()
	for len(missing) > 0 {
		for _, c := range cs {
			select {
			case m, ok := <-c.Messages():
				if !ok {
					t.Fatal("Messages closed")
				}
				m.Ack()
				if missing[string(m.Value)] {
					delete(missing, string(m.Value))
				} else {
					other = append(other, string(m.Value))
				}
			case <-timer.C:
				t.Fatalf("%d records did not arrive within %v", len(missing), s.f.Timeout)
			case <-time.After(time.Millisecond):
			}
		}
	}
	return other
}

func (s *suite) publishMarkers(t *testing.T, b Bus, prefix string) []string {
	t.Helper()
	var ms []bus.Message
	var vs []string
	for i, k := range keys(40) {
		v := fmt.Sprintf("%s-%d", prefix, i)
		ms = append(ms, msg(k, v))
		vs = append(vs, v)
	}
	publish(t, b, s.f.Topic, ms...)
	return vs
}

// testRebalanceUnacked: a member holds unacknowledged records when a second
// member joins. Whatever the adapter does with the moved partitions
// (redeliver to the newcomer, redeliver to the old member, or keep them in
// flight), once everything delivered is acknowledged the group's committed
// positions must be past every original record: a new member of the group
// sees none of them.
func (s *suite) testRebalanceUnacked(t *testing.T) {
	b, _ := s.newBus(t, Options{})
	const group = "g-rebalance"
	var originals []bus.Message
	for i, k := range keys(40) {
		originals = append(originals, msg(k, fmt.Sprintf("orig-%d", i)))
	}
	publish(t, b, s.f.Topic, originals...)
	c1 := subscribe(t, b, s.f.Topic, group)
	held := s.receive(t, c1, len(originals))

	c2 := subscribe(t, b, s.f.Topic, group)
	// Let the group settle with both members: probe until each got one.
	deadline := time.Now().Add(s.f.Timeout)
	for round := 0; ; round++ {
		if time.Now().After(deadline) {
			t.Fatal("group did not settle with two members")
		}
		probes := s.publishMarkers(t, b, fmt.Sprintf("probe%d", round))
		seen := [2]bool{}
		left := map[string]bool{}
		for _, p := range probes {
			left[p] = true
		}
		until := time.After(2 * time.Second)
	round:
		for len(left) > 0 {
			select {
			case m := <-c1.Messages():
				m.Ack()
				delete(left, string(m.Value))
				seen[0] = seen[0] || strings.HasPrefix(string(m.Value), "probe")
			case m := <-c2.Messages():
				m.Ack()
				delete(left, string(m.Value))
				seen[1] = seen[1] || strings.HasPrefix(string(m.Value), "probe")
			case <-until:
				break round
			}
		}
		if seen[0] && seen[1] {
			break
		}
	}
	ackAll(held) // late acks: they may or may not count, depending on ownership
	// Everything before a sync marker in each partition has been delivered
	// (and is acknowledged by drainUntil) once all markers arrive.
	s.drainUntil(t, s.publishMarkers(t, b, "sync"), c1, c2)
	c1.Close()
	c2.Close()

	c3 := subscribe(t, b, s.f.Topic, group)
	for _, v := range s.drainUntil(t, s.publishMarkers(t, b, "final"), c3) {
		if strings.HasPrefix(v, "orig-") {
			t.Fatalf("%s delivered again after it was acknowledged and the group moved past it", v)
		}
	}
}
