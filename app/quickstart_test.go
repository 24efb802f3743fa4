package app_test

import (
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/app/apptest"
)

// TestREADMEQuickstart runs the README's quickstart block, unchanged,
// against a fresh server, typing the OTP the console provider printed.
func TestREADMEQuickstart(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the quickstart needs %s (.ci/run installs it): %v", tool, err)
		}
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- quickstart:begin -->\n```sh\n(.*?)```\n<!-- quickstart:end -->").FindSubmatch(readme)
	if m == nil {
		t.Fatal("README has no quickstart block")
	}
	srv := apptest.Start(t)
	creds := regexp.MustCompile(`OTPHUB_ADMIN_CLIENT_ID=(\S+)\nOTPHUB_ADMIN_CLIENT_SECRET=(\S+)`).FindStringSubmatch(srv.Stdout.String())
	if creds == nil {
		t.Fatalf("first start printed no admin credentials; stdout:\n%s", srv.Stdout.String())
	}

	cmd := exec.Command("bash", "-euo", "pipefail", "-c", string(m[1]))
	cmd.Env = append(os.Environ(), "OTPHUB="+srv.URL, "OTPHUB_ADMIN_CLIENT_ID="+creds[1], "OTPHUB_ADMIN_CLIENT_SECRET="+creds[2])
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	otpRe := regexp.MustCompile(`one-time password for the myapp is ([0-9A-Z]+)\.`)
	deadline := time.Now().Add(30 * time.Second)
	var otp string
	for otp == "" && time.Now().Before(deadline) {
		if mm := otpRe.FindStringSubmatch(srv.Stdout.String()); mm != nil {
			otp = mm[1]
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if otp == "" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("no SMS on the console; script output:\n%s\nserver stdout:\n%s", out.String(), srv.Stdout.String())
	}
	_, _ = io.WriteString(stdin, otp+"\n")
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("quickstart failed: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), `{"verified":true}`) {
		t.Fatalf("quickstart did not verify the OTP:\n%s", out.String())
	}
}
