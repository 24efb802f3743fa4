package embedded

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/otphub/otphub/bus"
)

// consumer is one member of a group. Each assigned partition has a reader
// goroutine feeding the shared out channel; sem bounds the delivered but
// unacknowledged messages.
type consumer struct {
	g      *group
	out    chan *bus.Message
	sem    chan struct{}
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex // guards parts and closed; taken under g.mu
	parts   map[int]*assignment
	closed  bool
	readers sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// assignment is one partition owned by a consumer for one generation. Its
// pending list holds the offsets delivered and not yet committed, in
// delivery order; the committed position advances over its acknowledged
// head only (contiguous prefix).
type assignment struct {
	c         *consumer
	partition int
	cancel    context.CancelFunc
	done      chan struct{}

	mu      sync.Mutex
	revoked bool
	pending []*inflight
}

type inflight struct {
	offset int64
	acked  bool
}

func (c *consumer) Messages() <-chan *bus.Message { return c.out }

// owned returns the partitions c reads now, ascending.
func (c *consumer) owned() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]int, 0, len(c.parts))
	for p := range c.parts {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// revokeExcept stops the readers of partitions not in keep and waits for
// them. Acks that arrive later for revoked partitions change nothing: the
// next owner reads from the committed position, so those messages are
// redelivered (at-least-once).
func (c *consumer) revokeExcept(keep []int) {
	c.mu.Lock()
	var stop []*assignment
	for p, a := range c.parts {
		if !containsInt(keep, p) {
			stop = append(stop, a)
			delete(c.parts, p)
		}
	}
	c.mu.Unlock()
	for _, a := range stop {
		a.cancel()
		<-a.done
		a.mu.Lock()
		a.revoked = true
		a.pending = nil
		a.mu.Unlock()
	}
}

// assign starts readers for newly owned partitions at the group's
// committed position.
func (c *consumer) assign(parts []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	for _, p := range parts {
		if _, ok := c.parts[p]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(c.ctx)
		a := &assignment{c: c, partition: p, cancel: cancel, done: make(chan struct{})}
		c.parts[p] = a
		c.readers.Add(1)
		go a.run(ctx, newCursor(c.g.t.parts[p], c.g.position(p)))
	}
}

func (a *assignment) run(ctx context.Context, cur *cursor) {
	c := a.c
	defer c.readers.Done()
	defer close(a.done)
	defer cur.close()
	for {
		r, err := cur.read(ctx)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				c.g.l.log.Error("embedded: partition reader stopped", "topic", c.g.t.name, "partition", a.partition, "group", c.g.name, "err", err)
			}
			return
		}
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		in := &inflight{offset: r.offset}
		a.mu.Lock()
		a.pending = append(a.pending, in)
		a.mu.Unlock()
		var once atomic.Bool
		m := bus.NewReceived(c.g.t.name, a.partition, r.offset, time.UnixMilli(r.timestamp), r.key, r.value, r.headers, func() {
			if once.CompareAndSwap(false, true) {
				<-c.sem
				a.ack(in)
			}
		})
		select {
		case c.out <- m:
		case <-ctx.Done():
			<-c.sem // never delivered: stays pending, so never committed past
			return
		}
	}
}

// ack marks in processed and commits the end of the acknowledged prefix.
func (a *assignment) ack(in *inflight) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.revoked {
		return
	}
	in.acked = true
	n := 0
	for n < len(a.pending) && a.pending[n].acked {
		n++
	}
	if n == 0 {
		return
	}
	next := a.pending[n-1].offset + 1
	a.pending = append(a.pending[:0], a.pending[n:]...)
	a.c.g.commit(a.partition, next)
}

// Lag is the number of records in the group's partitions past the
// committed positions.
func (c *consumer) Lag() int64 {
	var lag int64
	for p, pos := range c.g.positions() {
		if d := c.g.t.parts[p].end() - pos; d > 0 {
			lag += d
		}
	}
	return lag
}

// Close stops delivery, persists the acknowledged prefix, leaves the group
// (its partitions move to the remaining members) and closes Messages.
func (c *consumer) Close() error {
	c.closeOnce.Do(func() {
		g := c.g
		g.mu.Lock()
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.cancel()
		c.revokeExcept(nil)
		c.closeErr = g.flush()
		if i := indexOf(g.members, c); i >= 0 {
			g.members = append(g.members[:i], g.members[i+1:]...)
		}
		g.rebalance()
		g.mu.Unlock()
		c.readers.Wait()
		close(c.out)
	})
	return c.closeErr
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func indexOf(s []*consumer, c *consumer) int {
	for i, x := range s {
		if x == c {
			return i
		}
	}
	return -1
}
