package embedded

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

func (l *Log) retentionLoop() {
	defer l.bg.Done()
	t := time.NewTicker(l.cfg.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
			if n, err := l.EnforceRetention(); err != nil {
				l.log.Error("embedded: retention", "err", err)
			} else if n > 0 {
				l.log.Info("embedded: retention deleted segments", "segments", n)
			}
		}
	}
}

// EnforceRetention first seals every active segment whose first record is
// older than Config.SegmentMaxAge (a partition that receives no more
// appends must not keep its records forever), then deletes, oldest first,
// every sealed segment last written more than Config.Retention ago whose
// records every consumer group of its topic has committed past. It runs
// every Config.RetentionInterval; it is exported for tests and operator
// tooling. It returns how many segments it deleted.
func (l *Log) EnforceRetention() (int, error) {
	if err := l.sealStaleSegments(); err != nil {
		return 0, err
	}
	cutoff := l.cfg.Now().Add(-l.cfg.Retention)
	l.mu.Lock()
	type job struct {
		t   *topic
		min []int64 // lowest committed position per partition; nil: no group
	}
	var jobs []job
	for _, t := range l.topics {
		j := job{t: t}
		for k, g := range l.groups {
			if k.topic != t.name {
				continue
			}
			pos := g.positions()
			if j.min == nil {
				j.min = pos
				continue
			}
			for i := range j.min {
				j.min[i] = min(j.min[i], pos[i])
			}
		}
		jobs = append(jobs, j)
	}
	l.mu.Unlock()

	deleted := 0
	var errs []error
	for _, j := range jobs {
		for i, p := range j.t.parts {
			limit := int64(-1) // no group: age alone decides
			if j.min != nil {
				limit = j.min[i]
			}
			n, err := p.deleteOld(cutoff, limit)
			deleted += n
			if err != nil {
				errs = append(errs, fmt.Errorf("topic %s partition %d: %w", j.t.name, i, err))
			}
		}
	}
	return deleted, errors.Join(errs...)
}

// deleteOld removes sealed segments older than cutoff whose end is at or
// below committed (any end when committed < 0), stopping at the first one
// that must stay so the retained log remains contiguous.
func (p *partition) deleteOld(cutoff time.Time, committed int64) (int, error) {
	deleted := 0
	for {
		p.mu.Lock()
		if len(p.segs) < 2 {
			p.mu.Unlock()
			return deleted, nil
		}
		base, end := p.segs[0], p.segs[1]
		p.mu.Unlock()
		if committed >= 0 && end > committed {
			return deleted, nil
		}
		path := filepath.Join(p.dir, segmentName(base))
		fi, err := os.Stat(path)
		if err != nil {
			return deleted, err
		}
		if !fi.ModTime().Before(cutoff) {
			return deleted, nil
		}
		p.mu.Lock()
		p.segs = slices.Clone(p.segs[1:])
		p.mu.Unlock()
		if err := os.Remove(path); err != nil {
			return deleted, err
		}
		if err := syncDir(p.dir); err != nil {
			return deleted, err
		}
		deleted++
	}
}

// sealStaleSegments has the writer goroutine run sealStale between two
// batches. After Close it does nothing.
func (l *Log) sealStaleSegments() error {
	done := make(chan error, 1)
	select {
	case l.seals <- done:
	case <-l.writerDone:
		return nil
	}
	return <-done
}

// sealStale rolls every non-empty active segment whose first record is
// older than Config.SegmentMaxAge; the new active segment starts empty.
// Writer goroutine only: the writer owns the active segments, and between
// batches everything in them is durable and visible to readers. A failed
// roll fails the log, as it would on the append path.
func (l *Log) sealStale() error {
	if l.failed.Load() != nil {
		return nil
	}
	now := l.cfg.Now()
	l.mu.Lock()
	topics := make([]*topic, 0, len(l.topics))
	for _, t := range l.topics {
		topics = append(topics, t)
	}
	l.mu.Unlock()
	for _, t := range topics {
		for _, p := range t.parts {
			p.mu.Lock()
			size, next := p.activeSize, p.next
			p.mu.Unlock()
			if size == 0 || now.Sub(p.activeCreated) < l.cfg.SegmentMaxAge {
				continue
			}
			if err := p.roll(next, now); err != nil {
				err = fmt.Errorf("embedded: roll partition %s: %w", p.dir, err)
				l.failed.Store(&err)
				l.log.Error("embedded log write failed; the log refuses writes until reopened", "err", err)
				return err
			}
		}
	}
	return nil
}
