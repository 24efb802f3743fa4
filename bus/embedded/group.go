package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/otphub/otphub/bus"
)

type groupKey struct{ topic, group string }

// group is one consumer group on one topic: its members in this process
// and its committed positions (the next offset to read, per partition),
// persisted in groups/<group>/<topic>.offsets.json by atomic rename.
type group struct {
	l    *Log
	t    *topic
	name string
	path string

	mu      sync.Mutex // membership and assignment; taken before assignment.mu
	members []*consumer

	offMu     sync.Mutex // committed; innermost lock
	committed []int64
	dirty     bool
	kick      chan struct{}
	flushMu   sync.Mutex
}

type offsetsFile struct {
	Topic   string  `json:"topic"`
	Group   string  `json:"group"`
	Offsets []int64 `json:"offsets"`
}

func (l *Log) groupPath(topic, group string) string {
	return filepath.Join(l.dir, "groups", group, topic+".offsets.json")
}

func (l *Log) loadGroups() error {
	dirs, err := os.ReadDir(filepath.Join(l.dir, "groups"))
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	for _, d := range dirs {
		if !d.IsDir() || checkName("group", d.Name()) != nil {
			continue
		}
		files, err := os.ReadDir(filepath.Join(l.dir, "groups", d.Name()))
		if err != nil {
			return fmt.Errorf("embedded: %w", err)
		}
		for _, f := range files {
			topicName, ok := strings.CutSuffix(f.Name(), ".offsets.json")
			if !ok || checkName("topic", topicName) != nil {
				continue // including leftover *.tmp files from a crash mid-write
			}
			t, err := l.openTopic(topicName, true)
			if err != nil {
				return err
			}
			if _, err := l.openGroup(t, d.Name()); err != nil {
				return err
			}
		}
	}
	return nil
}

// openGroup returns the group, loading its committed positions (or
// creating them at the start of the log, and persisting that so retention
// knows the group exists). Callers hold l.mu or are in Open.
func (l *Log) openGroup(t *topic, name string) (*group, error) {
	k := groupKey{t.name, name}
	if g, ok := l.groups[k]; ok {
		return g, nil
	}
	g := &group{l: l, t: t, name: name, path: l.groupPath(t.name, name), kick: make(chan struct{}, 1)}
	g.committed = make([]int64, len(t.parts))
	b, err := os.ReadFile(g.path)
	switch {
	case err == nil:
		var f offsetsFile
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("embedded: group file %s: %w", g.path, err)
		}
		copy(g.committed, f.Offsets)
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(g.path), 0o700); err != nil {
			return nil, fmt.Errorf("embedded: %w", err)
		}
		if err := syncDir(filepath.Join(l.dir, "groups")); err != nil {
			return nil, fmt.Errorf("embedded: %w", err)
		}
		g.dirty = true
		if err := g.write(); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("embedded: %w", err)
	}
	l.groups[k] = g
	l.bg.Add(1)
	go g.flusher()
	return g, nil
}

// commit moves partition p's committed position forward to next.
func (g *group) commit(p int, next int64) {
	g.offMu.Lock()
	if next > g.committed[p] {
		g.committed[p] = next
		g.dirty = true
	}
	g.offMu.Unlock()
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

func (g *group) position(p int) int64 {
	g.offMu.Lock()
	defer g.offMu.Unlock()
	return g.committed[p]
}

// positions returns a copy of the committed positions.
func (g *group) positions() []int64 {
	g.offMu.Lock()
	defer g.offMu.Unlock()
	return slices.Clone(g.committed)
}

// flusher persists commits in the background, coalescing those that arrive
// while a write is in progress.
func (g *group) flusher() {
	defer g.l.bg.Done()
	for {
		select {
		case <-g.kick:
			if err := g.write(); err != nil {
				g.l.log.Error("embedded: persist group offsets", "group", g.name, "topic", g.t.name, "err", err)
			}
			select {
			case <-time.After(g.l.cfg.CommitInterval):
			case <-g.l.done:
				return
			}
		case <-g.l.done:
			return
		}
	}
}

// flush persists the committed positions now; see write.
func (g *group) flush() error { return g.write() }

// write persists the committed positions if they changed: temp file,
// fsync, rename over the old file, fsync the directory.
func (g *group) write() error {
	g.flushMu.Lock()
	defer g.flushMu.Unlock()
	g.offMu.Lock()
	if !g.dirty {
		g.offMu.Unlock()
		return nil
	}
	f := offsetsFile{Topic: g.t.name, Group: g.name, Offsets: slices.Clone(g.committed)}
	g.dirty = false
	g.offMu.Unlock()
	b, _ := json.Marshal(f)
	err := writeFileAtomic(g.path, b)
	if err != nil {
		g.offMu.Lock()
		g.dirty = true
		g.offMu.Unlock()
		return fmt.Errorf("embedded: group %s: %w", g.name, err)
	}
	return nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func (g *group) memberList() []*consumer {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.members)
}

// rebalance splits the partitions evenly among the members (each gets
// n/m, the first n%m one more), keeping partitions with their current
// owner where the quota allows so that a join or leave moves as few
// partitions, and redelivers as few messages, as possible. Callers hold g.mu.
func (g *group) rebalance() {
	want := assignSticky(len(g.t.parts), g.members)
	// Revoke first, so no partition is read by two members at once.
	for _, c := range g.members {
		c.revokeExcept(want[c])
	}
	for _, c := range g.members {
		c.assign(want[c])
	}
}

func assignSticky(n int, members []*consumer) map[*consumer][]int {
	want := make(map[*consumer][]int, len(members))
	if len(members) == 0 {
		return want
	}
	base, extra := n/len(members), n%len(members)
	taken := make([]bool, n)
	var over []*consumer // members that could keep one more than base
	for _, c := range members {
		owned := c.owned()
		for i, p := range owned {
			if p >= n || taken[p] {
				continue
			}
			if i < base {
				want[c] = append(want[c], p)
				taken[p] = true
			} else if i == base {
				over = append(over, c)
			}
		}
	}
	for _, c := range over {
		if extra == 0 {
			break
		}
		for _, p := range c.owned() {
			if p < n && !taken[p] {
				want[c] = append(want[c], p)
				taken[p] = true
				extra--
				break
			}
		}
	}
	for p := range n {
		if taken[p] {
			continue
		}
		var to *consumer
		for _, c := range members { // first under base, else first that may take an extra
			if len(want[c]) < base {
				to = c
				break
			}
		}
		if to == nil {
			for _, c := range members {
				if len(want[c]) == base && extra > 0 {
					to = c
					extra--
					break
				}
			}
		}
		if to == nil {
			to = members[0] // unreachable: quotas add up to n
		}
		want[to] = append(want[to], p)
		taken[p] = true
	}
	return want
}

// Subscribe joins group on topic (both created on first use). A new group
// starts at the earliest retained record. The returned consumer's
// partitions are rebalanced whenever a member joins or leaves.
func (l *Log) Subscribe(ctx context.Context, topicName, groupName string) (bus.Consumer, error) {
	if err := checkName("topic", topicName); err != nil {
		return nil, err
	}
	if err := checkName("group", groupName); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.closed.Load() {
		l.mu.Unlock()
		return nil, bus.ErrClosed
	}
	t, err := l.openTopic(topicName, true)
	if err != nil {
		l.mu.Unlock()
		return nil, err
	}
	g, err := l.openGroup(t, groupName)
	if err != nil {
		l.mu.Unlock()
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.Background())
	c := &consumer{
		g:      g,
		out:    make(chan *bus.Message),
		sem:    make(chan struct{}, l.cfg.MaxInFlight),
		ctx:    cctx,
		cancel: cancel,
		parts:  map[int]*assignment{},
	}
	g.mu.Lock()
	l.mu.Unlock()
	g.members = append(g.members, c)
	g.rebalance()
	g.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
			c.Close()
		case <-cctx.Done():
		}
	}()
	return c, nil
}
