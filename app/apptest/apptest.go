// Package apptest starts a whole otphub in-process for tests: real HTTP on
// a loopback port, the embedded store and log in a temporary directory (or
// PostgreSQL and Kafka when the args say so).
package apptest

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/app"
	"github.com/otphub/otphub/config"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writes and reads; tests
// capture a server's standard output with it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestServer is a whole otphub started in-process on a loopback port.
type TestServer struct {
	*app.App
	URL      string
	Stdout   *SyncBuffer
	Logs     *SyncBuffer // the JSON logs (stderr)
	Registry *prometheus.Registry
	stop     context.CancelFunc
	done     chan error
	once     sync.Once
}

// Options tune what flags cannot: knobs only tests need.
type Options struct {
	// BacklogInterval is how often the back-pressure gate rereads the
	// pending counts; default 2 s.
	BacklogInterval time.Duration
}

// Start starts otphub in-process with args (flags as on the command
// line; unless given, --addr is a free loopback port and --data-dir a
// temporary directory) and stops it in t.Cleanup. A test restarting a
// server on the same data gives the previous one's --addr too, so that
// its public URL (and topic URLs) stay the same. Logs go to the test log
// only when the test fails.
func Start(t testing.TB, args ...string) *TestServer {
	t.Helper()
	return StartWith(t, Options{}, args...)
}

// StartWith is Start with opts.
func StartWith(t testing.TB, opts Options, args ...string) *TestServer {
	t.Helper()
	addr := "127.0.0.1:0"
	for i, a := range args[:max(len(args)-1, 0)] {
		if a == "--addr" {
			addr = args[i+1]
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	full := append([]string{"--addr", ln.Addr().String(), "--data-dir", t.TempDir(),
		"--egress-allow-cidrs", "127.0.0.0/8", "--allow-console-provider", "--shutdown-timeout", "5s"}, args...)
	cfg, err := config.Parse(full, func(string) string { return "" }, &bytes.Buffer{})
	if err != nil {
		ln.Close()
		t.Fatalf("config: %v", err)
	}
	stdout, logs := &SyncBuffer{}, &SyncBuffer{}
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, app.Options{Stdout: stdout, Stderr: logs, Version: "test", Registry: reg,
		BacklogInterval: opts.BacklogInterval})
	if err != nil {
		cancel()
		ln.Close()
		t.Fatalf("app: %v", err)
	}
	s := &TestServer{App: a, URL: cfg.PublicURL, Stdout: stdout, Logs: logs, Registry: reg, stop: cancel, done: make(chan error, 1)}
	go func() { s.done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		s.Stop(t)
		if t.Failed() {
			t.Logf("otphub logs:\n%s", logs.String())
		}
	})
	return s
}

// Stop shuts the server down gracefully and waits for it; idempotent.
func (s *TestServer) Stop(t testing.TB) {
	s.once.Do(func() {
		s.stop()
		select {
		case err := <-s.done:
			if err != nil {
				t.Errorf("otphub stopped with: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("otphub did not stop within 30s")
		}
	})
}
