// Package jsondup finds duplicate object keys in JSON. encoding/json keeps
// the last of duplicates (and matches struct fields case-insensitively),
// so {"client_id":"a","client_id":"b"} would be read as "b" by one parser
// and "a" by another: otphub refuses such bodies instead.
package jsondup

import (
	"encoding/json"
	"strings"
)

// Find reports the first key that occurs twice in one object of the JSON
// text b, compared case-insensitively as encoding/json matches struct
// fields, as a dotted path from the top ("event.sendTo"). b should be
// valid JSON (decode it first); invalid text reports no duplicate.
//
// It scans the bytes once without building tokens (every API body and
// every publish goes through it): a key is compared as its raw bytes when
// it is plain ASCII, else decoded as encoding/json decodes it (escapes,
// invalid UTF-8), so both read the same keys.
func Find(b []byte) (path string, found bool) {
	s := scanner{b: b}
	s.ws()
	if s.value() || !s.dup {
		return "", false
	}
	return strings.Join(s.path, "."), true
}

type scanner struct {
	b    []byte
	i    int
	path []string // keys from the top to the value being read
	dup  bool     // path ends at a duplicate key
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value reads one value at s.i; false when the text is not valid there or
// a duplicate was found (s.dup).
func (s *scanner) value() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '{':
		return s.object()
	case '[':
		s.i++
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ']' {
			s.i++
			return true
		}
		for {
			if !s.value() {
				return false
			}
			if more, ok := s.next(']'); !more {
				return ok
			}
		}
	case '"':
		_, _, ok := s.str()
		return ok
	}
	// A number, true, false or null: up to the next delimiter.
	start := s.i
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return s.i > start
		}
		s.i++
	}
	return s.i > start
}

func (s *scanner) object() bool {
	s.i++ // '{'
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return true
	}
	var seen map[string]struct{}
	for {
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return false
		}
		raw, plain, ok := s.str()
		if !ok {
			return false
		}
		key := string(raw[1 : len(raw)-1])
		if !plain {
			if json.Unmarshal(raw, &key) != nil {
				return false
			}
		}
		fold := strings.ToLower(key)
		if seen == nil {
			seen = make(map[string]struct{}, 8)
		}
		s.path = append(s.path, key)
		if _, dup := seen[fold]; dup {
			s.dup = true
			return false
		}
		seen[fold] = struct{}{}
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		if !s.value() {
			return false
		}
		s.path = s.path[:len(s.path)-1]
		if more, ok := s.next('}'); !more {
			return ok
		}
	}
}

// next reads what follows a member or an element: a comma (more follows)
// or the closing delimiter (ok, no more); anything else is invalid.
func (s *scanner) next(closing byte) (more, ok bool) {
	s.ws()
	if s.i >= len(s.b) {
		return false, false
	}
	switch s.b[s.i] {
	case ',':
		s.i++
		s.ws()
		return true, true
	case closing:
		s.i++
		return false, true
	}
	return false, false
}

// str reads the string at s.i (its opening quote) and returns it with its
// quotes; plain when it is ASCII without escapes, so its bytes are its
// value.
func (s *scanner) str() (raw []byte, plain, ok bool) {
	start := s.i
	plain = true
	for s.i++; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start:s.i], plain, true
		case c == '\\':
			plain = false
			s.i++ // the escaped byte (a \u's hex digits are plain bytes)
		case c >= 0x80 || c < 0x20:
			plain = false
		}
	}
	return nil, false, false
}
