package reliability_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestStartupErrorIsReportedNotPanic: when otphub cannot start (here: its
// PostgreSQL is unreachable), it must say why and exit non-zero, not crash
// with a nil-pointer panic.
//
// Regression test: app.New's deferred cleanup used to run after
// `return nil, err` had set its named result to nil, so every start-up
// error became a nil-pointer panic in (*App).Close (fixed in da36111).
func TestStartupErrorIsReportedNotPanic(t *testing.T) {
	out, err := runOtphub(t, "serve", "--addr", freeAddr(t), "--data-dir", t.TempDir(),
		"--database-url", "postgres://postgres@127.0.0.1:1/unreachable?sslmode=disable&connect_timeout=2",
		"--encryption-key", randomHex(32))
	if err == nil {
		t.Fatalf("otphub started with an unreachable database; output:\n%s", tail(out, 2048))
	}
	if strings.Contains(out, "panic:") {
		t.Errorf("BUG: a start-up error panics instead of being reported:\n%s", tail(out, 2048))
	} else if !strings.Contains(out, "postgresql") {
		t.Errorf("the start-up error does not name the store; output:\n%s", tail(out, 2048))
	}
}

// TestDeliveryTimeoutFlagRange: --delivery-timeout accepts up to 2m
// (otphub serve --help, config validation), so otphub must start with any
// value in that range.
//
// Regression test: the dispatcher requires its retry lease to outlive the
// attempt timeout, and the app used to leave the lease at 30 s, so any
// --delivery-timeout of 30 s or more failed the start (fixed in f199c61).
func TestDeliveryTimeoutFlagRange(t *testing.T) {
	p := startProcNoWait(t, "otphub", freeAddr(t), "--data-dir", t.TempDir(), "--delivery-timeout", "45s")
	waitFor(t, 60*time.Second, "otphub ready with --delivery-timeout 45s", func() bool {
		if !p.alive() {
			t.Fatalf("BUG: otphub does not start with --delivery-timeout 45s (accepted by the flag's validation):\n%s",
				tail(p.stderr.String()+p.stdout.String(), 2048))
		}
		return p.ready()
	})
}

// runOtphub runs the binary to completion (at most a minute) and returns
// its combined output.
func runOtphub(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := exec.CommandContext(ctx, otphubBinary(t), args...).CombinedOutput()
	return string(b), err
}
