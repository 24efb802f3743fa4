// Package admit sheds load before it queues: a Gate lets a bounded number
// of requests do their work at once, makes the rest wait a bounded time,
// and refuses what would wait longer, so a server offered more than it can
// do keeps doing what it can at a bounded latency instead of queueing
// without end (every request late, none useful).
//
// Waiters are admitted fairly across keys (orgs): a free slot goes to the
// next key in turn, whatever how many requests each key has waiting, so a
// flood from one key delays another key's request by at most one turn.
package admit

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrBusy is returned by Enter when no slot freed within the wait, or
// when too many requests wait already.
var ErrBusy = errors.New("admit: busy")

// Gate admits at most Limit requests at once.
type Gate struct {
	limit    int
	maxWait  time.Duration
	maxQueue int

	mu      sync.Mutex
	inUse   int
	waiting int
	keys    *list.List // of *keyQueue with waiters, in turn order
	byKey   map[string]*keyQueue
}

type keyQueue struct {
	key     string
	waiters *list.List // of *waiter, oldest first
	elem    *list.Element
}

type waiter struct {
	ready   chan struct{}
	granted bool
}

// New returns a Gate of limit slots whose waiters wait at most maxWait;
// at most 4×limit wait at once (more are refused at once).
func New(limit int, maxWait time.Duration) (*Gate, error) {
	if limit < 1 {
		return nil, fmt.Errorf("admit: limit %d: want at least 1", limit)
	}
	if maxWait < 0 {
		return nil, fmt.Errorf("admit: max wait %v: want 0 or more", maxWait)
	}
	return &Gate{limit: limit, maxWait: maxWait, maxQueue: 4 * limit, keys: list.New(), byKey: map[string]*keyQueue{}}, nil
}

// Enter takes a slot for key, waiting at most the Gate's wait for one:
// ErrBusy when none freed in time (or the queue is full), ctx's error when
// it ended first. The caller must call release exactly once when done.
func (g *Gate) Enter(ctx context.Context, key string) (release func(), err error) {
	g.mu.Lock()
	if g.inUse < g.limit && g.waiting == 0 {
		g.inUse++
		g.mu.Unlock()
		return g.release, nil
	}
	if g.waiting >= g.maxQueue || g.maxWait == 0 {
		g.mu.Unlock()
		return nil, ErrBusy
	}
	w := &waiter{ready: make(chan struct{})}
	q := g.byKey[key]
	if q == nil {
		q = &keyQueue{key: key, waiters: list.New()}
		q.elem = g.keys.PushBack(q)
		g.byKey[key] = q
	}
	we := q.waiters.PushBack(w)
	g.waiting++
	g.mu.Unlock()

	timer := time.NewTimer(g.maxWait)
	defer timer.Stop()
	select {
	case <-w.ready:
		return g.release, nil
	case <-timer.C:
		err = ErrBusy
	case <-ctx.Done():
		err = ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if w.granted {
		// Granted as the wait ended: the slot is ours, hand it on.
		g.handOn()
		return nil, err
	}
	q.waiters.Remove(we)
	g.waiting--
	if q.waiters.Len() == 0 {
		g.drop(q)
	}
	return nil, err
}

// release frees a slot: to the next waiter in turn, if any.
func (g *Gate) release() {
	g.mu.Lock()
	g.handOn()
	g.mu.Unlock()
}

// handOn gives the caller's slot to the oldest waiter of the next key in
// turn, or frees it. g.mu is held.
func (g *Gate) handOn() {
	front := g.keys.Front()
	if front == nil {
		g.inUse--
		return
	}
	q := front.Value.(*keyQueue)
	w := q.waiters.Remove(q.waiters.Front()).(*waiter)
	g.waiting--
	if q.waiters.Len() == 0 {
		g.drop(q)
	} else {
		g.keys.MoveToBack(front)
	}
	w.granted = true
	close(w.ready)
}

func (g *Gate) drop(q *keyQueue) {
	g.keys.Remove(q.elem)
	delete(g.byKey, q.key)
}

// Stats are a Gate's current slots in use and requests waiting.
type Stats struct{ InUse, Waiting int }

// Stats returns the Gate's current figures.
func (g *Gate) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return Stats{g.inUse, g.waiting}
}
