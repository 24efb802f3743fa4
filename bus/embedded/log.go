// Package embedded is the durable event log of the single binary: Kafka
// semantics (topics of N partitions, ordering per key, consumer groups with
// committed positions, redelivery of everything uncommitted) stored in
// segment files under one data directory, with no external service.
//
// Durability: Publish returns only after the records are fsynced;
// concurrent Publish calls share one fsync per partition (group commit).
// A record torn by kill -9 or power loss is detected by its CRC at Open and
// truncated. Only one process may open a data directory (flock on LOCK).
// docs/log.md describes the formats and guarantees.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/otphub/otphub/bus"
)

// Config tunes the embedded log. The zero value gives the defaults.
type Config struct {
	// Partitions is the number of partitions of a topic created by this
	// log. Default 4. An existing topic keeps the count it was created with.
	Partitions int
	// MaxInFlight bounds the delivered but unacknowledged messages of one
	// consumer (back-pressure). Default 1024.
	MaxInFlight int
	// SegmentBytes is the size at which the active segment is sealed and a
	// new one started. Default 64 MiB.
	SegmentBytes int64
	// SegmentMaxAge seals an active segment whose first record is older
	// than this, on the next append or retention pass, so that retention
	// can delete it even when its partition receives nothing more.
	// Default 24h.
	SegmentMaxAge time.Duration
	// Retention deletes sealed segments last written longer ago than this,
	// once every consumer group of the topic has committed past them.
	// Default 7 days.
	Retention time.Duration
	// RetentionInterval is how often retention runs. Default 5 minutes.
	RetentionInterval time.Duration
	// MaxRecordBytes bounds one framed record (key, value, headers and
	// framing). Default 1 MiB.
	MaxRecordBytes int
	// CommitInterval is the least time between two writes of a group's
	// committed positions: acks arriving meanwhile go out together in the
	// next write. Positions only ever lag, so a crash can redeliver up to
	// this much acknowledged work (duplicates), never lose any; in return
	// the position file's fsyncs do not compete with Publish's. A consumer
	// closing writes its positions at once. Default 200ms.
	CommitInterval time.Duration
	// Logger receives operational messages. Default: discarded.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) applyDefaults() {
	if c.Partitions <= 0 {
		c.Partitions = 4
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 1024
	}
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = 64 << 20
	}
	if c.SegmentMaxAge <= 0 {
		c.SegmentMaxAge = 24 * time.Hour
	}
	if c.Retention <= 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.RetentionInterval <= 0 {
		c.RetentionInterval = 5 * time.Minute
	}
	if c.MaxRecordBytes <= 0 {
		c.MaxRecordBytes = 1 << 20
	}
	if c.CommitInterval <= 0 {
		c.CommitInterval = 200 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// ErrLocked is returned by Open when another process (or another Log in
// this process) holds the data directory.
var ErrLocked = errors.New("embedded: data directory is in use by another process")

// validName is Kafka's rule for topic names, applied to groups too because
// both become file names.
var validName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,200}$`)

func checkName(kind, name string) error {
	if !validName.MatchString(name) || name == "." || name == ".." {
		return fmt.Errorf("embedded: invalid %s name %q (want 1-200 of [A-Za-z0-9._-])", kind, name)
	}
	return nil
}

// Log is an open embedded log. It implements bus.Publisher, bus.Subscriber
// and bus.Pinger. Safe for concurrent use.
type Log struct {
	dir  string
	cfg  Config
	log  *slog.Logger
	lock *os.File

	reqs       chan *appendReq
	seals      chan chan error // retention asks the writer to seal stale active segments
	done       chan struct{}   // closed by Close
	writerDone chan struct{}   // closed when the writer goroutine exits
	closed     atomic.Bool
	failed     atomic.Pointer[error] // sticky write failure
	closeOnce  sync.Once
	bg         sync.WaitGroup

	mu     sync.Mutex
	topics map[string]*topic
	groups map[groupKey]*group
	rr     atomic.Uint64
}

type topic struct {
	name  string
	parts []*partition
}

type appendReq struct {
	topic *topic
	recs  []*record
	parts []int
	done  chan error
}

// Open opens (creating if needed) the log in dir, recovers every
// partition's tail and loads the committed group positions. A second Open
// of the same dir fails with ErrLocked until the first is closed.
func Open(dir string, cfg Config) (*Log, error) {
	cfg.applyDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("embedded: lock %s: %w", dir, err)
	}
	l := &Log{
		dir: dir, cfg: cfg, log: cfg.Logger, lock: lock,
		reqs:       make(chan *appendReq, 1024),
		seals:      make(chan chan error),
		done:       make(chan struct{}),
		writerDone: make(chan struct{}),
		topics:     map[string]*topic{},
		groups:     map[groupKey]*group{},
	}
	if err := l.load(); err != nil {
		l.closeFiles()
		return nil, err
	}
	l.bg.Add(2)
	go l.writer()
	go l.retentionLoop()
	return l, nil
}

func (l *Log) load() error {
	for _, sub := range []string{"topics", "groups"} {
		if err := os.MkdirAll(filepath.Join(l.dir, sub), 0o700); err != nil {
			return fmt.Errorf("embedded: %w", err)
		}
	}
	if err := syncDir(l.dir); err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	entries, err := os.ReadDir(filepath.Join(l.dir, "topics"))
	if err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || checkName("topic", e.Name()) != nil {
			continue
		}
		if _, err := l.openTopic(e.Name(), false); err != nil {
			return err
		}
	}
	return l.loadGroups()
}

// openTopic returns the named topic, loading it from disk or (when create)
// creating it with cfg.Partitions partitions. Callers hold l.mu or are in
// Open.
func (l *Log) openTopic(name string, create bool) (*topic, error) {
	if t, ok := l.topics[name]; ok {
		return t, nil
	}
	dir := filepath.Join(l.dir, "topics", name)
	n := 0
	entries, err := os.ReadDir(dir)
	switch {
	case err == nil:
		for _, e := range entries {
			if i, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() && i >= n {
				n = i + 1
			}
		}
	case errors.Is(err, os.ErrNotExist) && create:
	default:
		return nil, fmt.Errorf("embedded: topic %s: %w", name, err)
	}
	if n == 0 {
		n = l.cfg.Partitions
	}
	t := &topic{name: name}
	for i := range n {
		p, err := openPartition(filepath.Join(dir, strconv.Itoa(i)), i, l.cfg.MaxRecordBytes, l.cfg.Now())
		if err != nil {
			t.close()
			return nil, fmt.Errorf("embedded: topic %s partition %d: %w", name, i, err)
		}
		t.parts = append(t.parts, p)
	}
	if err := syncDir(dir); err != nil {
		t.close()
		return nil, fmt.Errorf("embedded: %w", err)
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		t.close()
		return nil, fmt.Errorf("embedded: %w", err)
	}
	l.topics[name] = t
	return t, nil
}

// close closes t's active segments, each cut back to its records first
// (best effort: recovery drops leftover zeros too).
func (t *topic) close() {
	for _, p := range t.parts {
		if p.active != nil {
			_ = p.trim()
			p.active.Close()
		}
	}
}

// topic returns the named topic, creating it on first use.
func (l *Log) topic(name string) (*topic, error) {
	if err := checkName("topic", name); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed.Load() {
		return nil, bus.ErrClosed
	}
	return l.openTopic(name, true)
}

// partitionFor maps a key to a partition like kafka-go's Hash balancer
// (FNV-1a, Sarama-compatible); records without a key are spread round-robin.
func (l *Log) partitionFor(key []byte, n int) int {
	if len(key) == 0 {
		return int(l.rr.Add(1) % uint64(n))
	}
	h := fnv.New32a()
	h.Write(key)
	p := int32(h.Sum32()) % int32(n)
	if p < 0 {
		p = -p
	}
	return int(p)
}

// Publish appends msgs to topic (created on first use) and returns once
// they are fsynced. If ctx ends first the records may or may not be
// appended, as with any log.
func (l *Log) Publish(ctx context.Context, topicName string, msgs ...bus.Message) error {
	if l.closed.Load() {
		return bus.ErrClosed
	}
	if err := l.failed.Load(); err != nil {
		return *err
	}
	if len(msgs) == 0 {
		return nil
	}
	t, err := l.topic(topicName)
	if err != nil {
		return err
	}
	req := &appendReq{topic: t, done: make(chan error, 1)}
	now := l.cfg.Now().UnixMilli()
	for i := range msgs {
		r := &record{timestamp: now, key: msgs[i].Key, value: msgs[i].Value, headers: msgs[i].Headers}
		if n := frameSize(r); n > l.cfg.MaxRecordBytes {
			return fmt.Errorf("embedded: record %d is %d bytes, over the %d byte limit", i, n, l.cfg.MaxRecordBytes)
		}
		req.recs = append(req.recs, r)
		req.parts = append(req.parts, l.partitionFor(r.key, len(t.parts)))
	}
	select {
	case l.reqs <- req:
	case <-l.done:
		return bus.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-l.writerDone:
		select {
		case err := <-req.done:
			return err
		default:
			return bus.ErrClosed
		}
	}
}

// maxBatch bounds how many Publish calls share one write+fsync.
const maxBatch = 4096

// writer is the only goroutine that appends. It takes every request queued
// while the previous fsync ran, writes them, fsyncs each touched partition
// once (in parallel) and only then makes the records visible and answers
// the callers: group commit.
func (l *Log) writer() {
	defer l.bg.Done()
	defer close(l.writerDone)
	batch := make([]*appendReq, 0, 64)
	for {
		batch = batch[:0]
		select {
		case r := <-l.reqs:
			batch = append(batch, r)
		case done := <-l.seals:
			done <- l.sealStale()
			continue
		case <-l.done:
			// Finish what was queued before Close.
			for {
				select {
				case r := <-l.reqs:
					batch = append(batch, r)
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				l.writeBatch(batch)
			}
			return
		}
	more:
		for len(batch) < maxBatch {
			select {
			case r := <-l.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		l.writeBatch(batch)
	}
}

type pendingWrite struct {
	p    *partition
	buf  []byte
	next int64
}

func (l *Log) writeBatch(batch []*appendReq) {
	if errp := l.failed.Load(); errp != nil {
		for _, r := range batch {
			r.done <- *errp
		}
		return
	}
	now := l.cfg.Now()
	writes := map[*partition]*pendingWrite{}
	var order []*pendingWrite
	for _, r := range batch {
		for i, rec := range r.recs {
			p := r.topic.parts[r.parts[i]]
			w := writes[p]
			if w == nil {
				w = &pendingWrite{p: p, next: p.end()}
				writes[p] = w
				order = append(order, w)
			}
			rec.offset = w.next
			w.next++
			w.buf = appendFrame(w.buf, rec)
		}
	}
	var g errgroup.Group
	for _, w := range order {
		g.Go(func() error { return l.append(w, now) })
	}
	err := g.Wait()
	if err != nil {
		err = fmt.Errorf("embedded: append: %w", err)
		l.failed.Store(&err)
		l.log.Error("embedded log write failed; the log refuses writes until reopened", "err", err)
	}
	for _, r := range batch {
		r.done <- err
	}
}

// append writes w to its partition (rolling the segment first when due),
// fsyncs, and publishes the new end. On failure the partial write is cut
// off again.
func (l *Log) append(w *pendingWrite, now time.Time) error {
	p := w.p
	p.mu.Lock()
	size, start := p.activeSize, p.next
	p.mu.Unlock()
	if size > 0 && (size+int64(len(w.buf)) > l.cfg.SegmentBytes || now.Sub(p.activeCreated) >= l.cfg.SegmentMaxAge) {
		if err := p.roll(start, now); err != nil {
			return fmt.Errorf("roll partition %s: %w", p.dir, err)
		}
		size = 0
	}
	if size == 0 {
		// A segment's age is that of its first record.
		p.activeCreated = now
	}
	if err := p.write(w.buf, size, l.cfg.SegmentBytes); err != nil {
		return err
	}
	p.publish(size+int64(len(w.buf)), w.next)
	return nil
}

// Ping reports whether the log is open and its directory reachable.
func (l *Log) Ping(ctx context.Context) error {
	if l.closed.Load() {
		return bus.ErrClosed
	}
	if err := l.failed.Load(); err != nil {
		return *err
	}
	if _, err := os.Stat(filepath.Join(l.dir, "LOCK")); err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	return ctx.Err()
}

// Close stops every consumer (committing their acknowledged prefixes),
// finishes queued appends, persists group positions and releases the data
// directory. Publish after Close returns bus.ErrClosed.
func (l *Log) Close() error {
	var err error
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed.Store(true)
		groups := make([]*group, 0, len(l.groups))
		for _, g := range l.groups {
			groups = append(groups, g)
		}
		l.mu.Unlock()
		for _, g := range groups {
			for _, c := range g.memberList() {
				c.Close()
			}
		}
		close(l.done)
		l.bg.Wait()
		for _, g := range groups {
			if ferr := g.flush(); ferr != nil && err == nil {
				err = ferr
			}
		}
		l.closeFiles()
	})
	return err
}

func (l *Log) closeFiles() {
	l.mu.Lock()
	for _, t := range l.topics {
		t.close()
	}
	l.mu.Unlock()
	syscall.Flock(int(l.lock.Fd()), syscall.LOCK_UN)
	l.lock.Close()
}

var (
	_ bus.Publisher  = (*Log)(nil)
	_ bus.Subscriber = (*Log)(nil)
	_ bus.Pinger     = (*Log)(nil)
)
