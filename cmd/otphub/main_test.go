package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestVersionAndHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "otphub ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"--help"}, &out, &errb); code != 0 {
		t.Fatalf("--help: %d", code)
	}
	for _, want := range []string{"otphub serve", "-public-url", "OTPHUB_DATABASE_URL", "OTPHUB_KAFKA_BROKERS", "OTPHUB_EGRESS_ALLOW_CIDRS", "OTPHUB_ADMIN_CLIENT_SECRET"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	out.Reset()
	if code := run([]string{"serve", "--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "OTPHUB_ROLES") {
		t.Fatalf("serve --help: %d %q", code, out.String())
	}
}

func TestBadInvocations(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"serve", "--roles", "hub,nope"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--roles") {
		t.Fatalf("bad config must exit 2 naming the setting: %d %q", code, errb.String())
	}
	errb.Reset()
	if code := run(nil, &out, &errb); code != 2 {
		t.Fatalf("no args: %d", code)
	}
}
