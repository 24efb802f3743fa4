package jsondup

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

var cases = []struct {
	in, path string
	found    bool
}{
	{`{"client_id":"a","client_secret":"b"}`, "", false},
	{`{"client_id":"a","client_id":"b"}`, "client_id", true},
	{`{"client_id":"a","CLIENT_ID":"b"}`, "CLIENT_ID", true},
	{`{"a":{"x":1,"y":2},"b":{"x":1}}`, "", false},
	{`{"event":{"e":{"sendTo":"+1","sendTo":"+2"}}}`, "event.e.sendTo", true},
	{`{"list":[{"k":1},{"k":2,"k":3}]}`, "list.k", true},
	{`[{"k":1},{"k":1}]`, "", false},
	{`"not an object"`, "", false},
	{`{"a":`, "", false},
	{` { "a" : [ 1 , true , null , -2.5e3 , "x\"}" ] , "A" : {} } `, "A", true},
	{`{"client\u005fid":"a","client_id":"b"}`, "client_id", true},
	{`{"a\\":"1","a\\\\":2}`, "", false},
	{`{"é":1,"É":2}`, "É", true},
	{`{"k":1,"\u212a":2}`, "\u212a", true},      // KELVIN SIGN lowers to k
	{"{\"\xff\":1,\"\xfe\":2}", "\ufffd", true}, // invalid UTF-8 reads as U+FFFD
	{`{"a":{"b":[[{"c":1,"d":{"c":2}}]],"c":3},"e":{"a":1,"a":2}}`, "e.a", true},
	{`{}`, "", false},
	{`[]`, "", false},
	{`{"a":1,}`, "", false},
}

func TestFind(t *testing.T) {
	t.Parallel()
	for _, c := range cases {
		path, found := Find([]byte(c.in))
		if path != c.path || found != c.found {
			t.Errorf("Find(%s) = %q, %v; want %q, %v", c.in, path, found, c.path, c.found)
		}
	}
}

// TestFindAgreesWithDecoder: on random documents with near-duplicate
// keys (case, escapes, non-ASCII), Find says what a walk of
// encoding/json's tokens says.
func TestFindAgreesWithDecoder(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		check(t, []byte(c.in))
	}
	dups := 0
	for range 20000 {
		var b bytes.Buffer
		genValue(r, &b, 0)
		if check(t, b.Bytes()) {
			dups++
		}
	}
	if dups < 1000 || dups > 19000 {
		t.Fatalf("%d of 20000 random documents had a duplicate: the generator should make both kinds", dups)
	}
}

func check(t *testing.T, doc []byte) (dup bool) {
	t.Helper()
	gotPath, got := Find(doc)
	wantPath, want := findByTokens(doc)
	if got != want || gotPath != wantPath {
		t.Fatalf("Find(%s) = %q, %v; the decoder's walk says %q, %v", doc, gotPath, got, wantPath, want)
	}
	return got
}

var keys = []string{`"a"`, `"A"`, `"\u0061"`, `"b"`, `"ab"`, `"a\u0062"`, `"é"`, `"É"`, `"\u212a"`, `"k"`, `"a.b"`, `"\"q"`, `"\\"`}

func genValue(r *rand.Rand, b *bytes.Buffer, depth int) {
	n := r.IntN(8)
	if depth > 3 {
		n = 5 + r.IntN(3)
	}
	switch n {
	case 0, 1, 2:
		b.WriteString("{")
		for i := range r.IntN(4) {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(keys[r.IntN(len(keys))] + " : ")
			genValue(r, b, depth+1)
		}
		b.WriteString("}")
	case 3, 4:
		b.WriteString("[")
		for i := range r.IntN(3) {
			if i > 0 {
				b.WriteString(", ")
			}
			genValue(r, b, depth+1)
		}
		b.WriteString("]")
	case 5:
		b.WriteString(`"s{\"}[,"`)
	case 6:
		b.WriteString("-1.5e2")
	default:
		b.WriteString("null")
	}
}

// findByTokens is Find as a walk of encoding/json's tokens (what it was).
func findByTokens(b []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	path, found, _ := tokenValue(dec, "")
	return path, found
}

func tokenValue(dec *json.Decoder, at string) (string, bool, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", false, err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return "", false, err
			}
			k, _ := kt.(string)
			p := k
			if at != "" {
				p = at + "." + k
			}
			if seen[strings.ToLower(k)] {
				return p, true, nil
			}
			seen[strings.ToLower(k)] = true
			if dp, dup, err := tokenValue(dec, p); dup || err != nil {
				return dp, dup, err
			}
		}
		_, err = dec.Token()
		return "", false, err
	case json.Delim('['):
		for dec.More() {
			if dp, dup, err := tokenValue(dec, at); dup || err != nil {
				return dp, dup, err
			}
		}
		_, err = dec.Token()
		return "", false, err
	}
	return "", false, nil
}

func BenchmarkFind(b *testing.B) {
	doc := []byte(`{"iss":"https://idp.example","jti":"bench-1","iat":1764700000000,"aud":"https://hub.example/topics/bench/NOTIFICATIONS",` +
		`"event":{"urn:ietf:params:notifications:smsOtp":{"organizationId":1,"organizationName":"bench","sendTo":"+94771234567",` +
		`"messageBody":"Your one-time password for the bench is 075052. This expires in 5 minutes."}}}`)
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			Find(doc)
		}
	})
	b.Run("tokens", func(b *testing.B) {
		for b.Loop() {
			findByTokens(doc)
		}
	})
}
