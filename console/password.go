package console

import (
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/text/unicode/norm"
)

// argon2id parameters: OWASP's first recommended set (19 MiB, 2 passes,
// 1 lane), about 30 ms on a current core. They are encoded in every hash,
// so raising them later keeps old hashes verifiable.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// Password rules after NIST SP 800-63B: length over composition (no
// character-class rules, no periodic change), every printable character
// and space allowed, Unicode normalized (NFKC) before hashing, and a
// password that is known-breached, repetitive or sequential, or built from
// the account's own name refused.
const (
	MinPasswordLength = 15 // 800-63B-4: 15 when a password may be the only factor
	MaxPasswordLength = 128
)

//go:embed common-passwords.txt
var commonPasswordsText string

var commonPasswords = func() map[string]bool {
	m := map[string]bool{}
	for _, l := range strings.Split(commonPasswordsText, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			m[strings.ToLower(l)] = true
		}
	}
	return m
}()

// CheckPassword returns why pw may not be a password for the account
// email, or nil.
func CheckPassword(pw, email string) error {
	if !utf8.ValidString(pw) {
		return errors.New("the password is not valid text")
	}
	pw = norm.NFKC.String(pw)
	n := utf8.RuneCountInString(pw)
	switch {
	case n < MinPasswordLength:
		return fmt.Errorf("use at least %d characters (a few words make a strong, memorable password)", MinPasswordLength)
	case n > MaxPasswordLength:
		return fmt.Errorf("use at most %d characters", MaxPasswordLength)
	}
	lower := strings.ToLower(pw)
	if commonPasswords[lower] || commonPasswords[strings.TrimRight(lower, "0123456789!.")] {
		return errors.New("this password appears in lists of breached passwords; choose another")
	}
	if repetitive(pw) {
		return errors.New("this password is a repeated or sequential pattern; choose another")
	}
	local, _, _ := strings.Cut(strings.ToLower(email), "@")
	for _, word := range []string{local, "otphub"} {
		if len(word) >= 4 && utf8.RuneCountInString(strings.ReplaceAll(lower, word, "")) < MinPasswordLength/2 {
			return errors.New("this password is mostly your account name or the product's; choose another")
		}
	}
	return nil
}

// repetitive tells whether pw is one short unit repeated, or a run of
// consecutive characters (abcdef…, 12345…, 98765…).
func repetitive(pw string) bool {
	r := []rune(pw)
	for unit := 1; unit <= 4; unit++ {
		rep := true
		for i := unit; i < len(r); i++ {
			if r[i] != r[i-unit] {
				rep = false
				break
			}
		}
		if rep {
			return true
		}
	}
	up, down := true, true
	for i := 1; i < len(r); i++ {
		d := r[i] - r[i-1]
		if d != 1 && !(r[i-1] == '9' && r[i] == '0') {
			up = false
		}
		if d != -1 && !(r[i-1] == '0' && r[i] == '9') {
			down = false
		}
	}
	return up || down
}

// HashPassword returns the PHC string of pw's argon2id hash.
func HashPassword(pw string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(norm.NFKC.String(pw)), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// dummyHash is compared against when the account does not exist, so that
// a sign-in takes as long for an unknown email as for a wrong password.
var dummyHash, _ = HashPassword("otphub dummy password for timing")

// VerifyPassword tells whether pw matches the PHC string hash, in
// constant time.
func VerifyPassword(pw, hash string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var version int
	var mem, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &t, &p); err != nil || mem == 0 || mem > 1<<20 || t == 0 || t > 16 || p == 0 {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 || len(want) > 128 {
		return false
	}
	got := argon2.IDKey([]byte(norm.NFKC.String(pw)), salt, t, mem, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}
