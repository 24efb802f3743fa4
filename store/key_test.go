package store_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/otphub/otphub/store"
)

func TestParseKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xfb, 0x01, 0xff, 0x3e}, 8)
	for name, in := range map[string]string{
		"hex":            hex.EncodeToString(key),
		"HEX":            strings.ToUpper(hex.EncodeToString(key)),
		"base64":         base64.StdEncoding.EncodeToString(key),
		"base64 raw":     base64.RawStdEncoding.EncodeToString(key),
		"base64url":      base64.URLEncoding.EncodeToString(key),
		"base64url raw":  base64.RawURLEncoding.EncodeToString(key),
		"spaces/newline": "  " + base64.StdEncoding.EncodeToString(key) + "\n",
	} {
		got, err := store.ParseKey(in)
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("ParseKey(%s) = %x, %v; want %x", name, got, err, key)
		}
	}
	for name, in := range map[string]string{
		"empty":      "",
		"short hex":  hex.EncodeToString(key[:16]),
		"short b64":  base64.StdEncoding.EncodeToString(key[:31]),
		"long b64":   base64.StdEncoding.EncodeToString(append(key, 1)),
		"not either": "this is not a key at all, not hex and not base64!!",
	} {
		_, err := store.ParseKey(in)
		if err == nil {
			t.Errorf("ParseKey(%s) accepted %q", name, in)
			continue
		}
		if in != "" && strings.Contains(err.Error(), in) {
			t.Errorf("ParseKey(%s) error echoes the input: %v", name, err)
		}
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	k1, err := store.LoadOrCreateKey(dir)
	if err != nil || len(k1) != store.KeySize {
		t.Fatalf("LoadOrCreateKey(first) = %x, %v", k1, err)
	}
	fi, err := os.Stat(filepath.Join(dir, store.KeyFileName))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %o, want 600", perm)
	}
	k2, err := store.LoadOrCreateKey(dir)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("LoadOrCreateKey(second) = %x, %v; want the first key %x", k2, err, k1)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data dir holds %d entries, want only %s (no temp files left)", len(entries), store.KeyFileName)
	}
}

func TestLoadOrCreateKeyConcurrent(t *testing.T) {
	dir := t.TempDir()
	keys := make([][]byte, 8)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() { defer wg.Done(); keys[i], errs[i] = store.LoadOrCreateKey(dir) }()
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil || !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("racer %d got %x, %v; racer 0 got %x", i, keys[i], errs[i], keys[0])
		}
	}
}

func TestLoadOrCreateKeyReadsOperatorFiles(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	for name, content := range map[string][]byte{
		"hex":    []byte(hex.EncodeToString(key) + "\n"),
		"base64": []byte(base64.StdEncoding.EncodeToString(key)),
		"raw":    key,
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, store.KeyFileName), content, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := store.LoadOrCreateKey(dir)
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("%s key file: got %x, %v", name, got, err)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, store.KeyFileName), []byte("garbage"), 0o600)
	if _, err := store.LoadOrCreateKey(dir); err == nil {
		t.Errorf("a garbage key file was accepted")
	}
}
