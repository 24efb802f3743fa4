// Package whsec is the one reading of Standard Webhooks secrets, shared by
// the hub (which signs webhook-signature) and the Go SDK (which verifies
// it): a secret of the form "whsec_<standard base64>" is base64 key
// material (the Standard Webhooks specification, "Signature scheme"; the
// official libraries' default), any other secret is its raw bytes (what the
// libraries' raw-secret option takes).
package whsec

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
)

// Prefix marks a Standard Webhooks secret.
const Prefix = "whsec_"

// Key returns the HMAC key of webhook-signature for a subscription secret:
// the decoded key material of a "whsec_" secret, otherwise the secret's
// raw bytes. A "whsec_" secret that does not decode is used raw; the hub
// refuses such secrets at subscribe time (Check).
func Key(secret []byte) []byte {
	if rest, ok := bytes.CutPrefix(secret, []byte(Prefix)); ok {
		key, err := base64.StdEncoding.DecodeString(string(rest))
		if err == nil && len(key) > 0 {
			return key
		}
	}
	return secret
}

// Check reports why secret cannot key webhook-signature as its form
// promises: a "whsec_" secret must carry non-empty standard base64 (with
// padding, as the libraries decode it). Any other secret is acceptable.
func Check(secret string) error {
	rest, ok := strings.CutPrefix(secret, Prefix)
	if !ok {
		return nil
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil || len(key) == 0 {
		return errors.New("a secret starting with " + Prefix + " must continue with its key material in standard base64 (with padding)")
	}
	return nil
}

// New returns a new "whsec_" secret with 32 random bytes of key material
// (the specification asks for 24 to 64).
func New() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return Prefix + base64.StdEncoding.EncodeToString(b)
}
