// Package jsondup finds duplicate object keys in JSON. encoding/json keeps
// the last of duplicates (and matches struct fields case-insensitively),
// so {"client_id":"a","client_id":"b"} would be read as "b" by one parser
// and "a" by another: otphub refuses such bodies instead.
package jsondup

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Find reports the first key that occurs twice in one object of the JSON
// text b, compared case-insensitively as encoding/json matches struct
// fields, as a dotted path from the top ("event.sendTo"). b should be
// valid JSON (decode it first); invalid text reports no duplicate.
func Find(b []byte) (path string, found bool) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	path, found, _ = value(dec, "")
	return path, found
}

// value reads one JSON value from dec, checking the objects within it.
func value(dec *json.Decoder, at string) (string, bool, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", false, err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]struct{}{}
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
			fold := strings.ToLower(k)
			if _, dup := seen[fold]; dup {
				return p, true, nil
			}
			seen[fold] = struct{}{}
			if dp, dup, err := value(dec, p); dup || err != nil {
				return dp, dup, err
			}
		}
		_, err = dec.Token() // '}'
		return "", false, err
	case json.Delim('['):
		for dec.More() {
			if dp, dup, err := value(dec, at); dup || err != nil {
				return dp, dup, err
			}
		}
		_, err = dec.Token() // ']'
		return "", false, err
	}
	return "", false, nil
}
