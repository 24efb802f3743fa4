package oauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// Client secrets are 32 random bytes (256 bits), shown once as base64url.
// They are stored as salt || HMAC-SHA256(salt, secret): a fast salted hash
// is enough because the secret is uniformly random with 256 bits of
// entropy, far beyond any offline guessing, so a slow KDF (bcrypt, PBKDF2)
// would only add latency to every token request without adding security.
// (Slow hashing protects low-entropy human passwords; these are not.)
const (
	secretBytes = 32
	saltBytes   = 16
)

// NewSecret returns a fresh client secret.
func NewSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// HashSecret returns the salted hash to store for secret.
func HashSecret(secret string) ([]byte, error) {
	salt := make([]byte, saltBytes)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	return append(salt, secretMAC(salt, secret)...), nil
}

// CheckSecret reports, in constant time, whether secret matches hash.
func CheckSecret(hash []byte, secret string) bool {
	if len(hash) != saltBytes+sha256.Size {
		// Still spend the same work so a malformed row is not a timing oracle.
		secretMAC(make([]byte, saltBytes), secret)
		return false
	}
	return hmac.Equal(hash[saltBytes:], secretMAC(hash[:saltBytes], secret))
}

func secretMAC(salt []byte, secret string) []byte {
	m := hmac.New(sha256.New, salt)
	m.Write([]byte(secret))
	return m.Sum(nil)
}
