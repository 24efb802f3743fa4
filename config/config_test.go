package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/authcore"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestDefaults(t *testing.T) {
	c, err := Parse(nil, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.DataDir != "./data" || c.PublicURL != "http://127.0.0.1:8080" {
		t.Fatalf("defaults: %+v", c)
	}
	if len(c.Roles) != 3 || !c.Has(RoleHub) || !c.Embedded() {
		t.Fatalf("roles: %v", c.Roles)
	}
	if c.ShutdownTimeout != 20*time.Second || c.DeliveryMaxAttempts != 10 || c.Kafka.Partitions != 12 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestPrecedenceFlagEnvFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "otphub.yaml")
	if err := os.WriteFile(file, []byte("addr: 127.0.0.1:7000\nlog-level: debug\nroles: [hub, dispatcher]\nkafka-brokers:\n  - a:9092\n  - b:9092\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]string{"--config", file, "--log-level", "warn"},
		env(map[string]string{"OTPHUB_ADDR": "127.0.0.1:9000", "OTPHUB_LOG_LEVEL": "error"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9000" {
		t.Errorf("env must beat file: %s", c.Addr)
	}
	if c.LogLevel != "warn" {
		t.Errorf("flag must beat env: %s", c.LogLevel)
	}
	if strings.Join(c.Roles, ",") != "hub,dispatcher" || strings.Join(c.KafkaBrokers, ",") != "a:9092,b:9092" {
		t.Errorf("file lists: %v %v", c.Roles, c.KafkaBrokers)
	}
}

func TestInvalidNamesSetting(t *testing.T) {
	key := strings.Repeat("ab", 32)
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--addr", "nonsense"}, nil, "--addr"},
		{nil, map[string]string{"OTPHUB_ROLES": "hub,mailer"}, "OTPHUB_ROLES: unknown role \"mailer\""},
		{[]string{"--public-url", "ftp://x"}, nil, "--public-url"},
		{[]string{"--database-url", "mysql://x"}, nil, "--database-url"},
		{[]string{"--database-url", "postgres://x/db"}, nil, "--encryption-key: is required with --database-url"},
		{[]string{"--encryption-key", "short"}, nil, "--encryption-key"},
		{[]string{"--egress-allow-cidrs", "10.0.0.0/8,bogus"}, nil, "--egress-allow-cidrs: \"bogus\""},
		{[]string{"--kafka-brokers", "nohostport"}, nil, "--kafka-brokers"},
		{[]string{"--admin-client-id", "admin"}, nil, "must be given together"},
		{[]string{"--admin-client-id", "admin", "--admin-client-secret", "sixteen-chars-ok"}, nil, "--admin-client-secret: must be at least 32 characters"},
		{[]string{"--delivery-max-attempts", "0"}, nil, "--delivery-max-attempts"},
		{[]string{"--kafka-tls=maybe"}, nil, "--kafka-tls"},
		{[]string{"--kafka-session-timeout", "1s"}, nil, "--kafka-session-timeout"},
		{[]string{"--log-retention", "10m"}, nil, "--log-retention"},
		{[]string{"--max-pending-per-org=5"}, nil, "--max-pending-per-org: was removed: back-pressure is now per destination"},
		{nil, map[string]string{"OTPHUB_MAX_PENDING_PER_ORG": "5"}, "OTPHUB_MAX_PENDING_PER_ORG: was removed"},
		{nil, map[string]string{"OTPHUB_SHUTDOWN_TIMEOUT": "forever"}, "OTPHUB_SHUTDOWN_TIMEOUT"},
		{[]string{"--kafka-sasl-mechanism", "plain"}, nil, "SASL needs both"},
		{[]string{"--database-url", "postgres://x/db", "--encryption-key", key}, nil, ""},
		{[]string{"--previous-encryption-keys", key}, nil, "--previous-encryption-keys: needs --encryption-key"},
		{[]string{"--encryption-key", key, "--previous-encryption-keys", strings.Repeat("cd", 32) + ",short"}, nil, "--previous-encryption-keys: key 2"},
		{[]string{"--encryption-key", key, "--previous-encryption-keys", key}, nil, "--previous-encryption-keys: key 1 is the current --encryption-key"},
		{[]string{"--next-encryption-key", key}, nil, "--next-encryption-key: needs --encryption-key"},
		{[]string{"--encryption-key", key, "--next-encryption-key", key}, nil, "--next-encryption-key: is the current --encryption-key"},
		{[]string{"--encryption-key", key, "--next-encryption-key", strings.Repeat("cd", 32), "--previous-encryption-keys", strings.Repeat("ef", 32)}, nil, "--next-encryption-key: cannot start a rotation"},
		{[]string{"--encryption-key", key, "--next-encryption-key", strings.Repeat("cd", 32)}, nil, ""},
		{nil, map[string]string{"OTPHUB_ENCRYPTION_KEY": key, "OTPHUB_PREVIOUS_ENCRYPTION_KEYS": strings.Repeat("cd", 32) + ", " + strings.Repeat("ef", 32)}, ""},
		{[]string{"--otp-limit-per-number", "10"}, nil, "--otp-limit-per-number: must be N/duration"},
		{[]string{"--otp-limit-per-ip", "100/10"}, nil, "--otp-limit-per-ip: must be N/duration"},
		{[]string{"--otp-limit-per-org", "-1/1m"}, nil, "--otp-limit-per-org"},
		{[]string{"--otp-limit-per-org", "many/1m"}, nil, "--otp-limit-per-org"},
		{[]string{"--otp-limit-per-number", "10/500ms"}, nil, "--otp-limit-per-number"},
		{[]string{"--otp-limit-per-number", "10/169h"}, nil, "--otp-limit-per-number"},
		{[]string{"--otp-limit-per-number", "10000001/1h"}, nil, "--otp-limit-per-number"},
		{[]string{"--otp-limit-per-number", "0/never"}, nil, "--otp-limit-per-number"},
		{nil, map[string]string{"OTPHUB_OTP_LIMIT_PER_IP": "100 per 10m"}, "OTPHUB_OTP_LIMIT_PER_IP: must be N/duration"},
	}
	for _, tc := range cases {
		_, err := Parse(tc.args, env(tc.env), &bytes.Buffer{})
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: unexpected %v", tc.args, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: got %v, want mention of %q", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestSecretsNotEchoed(t *testing.T) {
	for _, flag := range []string{"--encryption-key", "--previous-encryption-keys", "--next-encryption-key"} {
		_, err := Parse([]string{flag, "hunter2-is-my-password"}, env(nil), &bytes.Buffer{})
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("%s: error must not echo the key: %v", flag, err)
		}
	}
}

func TestConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("adr: x\n"), 0o600)
	if _, err := Parse([]string{"--config", bad}, env(nil), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), `unknown key "adr"`) {
		t.Fatalf("unknown key: %v", err)
	}
	if _, err := Parse(nil, env(map[string]string{"OTPHUB_CONFIG": filepath.Join(dir, "missing.yaml")}), &bytes.Buffer{}); err == nil {
		t.Fatal("missing file must fail")
	}
}

func TestHelpListsEveryFlagAndEnv(t *testing.T) {
	var out bytes.Buffer
	_, err := Parse([]string{"--help"}, env(nil), &out)
	if !errors.Is(err, ErrHelp) {
		t.Fatalf("want ErrHelp, got %v", err)
	}
	for _, s := range settings {
		if !strings.Contains(out.String(), "-"+s.name) || !strings.Contains(out.String(), Env(s.name)) {
			t.Errorf("help lacks %s / %s", s.name, Env(s.name))
		}
	}
}

func TestOTPSendLimits(t *testing.T) {
	c, err := Parse(nil, env(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if c.OTPLimitPerNumber != (authcore.Limit{Max: 10, Window: time.Hour}) || c.OTPLimitPerIP != (authcore.Limit{Max: 100, Window: 10 * time.Minute}) ||
		c.OTPLimitPerOrg != (authcore.Limit{Max: 1000, Window: time.Minute}) {
		t.Fatalf("defaults: %v %v %v", c.OTPLimitPerNumber, c.OTPLimitPerIP, c.OTPLimitPerOrg)
	}
	for v, want := range map[string]authcore.Limit{
		"3/1s":        {Max: 3, Window: time.Second},
		"20/24h":      {Max: 20, Window: 24 * time.Hour},
		"5000/1h30m":  {Max: 5000, Window: 90 * time.Minute},
		"1/168h":      {Max: 1, Window: 168 * time.Hour},
		"0":           {Max: -1}, // disabled
		"0/1h":        {Max: -1},
		" 10/1h ":     {Max: 10, Window: time.Hour},
		"10000000/1m": {Max: 10_000_000, Window: time.Minute},
	} {
		c, err := Parse([]string{"--otp-limit-per-number", v}, env(map[string]string{"OTPHUB_OTP_LIMIT_PER_ORG": v}), &bytes.Buffer{})
		if err != nil {
			t.Errorf("%q: %v", v, err)
			continue
		}
		if c.OTPLimitPerNumber != want || c.OTPLimitPerOrg != want {
			t.Errorf("%q: got %v (flag) and %v (env), want %v", v, c.OTPLimitPerNumber, c.OTPLimitPerOrg, want)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "otphub.yaml")
	if err := os.WriteFile(file, []byte("otp-limit-per-ip: 1000/10m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := Parse([]string{"--config", file}, env(nil), &bytes.Buffer{}); err != nil || c.OTPLimitPerIP != (authcore.Limit{Max: 1000, Window: 10 * time.Minute}) {
		t.Fatalf("config file: %v %v", err, c)
	}
}

func TestReceiptWindow(t *testing.T) {
	c, err := Parse(nil, env(nil), &bytes.Buffer{})
	if err != nil || c.ReceiptWindow != time.Minute {
		t.Fatalf("default: %v %v, want 1m", c.ReceiptWindow, err)
	}
	for v, want := range map[string]time.Duration{"0": 0, "0s": 0, "90s": 90 * time.Second, "1h": time.Hour} {
		c, err := Parse([]string{"--receipt-window", v}, env(nil), &bytes.Buffer{})
		if err != nil || c.ReceiptWindow != want {
			t.Errorf("--receipt-window %s: %v %v, want %v", v, c.ReceiptWindow, err, want)
		}
	}
	for _, v := range []string{"500ms", "2h", "soon", "-1s"} {
		if _, err := Parse(nil, env(map[string]string{"OTPHUB_RECEIPT_WINDOW": v}), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "RECEIPT_WINDOW") {
			t.Errorf("OTPHUB_RECEIPT_WINDOW=%s: %v, want an error naming it", v, err)
		}
	}
}
