package console_test

import (
	"context"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/otphub/otphub/app/apptest"
)

// loginApp is examples/login-app running as its own process.
type loginApp struct {
	url string
}

// startLoginApp builds examples/login-app and starts it against otphub at
// issuer with an application's credentials, one demo user alice whose
// mobile is mobile.
func startLoginApp(t *testing.T, addr, issuer, clientID, secret, mobile string) *loginApp {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "login-app")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/otphub/otphub/examples/login-app").CombinedOutput(); err != nil {
		t.Fatalf("build examples/login-app: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out strings.Builder
	cmd := exec.CommandContext(ctx, bin, "--addr", addr, "--url", "http://"+addr, "--issuer", issuer,
		"--client-id", clientID, "--client-secret", secret, "--users", "alice:wonderland:"+mobile)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	a := &loginApp{url: "http://" + addr}
	eventually(t, "examples/login-app to listen", func() bool {
		resp, err := http.Get(a.url + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return a
}

// freeAddr is a loopback address nothing listens on (the login app must be
// told its own URL, which its application's redirect URI names, before it
// starts).
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// lastSMSCode waits for the console provider's line to mobile on otphub's
// output and returns the code in it.
func lastSMSCode(t *testing.T, srv *apptest.TestServer, mobile string) string {
	t.Helper()
	re := regexp.MustCompile(regexp.QuoteMeta(mobile) + `.*"[^"]*? is ([0-9A-Z]{4,10})\.[^"]*"\s*$`)
	var code string
	eventually(t, "the SMS to "+mobile+" on the console provider", func() bool {
		for _, line := range strings.Split(srv.Stdout.String(), "\n") {
			if m := re.FindStringSubmatch(line); m != nil {
				code = m[1]
			}
		}
		return code != ""
	})
	return code
}
