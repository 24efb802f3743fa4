package whsec

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

func TestCheckSecret(t *testing.T) {
	for s, ok := range map[string]bool{
		"plain":                                  true,
		"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw": true,
		New():                                    true,
		"whsec_":                                 false,
		"whsec_not base64!":                      false,
		"whsec_YWJj":                             true,
		"whsec_YWJjZA":                           false, // unpadded: the libraries refuse it
	} {
		if err := Check(s); (err == nil) != ok {
			t.Errorf("CheckSecret(%q) = %v, want ok=%v", s, err, ok)
		}
	}
}

func TestKey(t *testing.T) {
	if k := Key([]byte("whsec_YWJj")); !bytes.Equal(k, []byte("abc")) {
		t.Errorf("Key(whsec_YWJj) = %q, want the decoded abc", k)
	}
	if k := Key([]byte("plain")); !bytes.Equal(k, []byte("plain")) {
		t.Errorf("Key(plain) = %q, want the raw bytes", k)
	}
	s := New()
	if !strings.HasPrefix(s, Prefix) || len(s) != len(Prefix)+44 {
		t.Fatalf("New() = %q: want whsec_ and 32 bytes of base64", s)
	}
	if raw, _ := base64.StdEncoding.DecodeString(s[len(Prefix):]); !bytes.Equal(Key([]byte(s)), raw) || len(raw) != 32 {
		t.Errorf("Key(New()) is not its 32 bytes of key material")
	}
}
