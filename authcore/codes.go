package authcore

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"strconv"
	"strings"
)

// OTP alphabets. The alphanumeric one is upper case without the characters
// people confuse when reading an SMS (0/O, 1/I): 32 symbols, 5 bits each.
const (
	numericAlphabet      = "0123456789"
	alphanumericAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
)

// BackupCodeCount is how many backup codes a user gets.
const BackupCodeCount = 10

// backupCodeLen is the length of a backup code without its separator:
// 10 symbols of 5 bits = 50 bits each.
const backupCodeLen = 10

// randomString returns n symbols drawn uniformly from alphabet with
// crypto/rand: bytes at or above the largest multiple of len(alphabet)
// are rejected, so there is no modulo bias.
func randomString(alphabet string, n int) (string, error) {
	limit := 256 - 256%len(alphabet)
	out := make([]byte, 0, n)
	buf := make([]byte, n+8)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if int(b) < limit {
				out = append(out, alphabet[int(b)%len(alphabet)])
				if len(out) == n {
					break
				}
			}
		}
	}
	return string(out), nil
}

// newOTP returns a fresh OTP for settings.
func newOTP(numeric bool, length int) (string, error) {
	if numeric {
		return randomString(numericAlphabet, length)
	}
	return randomString(alphanumericAlphabet, length)
}

// normalizeCode makes what a user typed comparable: spaces and dashes
// dropped, letters upper-cased.
func normalizeCode(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == ' ' || r == '-' || r == '\t':
			return -1
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

// codeHMAC is what the store keeps of an OTP: HMAC-SHA256 keyed by the
// service key over org|challenge|code, so a code is bound to its challenge.
func (s *Service) codeHMAC(orgID int64, challengeID, code string) []byte {
	m := hmac.New(sha256.New, s.cfg.HMACKey)
	m.Write([]byte("otp|" + strconv.FormatInt(orgID, 10) + "|" + challengeID + "|" + code))
	return m.Sum(nil)
}

const backupSaltLen = 16

// newBackupCode returns a code formatted for people (ABCDE-FGHJK).
func newBackupCode() (string, error) {
	c, err := randomString(alphanumericAlphabet, backupCodeLen)
	if err != nil {
		return "", err
	}
	return c[:5] + "-" + c[5:], nil
}

// hashBackupCode returns salt || HMAC-SHA256(key, backup|org|user|salt|code):
// salted so equal codes hash differently, and keyed so a stolen database
// alone does not allow brute-forcing the 50-bit codes offline.
func (s *Service) hashBackupCode(orgID int64, userID, code string, salt []byte) []byte {
	m := hmac.New(sha256.New, s.cfg.HMACKey)
	m.Write([]byte("backup|" + strconv.FormatInt(orgID, 10) + "|" + userID + "|"))
	m.Write(salt)
	m.Write([]byte("|" + normalizeCode(code)))
	return append(append([]byte(nil), salt...), m.Sum(nil)...)
}

func (s *Service) newBackupHash(orgID int64, userID, code string) ([]byte, error) {
	salt := make([]byte, backupSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	return s.hashBackupCode(orgID, userID, code, salt), nil
}

// backupCodeMatches reports, in constant time, whether code matches hash.
func (s *Service) backupCodeMatches(orgID int64, userID, code string, hash []byte) bool {
	if len(hash) != backupSaltLen+sha256.Size {
		return false
	}
	return hmac.Equal(hash, s.hashBackupCode(orgID, userID, code, hash[:backupSaltLen]))
}
