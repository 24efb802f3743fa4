package sqlstore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// sealVersion is the first byte of every sealed value; it names the format
// (AES-256-GCM, 12-byte random nonce) so a later key rotation can add one.
const sealVersion = 1

// sealer encrypts secrets at rest with AES-256-GCM. Each value is
// version || nonce || ciphertext+tag, and is bound by the GCM additional data
// to the row it belongs to (table, column and the row's natural key), so a
// sealed value copied into another row or org fails to open.
type sealer struct {
	aead cipher.AEAD
}

func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("store: encryption key must be 32 bytes for AES-256-GCM, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("store: encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("store: encryption key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// seal encrypts plain for the row named by ad. An empty value stays empty
// (nothing to hide; "no secret" stays distinguishable).
func (s *sealer) seal(plain []byte, ad string) ([]byte, error) {
	if len(plain) == 0 {
		return []byte{}, nil
	}
	ns := s.aead.NonceSize()
	out := make([]byte, 1+ns, 1+ns+len(plain)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("store: nonce: %w", err)
	}
	return s.aead.Seal(out, out[1:], plain, []byte(ad)), nil
}

// errSealed reports a sealed value that does not open: wrong key, tampered
// or moved to another row.
var errSealed = errors.New("store: sealed value does not open (wrong encryption key, or tampered)")

func (s *sealer) open(sealed []byte, ad string) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, nil
	}
	ns := s.aead.NonceSize()
	if len(sealed) < 1+ns+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, errSealed
	}
	plain, err := s.aead.Open(nil, sealed[1:1+ns], sealed[1+ns:], []byte(ad))
	if err != nil {
		return nil, errSealed
	}
	return plain, nil
}
