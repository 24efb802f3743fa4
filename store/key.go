package store

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeyFileName is the file LoadOrCreateKey keeps the encryption key in.
const KeyFileName = "secret.key"

// KeySize is the length of Options.EncryptionKey (AES-256).
const KeySize = 32

// ParseKey decodes a 32-byte encryption key given as hex (64 digits) or
// base64 (standard or URL alphabet, padded or not), surrounding spaces
// ignored. The error never echoes the input.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("store: encryption key is empty")
	}
	if len(s) == 2*KeySize {
		if k, err := hex.DecodeString(s); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != KeySize {
				return nil, fmt.Errorf("store: encryption key decodes to %d bytes, want %d", len(k), KeySize)
			}
			return k, nil
		}
	}
	return nil, fmt.Errorf("store: encryption key must be %d bytes, hex (64 digits) or base64 encoded", KeySize)
}

// LoadOrCreateKey returns the encryption key kept in dir/secret.key,
// generating it (from crypto/rand, written base64 with mode 0600, dir
// created 0700) on first use. The file is created atomically: a crash never
// leaves a half-written key, and of two processes racing, both end up with
// the one that was linked first.
func LoadOrCreateKey(dir string) ([]byte, error) {
	if dir == "" {
		return nil, errors.New("store: key directory is empty")
	}
	path := filepath.Join(dir, KeyFileName)
	if k, err := readKeyFile(path); !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: key directory: %w", err)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("store: generate key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".secret.key-*")
	if err != nil {
		return nil, fmt.Errorf("store: write key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("store: write key: %w", err)
	}
	if _, err := tmp.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("store: write key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("store: write key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("store: write key: %w", err)
	}
	// Link fails if the key exists: whoever linked first wins, and we use theirs.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readKeyFile(path)
		}
		return nil, fmt.Errorf("store: write key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the new name durable
		d.Close()
	}
	return key, nil
}

func readKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("store: read key %s: %w", path, err)
	}
	if len(b) == KeySize && strings.TrimSpace(string(b)) != string(b) {
		// Raw bytes that happen to start or end with whitespace.
		return b, nil
	}
	k, err := ParseKey(string(b))
	if err != nil {
		if len(b) == KeySize {
			return b, nil // a raw 32-byte key file
		}
		return nil, fmt.Errorf("store: key file %s: %w", path, err)
	}
	return k, nil
}
