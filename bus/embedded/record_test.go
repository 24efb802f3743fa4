package embedded

import (
	"hash/crc32"
	"maps"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	r := &record{offset: 42, timestamp: 1700000000000, key: []byte("myorg"), value: []byte(`{"a":1}`),
		headers: map[string]string{"ce_id": "x", "content-type": "application/json", "": "empty name"}}
	b := appendFrame(nil, r)
	if len(b) != frameSize(r) {
		t.Fatalf("frameSize %d, encoded %d", frameSize(r), len(b))
	}
	n, crc, err := parseFrameHeader(b, 1<<20)
	if err != nil || n != len(b)-frameHeaderLen {
		t.Fatalf("header: %d %v", n, err)
	}
	got, err := decodeBody(b[frameHeaderLen:], crc)
	if err != nil {
		t.Fatal(err)
	}
	if got.offset != 42 || got.timestamp != r.timestamp || string(got.key) != "myorg" || string(got.value) != `{"a":1}` || !maps.Equal(got.headers, r.headers) {
		t.Fatalf("decoded %+v", got)
	}
	if _, _, err := parseFrameHeader(b, 10); err == nil {
		t.Fatal("frame over the size limit accepted")
	}
}

// FuzzDecodeBody feeds arbitrary bodies with a matching checksum (the
// worst case: damage the CRC does not catch) and requires an error or a
// record, never a panic.
func FuzzDecodeBody(f *testing.F) {
	f.Add(appendFrame(nil, &record{key: []byte("k"), value: []byte("v"), headers: map[string]string{"h": "v"}})[frameHeaderLen:])
	f.Add([]byte{})
	f.Add(make([]byte, 19))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeBody(body, crc32.Checksum(body, castagnoli))
		if err == nil && r == nil {
			t.Fatal("nil record without error")
		}
	})
}
