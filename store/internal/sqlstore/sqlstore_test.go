package sqlstore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRebind(t *testing.T) {
	for in, want := range map[string]string{
		`SELECT 1`:                              `SELECT 1`,
		`a = ? AND b = ?`:                       `a = $1 AND b = $2`,
		`x = '?' AND y = ? AND z = "q?" OR w=?`: `x = '?' AND y = $1 AND z = "q?" OR w=$2`,
	} {
		if got := Rebind(in); got != want {
			t.Errorf("Rebind(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSealer(t *testing.T) {
	if _, err := newSealer(make([]byte, 31), nil, nil); err == nil {
		t.Fatal("a 31-byte key was accepted")
	}
	s, err := newSealer(bytes.Repeat([]byte{1}, 32), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte("token")
	a, _ := s.seal(plain, "row-1")
	b, _ := s.seal(plain, "row-1")
	if bytes.Equal(a, b) {
		t.Error("two seals of one value are equal: nonce not random")
	}
	if got, err := s.open(a, "row-1"); err != nil || !bytes.Equal(got, plain) {
		t.Errorf("open = %q, %v", got, err)
	}
	if _, err := s.open(a, "row-2"); err == nil {
		t.Error("a value sealed for row-1 opened as row-2")
	}
	tampered := append([]byte(nil), a...)
	tampered[len(tampered)-1] ^= 1
	if _, err := s.open(tampered, "row-1"); err == nil {
		t.Error("a tampered value opened")
	}
	if _, err := s.open([]byte{9, 9}, "row-1"); err == nil {
		t.Error("a short value opened")
	}
	if e, _ := s.seal(nil, "x"); len(e) != 0 {
		t.Errorf("seal(empty) = %x, want empty", e)
	}
	if p, err := s.open(nil, "x"); err != nil || p != nil {
		t.Errorf("open(empty) = %x, %v", p, err)
	}
}

// sealV1Value builds a value in the format written before keys could
// rotate (no key id), as an existing database holds it.
func sealV1Value(t *testing.T, key, plain []byte, ad string) []byte {
	t.Helper()
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	out := make([]byte, 1+aead.NonceSize())
	out[0] = sealV1
	_, _ = rand.Read(out[1:])
	return aead.Seal(out, out[1:], plain, []byte(ad))
}

func TestSealerRotation(t *testing.T) {
	oldKey, newKey, other := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	if _, err := newSealer(newKey, [][]byte{oldKey, oldKey}, nil); err == nil {
		t.Error("a previous key listed twice was accepted")
	}
	if _, err := newSealer(newKey, [][]byte{make([]byte, 16)}, nil); err == nil || !strings.Contains(err.Error(), "previous encryption key 1") {
		t.Errorf("a short previous key: %v", err)
	}
	before, _ := newSealer(oldKey, nil, nil)
	after, err := newSealer(newKey, [][]byte{oldKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte("secret")
	v2old, _ := before.seal(plain, "row")
	v1old := sealV1Value(t, oldKey, plain, "row")
	for name, v := range map[string][]byte{"v2 under the previous key": v2old, "v1 under the previous key": v1old} {
		if got, err := after.open(v, "row"); err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%s: open = %q, %v", name, got, err)
		}
		out, ok, err := after.reseal(v, "row")
		if err != nil || !ok || !bytes.HasPrefix(out, after.currentPrefix()) {
			t.Fatalf("%s: reseal = %x, %v, %v", name, out, ok, err)
		}
		if got, err := after.open(out, "row"); err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%s: resealed value opens as %q, %v", name, got, err)
		}
		if _, ok, _ := after.reseal(out, "row"); ok {
			t.Errorf("%s: a value under the current key was resealed again", name)
		}
		if _, _, err := after.reseal(v, "other-row"); err == nil {
			t.Errorf("%s: resealing for another row succeeded", name)
		}
	}
	// Once the previous key is dropped, what it sealed no longer opens, and
	// the error names the missing key rather than blaming tampering.
	only, _ := newSealer(newKey, nil, nil)
	if _, err := only.open(v2old, "row"); err == nil || !strings.Contains(err.Error(), "--previous-encryption-keys") {
		t.Errorf("v2 value under a dropped key: %v", err)
	}
	if _, err := only.open(v1old, "row"); !errors.Is(err, errSealed) {
		t.Errorf("v1 value under a dropped key: %v", err)
	}
	wrong, _ := newSealer(other, nil, nil)
	if _, err := wrong.open(v1old, "row"); err == nil {
		t.Error("a v1 value opened under an unrelated key")
	}
	// Rotation step 1: the old key stays current and the new one is only
	// opened, so processes not yet switched read what switched ones write.
	step1, err := newSealer(oldKey, nil, newKey)
	if err != nil {
		t.Fatal(err)
	}
	underNew, _ := after.seal(plain, "row")
	if got, err := step1.open(underNew, "row"); err != nil || !bytes.Equal(got, plain) {
		t.Errorf("a value under the next key: open = %q, %v", got, err)
	}
	if sealed, _ := step1.seal(plain, "row"); !bytes.HasPrefix(sealed, before.currentPrefix()) {
		t.Error("step 1 sealed under the next key")
	}
	if _, err := newSealer(oldKey, nil, oldKey); err == nil {
		t.Error("a next key equal to the current one was accepted")
	}
	if out, ok, err := after.reseal(nil, "row"); ok || err != nil || len(out) != 0 {
		t.Errorf("reseal(empty) = %x, %v, %v", out, ok, err)
	}
}

func TestMicros(t *testing.T) {
	if micros(time.Time{}) != 0 || !fromMicros(0).IsZero() {
		t.Error("the zero time does not round-trip as 0")
	}
	ts := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.FixedZone("x", 3600))
	if got := fromMicros(micros(ts)); !got.Equal(ts.Truncate(time.Microsecond)) || got.Location() != time.UTC {
		t.Errorf("round trip = %v", got)
	}
}

func TestTruncate(t *testing.T) {
	long := bytes.Repeat([]byte("é"), maxErrorLen) // 2 bytes each
	got := truncate(string(long))
	if len(got) > maxErrorLen || len(got)%2 != 0 {
		t.Errorf("truncate cut to %d bytes, mid-rune or too long", len(got))
	}
}

func TestPurger(t *testing.T) {
	var p purger
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if !p.due(t0) {
		t.Fatal("the first call is not due")
	}
	if p.due(t0.Add(time.Minute)) {
		t.Fatal("due again within the interval")
	}
	if !p.due(t0.Add(purgeInterval)) {
		t.Fatal("not due after the interval")
	}
	now := t0.Add(purgeInterval)
	n := 0
	for i := 0; i < purgeEvery; i++ {
		if p.due(now) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d purges in purgeEvery calls at one instant, want 1", n)
	}
}
