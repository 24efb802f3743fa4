package sqlite_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/sqlite"
)

// TestKill9LosesNothingCommitted runs a child process that commits delivery
// tasks as fast as it can and prints each task's ID once InsertDeliveryTasks
// has returned, kills it with SIGKILL mid-stream, and checks that every
// reported task is in the reopened database.
func TestKill9LosesNothingCommitted(t *testing.T) {
	if dir := os.Getenv("OTPHUB_SQLITE_CRASH_CHILD"); dir != "" {
		crashChild(dir)
		return
	}
	dir, key := t.TempDir(), testKey(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9LosesNothingCommitted$", "-test.count=1")
	cmd.Env = append(os.Environ(), "OTPHUB_SQLITE_CRASH_CHILD="+dir, "OTPHUB_SQLITE_CRASH_KEY="+hex.EncodeToString(key))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var committed []string
	sc := bufio.NewScanner(out)
	deadline := time.Now().Add(90 * time.Second)
	for sc.Scan() && time.Now().Before(deadline) {
		line := sc.Text()
		if id, ok := strings.CutPrefix(line, "committed "); ok {
			committed = append(committed, id)
			if len(committed) == 40 {
				break
			}
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if len(committed) < 40 {
		t.Fatalf("child reported only %d commits before the deadline", len(committed))
	}

	s := openAt(t, dir, key)
	ctx := context.Background()
	org, err := s.GetOrg(ctx, "crash")
	if err != nil {
		t.Fatalf("org after kill -9: %v", err)
	}
	for _, id := range committed {
		if _, _, err := s.GetDelivery(ctx, org.ID, id); err != nil {
			t.Fatalf("task %s was reported committed before kill -9 but is gone: %v", id, err)
		}
	}
}

func crashChild(dir string) {
	key, _ := hex.DecodeString(os.Getenv("OTPHUB_SQLITE_CRASH_KEY"))
	ctx := context.Background()
	s, err := sqlite.Open(ctx, dir, store.Options{EncryptionKey: key})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	org, err := s.CreateOrg(ctx, "crash")
	if err != nil {
		fmt.Fprintln(os.Stderr, "child org:", err)
		os.Exit(2)
	}
	now := time.Now()
	for i := 0; ; i++ {
		id := fmt.Sprintf("task-%06d", i)
		tk := store.DeliveryTask{ID: id, OrgID: org.ID, EventID: id, DestinationType: "webhook", DestinationID: "s",
			Event: []byte(`{"x":1}`), NextAttemptAt: now, ExpiresAt: now.Add(time.Hour)}
		if _, err := s.InsertDeliveryTasks(ctx, []store.DeliveryTask{tk}, nil); err != nil {
			fmt.Fprintln(os.Stderr, "child insert:", err)
			os.Exit(2)
		}
		fmt.Println("committed " + id)
	}
}
