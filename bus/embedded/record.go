package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"
)

// Record framing inside a segment file (all integers big-endian):
//
//	length  uint32  size of body
//	crc     uint32  CRC-32C (Castagnoli) of body
//	body:
//	  offset     int64
//	  timestamp  int64   Unix milliseconds at append
//	  key        uvarint length + bytes
//	  value      uvarint length + bytes
//	  headers    uvarint count, then per header uvarint length + name,
//	             uvarint length + value (names sorted)
const frameHeaderLen = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a frame whose length or checksum does not hold: a torn
// tail after a crash, or damage on disk.
var errCorrupt = errors.New("embedded: corrupt record")

type record struct {
	offset    int64
	timestamp int64
	key       []byte
	value     []byte
	headers   map[string]string
}

// appendFrame appends the framed encoding of r to dst.
func appendFrame(dst []byte, r *record) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, frameHeaderLen)...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.offset))
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.timestamp))
	dst = binary.AppendUvarint(dst, uint64(len(r.key)))
	dst = append(dst, r.key...)
	dst = binary.AppendUvarint(dst, uint64(len(r.value)))
	dst = append(dst, r.value...)
	names := make([]string, 0, len(r.headers))
	for k := range r.headers {
		names = append(names, k)
	}
	sort.Strings(names)
	dst = binary.AppendUvarint(dst, uint64(len(names)))
	for _, k := range names {
		v := r.headers[k]
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	body := dst[start+frameHeaderLen:]
	binary.BigEndian.PutUint32(dst[start:], uint32(len(body)))
	binary.BigEndian.PutUint32(dst[start+4:], crc32.Checksum(body, castagnoli))
	return dst
}

// frameSize is the encoded size of r, used to enforce MaxRecordBytes before
// anything is written.
func frameSize(r *record) int {
	n := frameHeaderLen + 16 + uvarintLen(len(r.key)) + len(r.key) + uvarintLen(len(r.value)) + len(r.value) + uvarintLen(len(r.headers))
	for k, v := range r.headers {
		n += uvarintLen(len(k)) + len(k) + uvarintLen(len(v)) + len(v)
	}
	return n
}

func uvarintLen(n int) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], uint64(n))
}

// parseFrameHeader returns the body length and checksum, rejecting lengths
// no valid record can have.
func parseFrameHeader(h []byte, maxBody int) (int, uint32, error) {
	n := binary.BigEndian.Uint32(h)
	if n < 16+3 || int64(n) > int64(maxBody) {
		return 0, 0, fmt.Errorf("%w: body length %d", errCorrupt, n)
	}
	return int(n), binary.BigEndian.Uint32(h[4:]), nil
}

// decodeBody verifies body against crc and decodes it.
func decodeBody(body []byte, crc uint32) (*record, error) {
	if crc32.Checksum(body, castagnoli) != crc {
		return nil, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	if len(body) < 16+3 {
		return nil, fmt.Errorf("%w: body of %d bytes", errCorrupt, len(body))
	}
	r := &record{
		offset:    int64(binary.BigEndian.Uint64(body)),
		timestamp: int64(binary.BigEndian.Uint64(body[8:])),
	}
	b := body[16:]
	var err error
	if r.key, b, err = readBytes(b); err != nil {
		return nil, err
	}
	if r.value, b, err = readBytes(b); err != nil {
		return nil, err
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, fmt.Errorf("%w: header count", errCorrupt)
	}
	b = b[k:]
	if n > 0 {
		r.headers = make(map[string]string, n)
	}
	for i := uint64(0); i < n; i++ {
		var name, val []byte
		if name, b, err = readBytes(b); err != nil {
			return nil, err
		}
		if val, b, err = readBytes(b); err != nil {
			return nil, err
		}
		r.headers[string(name)] = string(val)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(b))
	}
	return r, nil
}

func readBytes(b []byte) ([]byte, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, fmt.Errorf("%w: field length", errCorrupt)
	}
	b = b[k:]
	if n == 0 {
		return nil, b, nil
	}
	out := make([]byte, n)
	copy(out, b[:n])
	return out, b[n:], nil
}
