package main

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeBinaryGracefulShutdown builds the real binary, starts
// `otphub serve`, waits for /healthz, sends SIGTERM and expects a clean
// exit with JSON logs on stderr and the admin credentials on stdout.
func TestServeBinaryGracefulShutdown(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "otphub")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	cmd := exec.Command(bin, "serve", "--addr", addr, "--data-dir", t.TempDir())
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outLines := make(chan string, 100)
	go func() {
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			outLines <- s.Text()
		}
		close(outLines)
	}()
	var logs []string
	logsDone := make(chan struct{})
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			logs = append(logs, s.Text())
		}
		close(logsDone)
	}()

	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("server never became healthy: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { <-logsDone; waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\nlogs:\n%s", err, strings.Join(logs, "\n"))
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("no exit within 30s of SIGTERM")
	}

	var printed []string
	for l := range outLines {
		printed = append(printed, l)
	}
	secret := ""
	for _, l := range printed {
		if v, ok := strings.CutPrefix(l, "OTPHUB_ADMIN_CLIENT_SECRET="); ok {
			secret = v
		}
	}
	if secret == "" {
		t.Fatalf("first start did not print admin credentials: %q", printed)
	}
	sawShutdown := false
	for _, l := range logs {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", l)
			continue
		}
		if rec["msg"] == "otphub shutting down" {
			sawShutdown = true
		}
		if strings.Contains(l, secret) {
			t.Errorf("a secret reached the logs: %q", l)
		}
	}
	if !sawShutdown {
		t.Errorf("no shutdown log; logs:\n%s", strings.Join(logs, "\n"))
	}
}
