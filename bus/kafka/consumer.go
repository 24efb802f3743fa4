package kafka

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/otphub/otphub/bus"
)

// Subscribe joins group on topic with a kafka-go group Reader. A group
// without a committed position starts at the earliest retained record.
func (b *Bus) Subscribe(ctx context.Context, topic, group string) (bus.Consumer, error) {
	if topic == "" || group == "" {
		return nil, errors.New("kafka: subscribe needs a topic and a group")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return nil, bus.ErrClosed
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers:           b.cfg.Brokers,
		GroupID:           group,
		Topic:             topic,
		Dialer:            b.dialer,
		StartOffset:       kafkago.FirstOffset,
		CommitInterval:    0, // synchronous: CommitMessages returns once the broker has the position
		HeartbeatInterval: b.cfg.HeartbeatInterval,
		SessionTimeout:    b.cfg.SessionTimeout,
		RebalanceTimeout:  b.cfg.RebalanceTimeout,
		JoinGroupBackoff:  b.cfg.JoinGroupBackoff,
		MaxWait:           b.cfg.MaxWait,
		ReadBackoffMin:    50 * time.Millisecond,
		ReadBackoffMax:    time.Second,
		Logger:            logger(b.log, slog.LevelDebug),
		ErrorLogger:       logger(b.log, slog.LevelWarn),
	})
	cctx, cancel := context.WithCancel(context.Background())
	c := &consumer{
		b: b, r: r, topic: topic, group: group,
		out:    make(chan *bus.Message),
		sem:    make(chan struct{}, b.cfg.MaxInFlight),
		ctx:    cctx,
		cancel: cancel,
		parts:  map[int]*tracker{},
		kick:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	b.consumers[c] = struct{}{}
	c.wg.Add(2)
	go c.fetchLoop()
	go c.commitLoop()
	go func() {
		select {
		case <-ctx.Done():
			c.Close()
		case <-cctx.Done():
		}
	}()
	return c, nil
}

// consumer is one group member. fetchLoop hands messages out (at most
// MaxInFlight unacknowledged); acks advance a per-partition tracker;
// commitLoop sends the end of each partition's acknowledged prefix.
type consumer struct {
	b            *Bus
	r            *kafkago.Reader
	topic, group string
	out          chan *bus.Message
	sem          chan struct{}
	ctx          context.Context
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	kick         chan struct{}
	done         chan struct{}

	mu    sync.Mutex
	parts map[int]*tracker // current tracker per partition
	dirty map[int]int64    // partition -> last offset of the acknowledged prefix, not yet committed

	closeOnce sync.Once
	closeErr  error
}

// tracker is one partition's delivered-but-uncommitted offsets in order.
// When the reader rewinds a partition (after a rebalance it restarts at the
// committed position) a new tracker replaces the old one, and acks on the
// old one no longer commit anything: those records are redelivered.
type tracker struct {
	pending []*inflight
	last    int64 // highest offset delivered
	stale   bool
}

type inflight struct {
	offset int64
	acked  bool
}

func (c *consumer) Messages() <-chan *bus.Message { return c.out }

// Lag is kafka-go's estimate of the records after the last fetched one in
// the partition fetched most recently (Reader.Stats().Lag).
func (c *consumer) Lag() int64 { return c.r.Stats().Lag }

func (c *consumer) fetchLoop() {
	defer c.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		select {
		case c.sem <- struct{}{}:
		case <-c.ctx.Done():
			return
		}
		m, err := c.r.FetchMessage(c.ctx)
		if err != nil {
			<-c.sem
			if c.ctx.Err() != nil || errors.Is(err, io.EOF) {
				return
			}
			c.b.log.Warn("kafka: fetch failed", "topic", c.topic, "group", c.group, "err", err)
			select {
			case <-time.After(backoff):
				backoff = min(2*backoff, 5*time.Second)
			case <-c.ctx.Done():
				return
			}
			continue
		}
		backoff = 50 * time.Millisecond
		t, in := c.track(m.Partition, m.Offset)
		var once atomic.Bool
		msg := bus.NewReceived(m.Topic, m.Partition, m.Offset, recordTime(m.Time), m.Key, m.Value, fromHeaders(m.Headers), func() {
			if once.CompareAndSwap(false, true) {
				<-c.sem
				c.ack(m.Partition, t, in)
			}
		})
		select {
		case c.out <- msg:
		case <-c.ctx.Done():
			<-c.sem // never delivered: stays pending, so never committed past
			return
		}
	}
}

func (c *consumer) track(partition int, offset int64) (*tracker, *inflight) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.parts[partition]
	if t == nil || offset <= t.last {
		if t != nil {
			t.stale = true
		}
		t = &tracker{}
		c.parts[partition] = t
		delete(c.dirty, partition)
	}
	in := &inflight{offset: offset}
	t.pending = append(t.pending, in)
	t.last = offset
	return t, in
}

func (c *consumer) ack(partition int, t *tracker, in *inflight) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.stale {
		return
	}
	in.acked = true
	n := 0
	for n < len(t.pending) && t.pending[n].acked {
		n++
	}
	if n == 0 {
		return
	}
	if c.dirty == nil {
		c.dirty = map[int]int64{}
	}
	c.dirty[partition] = t.pending[n-1].offset
	t.pending = append(t.pending[:0], t.pending[n:]...)
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// commitLoop commits the acknowledged prefixes, coalescing acks that
// arrive while a commit is in flight.
func (c *consumer) commitLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.kick:
			if err := c.commit(c.ctx); err != nil && c.ctx.Err() == nil {
				c.b.log.Warn("kafka: commit failed; will retry", "topic", c.topic, "group", c.group, "err", err)
				select {
				case <-time.After(200 * time.Millisecond):
				case <-c.ctx.Done():
					return
				}
				select {
				case c.kick <- struct{}{}:
				default:
				}
			}
		case <-c.ctx.Done():
			return
		}
	}
}

// commit sends the dirty positions; on failure they stay dirty.
func (c *consumer) commit(ctx context.Context) error {
	c.mu.Lock()
	if len(c.dirty) == 0 {
		c.mu.Unlock()
		return nil
	}
	dirty := c.dirty
	c.dirty = nil
	c.mu.Unlock()
	msgs := make([]kafkago.Message, 0, len(dirty))
	for p, off := range dirty {
		// kafka-go commits Offset+1: the next record to read.
		msgs = append(msgs, kafkago.Message{Topic: c.topic, Partition: p, Offset: off})
	}
	err := c.r.CommitMessages(ctx, msgs...)
	if err != nil {
		c.mu.Lock()
		if c.dirty == nil {
			c.dirty = map[int]int64{}
		}
		for p, off := range dirty {
			if cur, ok := c.dirty[p]; !ok || cur < off {
				c.dirty[p] = off
			}
		}
		c.mu.Unlock()
	}
	return err
}

// Close stops delivery, commits the acknowledged prefix, leaves the group
// and closes Messages.
func (c *consumer) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		c.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		errs := []error{c.commit(ctx)}
		c.mu.Lock()
		for _, t := range c.parts {
			t.stale = true // later acks change nothing: the group has moved on
		}
		c.mu.Unlock()
		errs = append(errs, c.r.Close())
		close(c.out)
		c.b.mu.Lock()
		delete(c.b.consumers, c)
		c.b.mu.Unlock()
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}

// recordTime is a fetched record's timestamp, zero when it has none (a
// producer that set none leaves -1 or 0 on the wire).
func recordTime(t time.Time) time.Time {
	if t.UnixMilli() <= 0 {
		return time.Time{}
	}
	return t
}
