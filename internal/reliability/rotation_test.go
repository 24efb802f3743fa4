package reliability_test

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/app/apptest"
)

// TestEncryptionKeyRotation rotates the encryption key of a server with
// state under it (SMS provider credentials, a WebSub subscription secret,
// token signing keys, delivery records, a pending OTP and backup codes)
// through the documented steps: the new key as next, then as current with
// the old one as previous (the background pass moves every secret to the
// new key), then alone. Everything works at every step.
func TestEncryptionKeyRotation(t *testing.T) {
	keyA, keyB := randomKey(t), randomKey(t)
	dir := t.TempDir()
	s1 := apptest.Start(t, "--data-dir", dir, "--encryption-key", keyA)
	addr := strings.TrimPrefix(s1.URL, "http://")
	c := newClient(s1.URL)
	tn := setupTenant(t, c, s1.AdminClientID, s1.AdminClientSecret, "rot", "otp", "admin", "subscribe")
	org := "/api/v1/orgs/rot"
	c.mustDo(t, http.MethodPut, org+"/sms-otp/settings", tn.token, map[string]any{"backupCodesEnabled": true}, nil)
	c.mustDo(t, http.MethodPut, org+"/sms-provider", tn.token, map[string]any{"type": "console"}, nil)
	var backup struct{ Codes []string }
	c.mustDo(t, http.MethodPost, org+"/users/alice/backup-codes", tn.token, nil, &backup)
	webhook := newReceiver(t, nil)
	subscribe(t, c, s1.URL, tn, webhook.URL+"/cb")
	pending, pendingCode := startChallenge(t, c, s1, tn, 1)
	waitFor(t, 10*time.Second, "webhook delivery", func() bool { return webhook.acceptedCount() == 1 })
	s1.Stop(t)

	// Step 1: the new key is known (opened) but not used.
	s1b := apptest.Start(t, "--addr", addr, "--data-dir", dir, "--encryption-key", keyA, "--next-encryption-key", keyB)
	c = newClient(s1b.URL)
	tn.token = c.token(t, tn.clientID, tn.clientSecret)
	checkServes(t, c, s1b, tn, webhook, 2, backup.Codes[2])
	if v := metric(t, c, "otphub_sealed_values_last_pass_start_timestamp_seconds"); v != 0 {
		t.Errorf("a reseal pass ran with a next key configured (started at %v)", v)
	}
	s1b.Stop(t)

	// Step 2: the new key, the old one still accepted.
	s2 := apptest.Start(t, "--addr", addr, "--data-dir", dir, "--encryption-key", keyB, "--previous-encryption-keys", keyA)
	c = newClient(s2.URL)
	tn.token = c.token(t, tn.clientID, tn.clientSecret) // the signing key opens
	verify(t, c, tn, pending, map[string]any{"code": pendingCode})
	checkServes(t, c, s2, tn, webhook, 4, backup.Codes[0])
	waitFor(t, 10*time.Second, "a reseal pass leaving nothing under the old key", func() bool {
		return metric(t, c, "otphub_sealed_values_resealed_total") > 0 && metric(t, c, "otphub_sealed_values_previous_key") == 0 &&
			metric(t, c, "otphub_sealed_values_last_pass_start_timestamp_seconds") > 0
	})
	s2.Stop(t)

	// The old key removed.
	s3 := apptest.Start(t, "--addr", addr, "--data-dir", dir, "--encryption-key", keyB)
	c = newClient(s3.URL)
	tn.token = c.token(t, tn.clientID, tn.clientSecret)
	checkServes(t, c, s3, tn, webhook, 6, backup.Codes[1])
}

func randomKey(t *testing.T) string {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(k)
}

var consoleOTP = regexp.MustCompile(`to="\+9477000000(\d)" .*?password for the rotapp is ([0-9A-Z]+)\.`)

// startChallenge starts a challenge for alice on the n-th test number and
// returns its ID and the OTP the console provider printed for it.
func startChallenge(t *testing.T, c *client, s *apptest.TestServer, tn tenant, n int) (id, code string) {
	t.Helper()
	var ch struct{ ID string }
	c.mustDo(t, http.MethodPost, "/api/v1/orgs/"+tn.name+"/sms-otp/challenges", tn.token,
		map[string]any{"mobile": fmt.Sprintf("+9477000000%d", n), "userId": "alice", "application": "rotapp"}, &ch)
	t.Cleanup(func() {
		if code == "" {
			t.Logf("stdout:\n%s", s.Stdout.String())
		}
	})
	waitFor(t, 10*time.Second, "the console SMS", func() bool {
		for _, m := range consoleOTP.FindAllStringSubmatch(s.Stdout.String(), -1) {
			if m[1] == strconv.Itoa(n) {
				code = m[2]
			}
		}
		return code != ""
	})
	return ch.ID, code
}

func verify(t *testing.T, c *client, tn tenant, challenge string, body map[string]any) {
	t.Helper()
	var out struct{ Verified bool }
	c.mustDo(t, http.MethodPost, "/api/v1/orgs/"+tn.name+"/sms-otp/challenges/"+challenge+"/verify", tn.token, body, &out)
	if !out.Verified {
		t.Fatalf("verify %v: not verified", body)
	}
}

// checkServes starts challenges n and n+1: the provider credentials open
// (the SMS is sent), the webhook's secret opens (its deliveries arrive),
// the OTP verifies and so does the backup code.
func checkServes(t *testing.T, c *client, s *apptest.TestServer, tn tenant, webhook *receiver, n int, backupCode string) {
	t.Helper()
	id, code := startChallenge(t, c, s, tn, n)
	verify(t, c, tn, id, map[string]any{"code": code})
	id, _ = startChallenge(t, c, s, tn, n+1)
	verify(t, c, tn, id, map[string]any{"backupCode": backupCode})
	waitFor(t, 10*time.Second, "webhook deliveries", func() bool { return webhook.acceptedCount() == n+1 })
}

// metric reads one unlabelled series from /metrics.
func metric(t *testing.T, c *client, name string) float64 {
	t.Helper()
	resp, err := c.hc.Get(c.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}
