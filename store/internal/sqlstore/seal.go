package sqlstore

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// Sealed value formats (the first byte). Both are AES-256-GCM with a
// 12-byte random nonce:
//
//	v1: 0x01 || nonce || ciphertext+tag                 (no key named)
//	v2: 0x02 || key id (4 bytes) || nonce || ciphertext+tag
//
// Values are written as v2. v1 values, written before keys could rotate,
// are opened by trying the current key, then the previous ones.
const (
	sealV1    = 1
	sealV2    = 2
	keyIDSize = 4
)

// sealer encrypts secrets at rest with AES-256-GCM under the current key and
// opens values sealed under it or under a previous key (rotation). Each value
// is bound by the GCM additional data to the row it belongs to (table, column
// and the row's natural key), so a sealed value copied into another row or
// org fails to open.
type sealer struct {
	current sealKey
	keys    []sealKey // current first, then previous ones, then the next one
	// hasNext: a next key is configured (rotation step 1), so values may
	// already be sealed under a key newer than current.
	hasNext bool
}

type sealKey struct {
	id   [keyIDSize]byte
	aead cipher.AEAD
}

// keyID names a key in v2 values without revealing anything about it.
func keyID(key []byte) (id [keyIDSize]byte) {
	sum := sha256.Sum256(append([]byte("otphub sealing key id v1\x00"), key...))
	copy(id[:], sum[:])
	return id
}

// newSealer seals under current and opens what current, the previous keys
// or the next key sealed.
func newSealer(current []byte, previous [][]byte, next []byte) (*sealer, error) {
	s := &sealer{hasNext: next != nil}
	all := append([][]byte{current}, previous...)
	if next != nil {
		all = append(all, next)
	}
	for i, key := range all {
		name := "encryption key"
		switch {
		case next != nil && i == len(all)-1:
			name = "next encryption key"
		case i > 0:
			name = fmt.Sprintf("previous encryption key %d", i)
		}
		if len(key) != 32 {
			return nil, fmt.Errorf("store: %s must be 32 bytes for AES-256-GCM, got %d", name, len(key))
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", name, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("store: %s: %w", name, err)
		}
		k := sealKey{id: keyID(key), aead: aead}
		for _, o := range s.keys {
			if o.id == k.id {
				return nil, fmt.Errorf("store: %s is listed twice (or is the current key)", name)
			}
		}
		s.keys = append(s.keys, k)
	}
	s.current = s.keys[0]
	return s, nil
}

// seal encrypts plain for the row named by ad under the current key. An
// empty value stays empty (nothing to hide; "no secret" stays
// distinguishable).
func (s *sealer) seal(plain []byte, ad string) ([]byte, error) {
	if len(plain) == 0 {
		return []byte{}, nil
	}
	aead := s.current.aead
	ns := aead.NonceSize()
	out := make([]byte, 1+keyIDSize+ns, 1+keyIDSize+ns+len(plain)+aead.Overhead())
	out[0] = sealV2
	copy(out[1:], s.current.id[:])
	nonce := out[1+keyIDSize:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("store: nonce: %w", err)
	}
	return aead.Seal(out, nonce, plain, []byte(ad)), nil
}

// errSealed reports a sealed value that does not open: wrong key, tampered
// or moved to another row.
var errSealed = errors.New("store: sealed value does not open (wrong encryption key, or tampered)")

// open decrypts a value sealed for the row named by ad, under whichever
// configured key sealed it.
func (s *sealer) open(sealed []byte, ad string) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, nil
	}
	switch sealed[0] {
	case sealV2:
		if len(sealed) < 1+keyIDSize {
			return nil, errSealed
		}
		id := sealed[1 : 1+keyIDSize]
		for _, k := range s.keys {
			if bytes.Equal(k.id[:], id) {
				return openWith(k.aead, sealed[1+keyIDSize:], ad)
			}
		}
		return nil, fmt.Errorf("store: sealed value is under an encryption key that is not configured (key id %s): give it in --previous-encryption-keys (or --next-encryption-key)", hex.EncodeToString(id))
	case sealV1:
		for _, k := range s.keys {
			if plain, err := openWith(k.aead, sealed[1:], ad); err == nil {
				return plain, nil
			}
		}
	}
	return nil, errSealed
}

func openWith(aead cipher.AEAD, nonceAndCT []byte, ad string) ([]byte, error) {
	ns := aead.NonceSize()
	if len(nonceAndCT) < ns+aead.Overhead() {
		return nil, errSealed
	}
	plain, err := aead.Open(nil, nonceAndCT[:ns], nonceAndCT[ns:], []byte(ad))
	if err != nil {
		return nil, errSealed
	}
	return plain, nil
}

// currentPrefix is how every value sealed under the current key begins;
// a non-empty value that begins otherwise needs resealing.
func (s *sealer) currentPrefix() []byte {
	return append([]byte{sealV2}, s.current.id[:]...)
}

// reseal re-encrypts a value under the current key; ok is false when it is
// empty or already there.
func (s *sealer) reseal(sealed []byte, ad string) (out []byte, ok bool, err error) {
	if len(sealed) == 0 || bytes.HasPrefix(sealed, s.currentPrefix()) {
		return sealed, false, nil
	}
	plain, err := s.open(sealed, ad)
	if err != nil {
		return nil, false, err
	}
	out, err = s.seal(plain, ad)
	return out, err == nil, err
}
