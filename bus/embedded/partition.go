package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const segmentSuffix = ".log"

// partition is one ordered, append-only sequence of records stored as
// segment files named by the offset of their first record. Only the writer
// goroutine appends; readers see records up to next, which only moves after
// the bytes are fsynced.
type partition struct {
	dir       string
	index     int
	maxRecord int

	mu         sync.Mutex
	segs       []int64 // base offsets, ascending; the last one is active
	activeSize int64   // durable bytes of the active segment
	next       int64   // offset of the next record; everything below is durable
	notify     chan struct{}

	// Writer-owned.
	active        *os.File
	activeCreated time.Time
	allocated     int64 // bytes of the active segment's file: its records, then zeros (preallocate)
}

// preallocChunk is how far ahead of its records the active segment's file
// is extended with zeros. Appends inside the extended file change neither
// its size nor its block map, so their fsync has no metadata to journal:
// on ext4 it costs about half the CPU and wall time of an fsync that grows
// the file (docs/log.md). A sealed segment is cut back to its records, and
// so is the active one at Close; after a crash, recovery drops the zeros
// as it drops a torn tail.
const preallocChunk = 1 << 20

var zeros [64 << 10]byte

func segmentName(base int64) string { return fmt.Sprintf("%020d%s", base, segmentSuffix) }

// openPartition loads the segment list, recovers the active segment (drops
// a torn or corrupt tail) and opens it for appending.
func openPartition(dir string, index, maxRecord int, now time.Time) (*partition, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &partition{dir: dir, index: index, maxRecord: maxRecord, notify: make(chan struct{})}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, segmentSuffix) {
			continue
		}
		base, err := strconv.ParseInt(strings.TrimSuffix(name, segmentSuffix), 10, 64)
		if err != nil || base < 0 {
			continue
		}
		p.segs = append(p.segs, base)
	}
	slices.Sort(p.segs)
	if len(p.segs) == 0 {
		p.segs = []int64{0}
		f, err := os.OpenFile(filepath.Join(dir, segmentName(0)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, err
		}
		if err := syncDir(dir); err != nil {
			f.Close()
			return nil, err
		}
		p.active, p.activeCreated = f, now
		return p, nil
	}
	base := p.segs[len(p.segs)-1]
	f, err := os.OpenFile(filepath.Join(dir, segmentName(base)), os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	next, size, first, err := recoverSegment(f, base, maxRecord)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("recover %s: %w", f.Name(), err)
	}
	p.active, p.activeSize, p.next, p.allocated = f, size, next, size
	p.activeCreated = now
	if size > 0 {
		// Aged from its first record, as if the process had not restarted.
		p.activeCreated = time.UnixMilli(first)
	}
	return p, nil
}

// recoverSegment scans f from the start, keeps the longest prefix of valid
// records with consecutive offsets from base, truncates anything after it
// (a record torn by a crash, or garbage) and returns the next offset and
// the valid size, and the timestamp (Unix ms) of the first record.
func recoverSegment(f *os.File, base int64, maxRecord int) (next, size, first int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, 0, err
	}
	end := fi.Size()
	next = base
	var hdr [frameHeaderLen]byte
	var body []byte
	for size < end {
		if end-size < frameHeaderLen {
			break
		}
		if _, err := f.ReadAt(hdr[:], size); err != nil {
			return 0, 0, 0, err
		}
		n, crc, err := parseFrameHeader(hdr[:], maxRecord)
		if err != nil || end-size-frameHeaderLen < int64(n) {
			break
		}
		body = slices.Grow(body[:0], n)[:n]
		if _, err := f.ReadAt(body, size+frameHeaderLen); err != nil {
			return 0, 0, 0, err
		}
		r, err := decodeBody(body, crc)
		if err != nil || r.offset != next {
			break
		}
		if next == base {
			first = r.timestamp
		}
		next++
		size += frameHeaderLen + int64(n)
	}
	if size != end {
		if err := f.Truncate(size); err != nil {
			return 0, 0, 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, 0, 0, err
		}
	}
	return next, size, first, nil
}

// snapshot is what a reader may see of a partition at one instant.
type snapshot struct {
	segs       []int64
	activeSize int64
	next       int64
	notify     <-chan struct{}
}

func (p *partition) snapshot() snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return snapshot{segs: p.segs, activeSize: p.activeSize, next: p.next, notify: p.notify}
}

func (p *partition) end() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next
}

// publish makes appended bytes visible once they are durable.
func (p *partition) publish(size, next int64) {
	p.mu.Lock()
	p.activeSize, p.next = size, next
	close(p.notify)
	p.notify = make(chan struct{})
	p.mu.Unlock()
}

// write appends buf (whole frames) to the active segment at size and makes
// it durable, extending the file with zeros first when buf goes past them.
// On failure the file is cut back to size. Writer only.
func (p *partition) write(buf []byte, size, segmentBytes int64) error {
	err := p.writeSync(buf, size, segmentBytes)
	if err != nil {
		if terr := p.active.Truncate(size); terr == nil {
			p.allocated = size
		}
	}
	return err
}

func (p *partition) writeSync(buf []byte, size, segmentBytes int64) error {
	end := size + int64(len(buf))
	if end > p.allocated {
		// Extend by a chunk (or to buf's end when buf is larger), not
		// beyond the segment's size (a batch larger than that in an
		// empty segment is written whole).
		target := max(end, min(p.allocated+preallocChunk, segmentBytes))
		for off := p.allocated; off < target; off += int64(len(zeros)) {
			if _, err := p.active.WriteAt(zeros[:min(int64(len(zeros)), target-off)], off); err != nil {
				return err
			}
		}
		p.allocated = target
	}
	if _, err := p.active.WriteAt(buf, size); err != nil {
		return err
	}
	return p.active.Sync()
}

// trim cuts the active segment's file back to its records (its zeros
// dropped) and makes that durable. Writer only, or after the writer ended.
func (p *partition) trim() error {
	p.mu.Lock()
	size := p.activeSize
	p.mu.Unlock()
	if p.allocated == size {
		return nil
	}
	if err := p.active.Truncate(size); err != nil {
		return err
	}
	p.allocated = size
	return p.active.Sync()
}

// roll seals the active segment and starts a new, empty one at base.
// Writer only; the active segment is fully durable and visible when roll is
// called, so a cursor in it reads the sealed file to its end and moves on.
// The sealed file is cut back to its records first: a cursor reads a
// sealed segment to its file's end.
func (p *partition) roll(base int64, now time.Time) error {
	if err := p.trim(); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(p.dir, segmentName(base)), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	if err := syncDir(p.dir); err != nil {
		f.Close()
		return err
	}
	old := p.active
	p.active, p.activeCreated, p.allocated = f, now, 0
	p.mu.Lock()
	p.segs = append(slices.Clip(p.segs), base)
	p.activeSize = 0
	p.mu.Unlock()
	return old.Close()
}

// cursor reads a partition sequentially from a starting offset. Records
// before the first retained segment are skipped (the reader starts at the
// earliest retained record, as Kafka's auto.offset.reset=earliest).
type cursor struct {
	p      *partition
	next   int64 // the offset the reader wants next
	f      *os.File
	base   int64
	pos    int64
	sealed int64 // size of the open segment once it is no longer active; -1 while active
	hdr    [frameHeaderLen]byte
}

func newCursor(p *partition, from int64) *cursor { return &cursor{p: p, next: from, sealed: -1} }

func (c *cursor) close() {
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
}

// open positions the cursor at the segment holding c.next.
func (c *cursor) open(s snapshot) error {
	c.close()
	i, _ := slices.BinarySearch(s.segs, c.next+1) // first base > next
	if i > 0 {
		i--
	} else {
		c.next = s.segs[0]
	}
	c.base, c.pos, c.sealed = s.segs[i], 0, -1
	f, err := os.Open(filepath.Join(c.p.dir, segmentName(c.base)))
	if err != nil {
		return err
	}
	c.f = f
	return nil
}

// read returns the next record, waiting for one to be appended. It returns
// ctx.Err() when ctx is done.
func (c *cursor) read(ctx context.Context) (*record, error) {
	for {
		s := c.p.snapshot()
		if c.f == nil || (len(s.segs) > 0 && c.base < s.segs[0]) {
			if err := c.open(s); err != nil {
				if errors.Is(err, os.ErrNotExist) { // removed by retention meanwhile
					c.f = nil
					continue
				}
				return nil, err
			}
		}
		active := c.base == s.segs[len(s.segs)-1]
		limit := s.activeSize
		if !active {
			if c.sealed < 0 {
				fi, err := c.f.Stat()
				if err != nil {
					return nil, err
				}
				c.sealed = fi.Size()
			}
			limit = c.sealed
		}
		if c.pos < limit {
			r, n, err := c.readAt(limit)
			if err != nil {
				return nil, fmt.Errorf("partition %d segment %d at byte %d: %w", c.p.index, c.base, c.pos, err)
			}
			c.pos += n
			if r.offset < c.next {
				continue
			}
			c.next = r.offset + 1
			return r, nil
		}
		if !active {
			i, _ := slices.BinarySearch(s.segs, c.base+1)
			c.next = max(c.next, s.segs[i])
			c.f.Close()
			c.f = nil
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.notify:
		}
	}
}

func (c *cursor) readAt(limit int64) (*record, int64, error) {
	if limit-c.pos < frameHeaderLen {
		return nil, 0, fmt.Errorf("%w: short frame header", errCorrupt)
	}
	if _, err := c.f.ReadAt(c.hdr[:], c.pos); err != nil {
		return nil, 0, err
	}
	n, crc, err := parseFrameHeader(c.hdr[:], c.p.maxRecord)
	if err != nil {
		return nil, 0, err
	}
	if limit-c.pos-frameHeaderLen < int64(n) {
		return nil, 0, fmt.Errorf("%w: short frame body", errCorrupt)
	}
	body := make([]byte, n)
	if _, err := c.f.ReadAt(body, c.pos+frameHeaderLen); err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, err
	}
	r, err := decodeBody(body, crc)
	if err != nil {
		return nil, 0, err
	}
	return r, frameHeaderLen + int64(n), nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
