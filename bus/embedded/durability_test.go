package embedded_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/bus/embedded"
)

func publishT(t *testing.T, l *embedded.Log, topic string, msgs ...bus.Message) {
	t.Helper()
	if err := l.Publish(context.Background(), topic, msgs...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

// readAll subscribes with a fresh group and returns the values of every
// record in topic, in per-partition order (there is one partition here).
func readAll(t *testing.T, l *embedded.Log, topic, group string, n int) []string {
	t.Helper()
	c, err := l.Subscribe(context.Background(), topic, group)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out []string
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for len(out) < n {
		select {
		case m := <-c.Messages():
			m.Ack()
			out = append(out, string(m.Value))
		case <-timer.C:
			t.Fatalf("read %d of %d: %v", len(out), n, out)
		}
	}
	return out
}

func segments(t *testing.T, dir, topic string, part int) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "topics", topic, strconv.Itoa(part), "*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSecondOpenFailsWhileLocked(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, embedded.Config{})
	if _, err := embedded.Open(dir, embedded.Config{}); !errors.Is(err, embedded.ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	l.Close()
	l2 := openT(t, dir, embedded.Config{}) // released by Close
	l2.Close()
}

func TestTornTailIsTruncatedAtOpen(t *testing.T) {
	for _, tc := range []struct {
		name string
		tear func(t *testing.T, path string)
	}{
		{"partial frame header", func(t *testing.T, path string) { appendBytes(t, path, []byte{0, 0}) }},
		{"partial body", func(t *testing.T, path string) { appendBytes(t, path, []byte{0, 0, 0, 40, 1, 2, 3, 4, 9, 9}) }},
		{"bad checksum", func(t *testing.T, path string) {
			// Flip a byte in the last record's value.
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)-3] ^= 0xff
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbage length", func(t *testing.T, path string) { appendBytes(t, path, []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := embedded.Config{Partitions: 1}
			l := openT(t, dir, cfg)
			for i := range 3 {
				publishT(t, l, "t", bus.Message{Key: []byte("k"), Value: []byte(fmt.Sprintf("m%d", i))})
			}
			l.Close()
			segs := segments(t, dir, "t", 0)
			tc.tear(t, segs[len(segs)-1])

			l = openT(t, dir, cfg)
			publishT(t, l, "t", bus.Message{Key: []byte("k"), Value: []byte("after")})
			got := readAll(t, l, "t", "g", 3)
			want := []string{"m0", "m1", "m2"}
			if tc.name == "bad checksum" {
				want = []string{"m0", "m1", "after"} // the damaged record is dropped
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("after recovery read %v, want %v", got, want)
			}
		})
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestSegmentsRollAndRetentionDeletesCommittedOldSegments(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	clock := func() time.Time { return now }
	var mu sync.Mutex
	cfg := embedded.Config{Partitions: 1, SegmentBytes: 256, Retention: time.Hour, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return clock() }}
	l := openT(t, dir, cfg)
	for i := range 20 {
		publishT(t, l, "t", bus.Message{Key: []byte("k"), Value: []byte(fmt.Sprintf("record-%02d-%s", i, strings.Repeat("x", 40)))})
	}
	segs := segments(t, dir, "t", 0)
	if len(segs) < 4 {
		t.Fatalf("want several segments at SegmentBytes=256, got %d", len(segs))
	}
	c, err := l.Subscribe(context.Background(), "t", "slow")
	if err != nil {
		t.Fatal(err)
	}
	// Young segments are kept.
	if n, err := l.EnforceRetention(); err != nil || n != 0 {
		t.Fatalf("EnforceRetention on young segments = %d, %v", n, err)
	}
	// Old segments are kept while a group has not committed past them.
	old := now.Add(-2 * time.Hour)
	for _, s := range segs {
		if err := os.Chtimes(s, old, old); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := l.EnforceRetention(); err != nil || n != 0 {
		t.Fatalf("EnforceRetention with an uncommitted group = %d, %v", n, err)
	}
	// Once the group has processed half, the segments before its position go.
	for range 10 {
		(<-c.Messages()).Ack()
	}
	c.Close()
	n, err := l.EnforceRetention()
	if err != nil || n == 0 {
		t.Fatalf("EnforceRetention after commits = %d, %v", n, err)
	}
	left := segments(t, dir, "t", 0)
	if len(left) != len(segs)-n {
		t.Fatalf("%d segments left, want %d", len(left), len(segs)-n)
	}
	// The committed group resumes where it was; records after it are intact.
	got := readAll(t, l, "t", "slow", 10)
	if got[0] != "record-10-"+strings.Repeat("x", 40) {
		t.Fatalf("resumed at %q", got[0])
	}
	// A new group starts at the earliest retained record.
	got = readAll(t, l, "t", "late", 1)
	if got[0] > "record-10" {
		t.Fatalf("new group started at %q, past the committed records", got[0])
	}
}

// TestIdleActiveSegmentIsSealedAndDeleted checks that records in a
// partition that receives no more appends still go after SegmentMaxAge +
// Retention (they carry OTPs in clear), once every group has committed
// them, and that readers in the sealed segment carry on.
func TestIdleActiveSegmentIsSealedAndDeleted(t *testing.T) {
	dir := t.TempDir()
	const maxAge, retention, interval = 200 * time.Millisecond, 300 * time.Millisecond, 20 * time.Millisecond
	l := openT(t, dir, embedded.Config{Partitions: 1, SegmentMaxAge: maxAge, Retention: retention, RetentionInterval: interval})
	ctx := context.Background()
	fast, err := l.Subscribe(ctx, "t", "fast")
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	slow, err := l.Subscribe(ctx, "t", "slow")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		publishT(t, l, "t", bus.Message{Key: []byte("k"), Value: []byte(fmt.Sprintf("otp-%d", i))})
	}
	first := segments(t, dir, "t", 0)
	if len(first) != 1 {
		t.Fatalf("segments after publishing = %v, want one", first)
	}
	receive := func(c bus.Consumer, n int) []*bus.Message {
		t.Helper()
		var out []*bus.Message
		timer := time.NewTimer(10 * time.Second)
		defer timer.Stop()
		for len(out) < n {
			select {
			case m := <-c.Messages():
				out = append(out, m)
			case <-timer.C:
				t.Fatalf("received %d of %d", len(out), n)
			}
		}
		return out
	}
	for _, m := range receive(fast, 3) {
		m.Ack()
	}
	held := receive(slow, 3) // delivered, not acknowledged

	// No more appends: the segment is sealed once its first record is
	// older than SegmentMaxAge, and a new empty one becomes active.
	deadline := time.Now().Add(10 * time.Second)
	for len(segments(t, dir, "t", 0)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("active segment never sealed without appends: %v", segments(t, dir, "t", 0))
		}
		time.Sleep(interval)
	}
	// The group that has not committed holds the sealed segment past its
	// retention.
	time.Sleep(retention + 5*interval)
	if _, err := os.Stat(first[0]); err != nil {
		t.Fatalf("segment deleted while group slow had not committed it: %v", err)
	}
	for _, m := range held {
		m.Ack()
	}
	if err := slow.Close(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(first[0]); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sealed segment %s not deleted after every group committed it", first[0])
		}
		time.Sleep(interval)
	}

	// The reader that sat at the end of the sealed (now deleted) segment
	// gets the next record, and so does the committed group on its return.
	publishT(t, l, "t", bus.Message{Key: []byte("k"), Value: []byte("otp-3")})
	if m := receive(fast, 1)[0]; string(m.Value) != "otp-3" || m.Offset != 3 {
		t.Fatalf("fast got %q at offset %d after the roll, want otp-3 at 3", m.Value, m.Offset)
	}
	if got := readAll(t, l, "t", "slow", 1); got[0] != "otp-3" {
		t.Fatalf("slow resumed at %q, want otp-3", got[0])
	}
}

// TestSegmentAgeIsThatOfItsFirstRecord checks that SegmentMaxAge counts
// from the first record of the active segment: not from when the empty
// segment was created, and not from its last write after a restart.
func TestSegmentAgeIsThatOfItsFirstRecord(t *testing.T) {
	dir := t.TempDir()
	const maxAge = time.Hour
	var mu sync.Mutex
	now := time.Now().Add(-10 * maxAge) // behind the files' modification times
	cfg := embedded.Config{Partitions: 1, SegmentMaxAge: maxAge, Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	l, err := embedded.Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Subscribe(context.Background(), "t", "g") // creates the topic
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	advance(2 * maxAge) // the empty active segment is old; its first record will not be
	publishT(t, l, "t", bus.Message{Value: []byte("otp-0")})
	advance(maxAge / 2)
	publishT(t, l, "t", bus.Message{Value: []byte("otp-1")})
	if _, err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if segs := segments(t, dir, "t", 0); len(segs) != 1 {
		t.Fatalf("segment sealed at half its SegmentMaxAge: %v", segs)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openT(t, dir, cfg)
	advance(maxAge/2 + time.Minute)
	if _, err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if segs := segments(t, dir, "t", 0); len(segs) != 2 {
		t.Fatalf("segment whose first record is older than SegmentMaxAge not sealed after a restart: %v", segs)
	}
}

func TestRejectsBadInput(t *testing.T) {
	l := openT(t, t.TempDir(), embedded.Config{MaxRecordBytes: 1024})
	ctx := context.Background()
	if err := l.Publish(ctx, "../escape", bus.Message{Value: []byte("x")}); err == nil {
		t.Fatal("Publish to a path-like topic succeeded")
	}
	if _, err := l.Subscribe(ctx, "t", "a/b"); err == nil {
		t.Fatal("Subscribe with a path-like group succeeded")
	}
	if err := l.Publish(ctx, "t", bus.Message{Value: make([]byte, 2048)}); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("oversized record: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.Publish(cctx, "t", bus.Message{Value: []byte("x")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish with a cancelled context = %v", err)
	}
}

func TestLagCountsUncommittedRecords(t *testing.T) {
	l := openT(t, t.TempDir(), embedded.Config{})
	for i := range 5 {
		publishT(t, l, "t", bus.Message{Key: []byte(strconv.Itoa(i)), Value: []byte("v")})
	}
	c, err := l.Subscribe(context.Background(), "t", "g")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lagger := c.(interface{ Lag() int64 })
	if got := lagger.Lag(); got != 5 {
		t.Fatalf("Lag = %d, want 5", got)
	}
	for range 5 {
		(<-c.Messages()).Ack()
	}
	if got := lagger.Lag(); got != 0 {
		t.Fatalf("Lag after acking all = %d, want 0", got)
	}
}

// TestKill9LosesNothingAcknowledged runs a child process that publishes
// as fast as it can and prints each acknowledged record, kills it with
// SIGKILL mid-stream, and checks that every acknowledged record is in the
// log after reopening (and the log accepts appends again).
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	if dir := os.Getenv("OTPHUB_EMBEDDED_CHILD_DIR"); dir != "" {
		childPublish(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9LosesNothingAcknowledged$")
	cmd.Env = append(os.Environ(), "OTPHUB_EMBEDDED_CHILD_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
			acked[v] = true
			if len(acked) == 300 {
				break
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() { // acknowledgements printed before the kill landed
		if v, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
			acked[v] = true
		}
	}
	cmd.Wait()
	if len(acked) < 300 {
		t.Fatalf("child acknowledged only %d records", len(acked))
	}

	l := openT(t, dir, embedded.Config{}) // the lock died with the child
	publishT(t, l, "t", bus.Message{Key: []byte("after"), Value: []byte("after")})
	c, err := l.Subscribe(context.Background(), "t", "check")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for len(acked) > 0 {
		select {
		case m := <-c.Messages():
			m.Ack()
			delete(acked, string(m.Value))
		case <-time.After(10 * time.Second):
			t.Fatalf("%d acknowledged records missing after kill -9", len(acked))
		}
	}
}

func childPublish(dir string) {
	l, err := embedded.Open(dir, embedded.Config{SegmentBytes: 16 << 10})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				v := fmt.Sprintf("w%d-%d", w, i)
				if err := l.Publish(context.Background(), "t", bus.Message{Key: []byte(v), Value: []byte(v)}); err != nil {
					fmt.Println("ERR", err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Println("ACK", v)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestJoinMovesPartitionsAtCommittedPositions: a member that acknowledged
// everything loses half its partitions to a joining member; the newcomer
// starts at the committed positions, so nothing acknowledged is delivered
// again and nothing new is missed.
func TestJoinMovesPartitionsAtCommittedPositions(t *testing.T) {
	l := openT(t, t.TempDir(), embedded.Config{Partitions: 4})
	ctx := context.Background()
	var batch []bus.Message
	for i := range 40 {
		batch = append(batch, bus.Message{Key: []byte(fmt.Sprintf("org-%d", i)), Value: []byte(fmt.Sprintf("a%d", i))})
	}
	publishT(t, l, "t", batch...)
	c1, err := l.Subscribe(ctx, "t", "g")
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	for range 40 {
		(<-c1.Messages()).Ack()
	}
	c2, err := l.Subscribe(ctx, "t", "g")
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for i := range batch {
		batch[i].Value = []byte(fmt.Sprintf("b%d", i))
	}
	publishT(t, l, "t", batch...)
	got := map[string]int{}
	from := [2]int{}
	timeout := time.After(10 * time.Second)
	for len(got) < 40 {
		select {
		case m := <-c1.Messages():
			m.Ack()
			got[string(m.Value)]++
			from[0]++
		case m := <-c2.Messages():
			m.Ack()
			got[string(m.Value)]++
			from[1]++
		case <-timeout:
			t.Fatalf("got %d of 40 after the join", len(got))
		}
	}
	for v, n := range got {
		if !strings.HasPrefix(v, "b") || n != 1 {
			t.Fatalf("%s delivered %d times after the join", v, n)
		}
	}
	if from[0] == 0 || from[1] == 0 {
		t.Fatalf("shares after the join: %v", from)
	}
}

// The active segment's file runs ahead of its records with zeros (so an
// append's fsync has no metadata to write); Close cuts it back, and a crash
// that leaves the zeros loses nothing: recovery drops them like a torn tail.
func TestPreallocatedTailIsCutBackAtCloseAndDroppedAfterACrash(t *testing.T) {
	dir := t.TempDir()
	cfg := embedded.Config{Partitions: 1}
	l := openT(t, dir, cfg)
	for i := range 3 {
		publishT(t, l, "t", bus.Message{Key: []byte("k"), Value: []byte(fmt.Sprintf("m%d", i))})
	}
	active := segments(t, dir, "t", 0)[0]
	open := fileSize(t, active)
	if open < 1<<20 {
		t.Fatalf("active segment is %d bytes while open, want it preallocated (≥ 1 MiB)", open)
	}
	// A crash: a copy of the data directory as it is now, zeros included.
	crashed := t.TempDir()
	if err := os.CopyFS(crashed, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if closed := fileSize(t, active); closed >= 200 {
		t.Fatalf("active segment is %d bytes after Close, want its 3 small records only", closed)
	}

	for name, d := range map[string]string{"closed": dir, "crashed": crashed} {
		t.Run(name, func(t *testing.T) {
			l := openT(t, d, cfg)
			publishT(t, l, "t", bus.Message{Key: []byte("k"), Value: []byte("after")})
			if got := strings.Join(readAll(t, l, "t", "g", 4), ","); got != "m0,m1,m2,after" {
				t.Fatalf("read %s, want m0,m1,m2,after", got)
			}
			l.Close()
		})
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
