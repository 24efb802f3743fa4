package httpx

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// A request with both Content-Length and Transfer-Encoding is how request
// smuggling starts: a proxy in front of otphub and otphub could disagree on
// where the body ends (RFC 9112 §6.3 says such a message "ought to be
// handled as an error"). net/http lets Transfer-Encoding win and deletes
// Content-Length before a handler can see it, so the check has to happen on
// the connection: FramingListener reads each HTTP/1.1 request head as it
// arrives, follows the body framing to the next head, and renames a
// Content-Length that comes with a Transfer-Encoding to
// AmbiguousFramingHeader, which RefuseAmbiguousFraming answers with 400.
// Bytes are otherwise passed through unchanged.

// AmbiguousFramingHeader marks a request that had both Content-Length and
// Transfer-Encoding (its value is the Content-Length's).
const AmbiguousFramingHeader = "Otphub-Ambiguous-Content-Length"

// FramingListener wraps ln so that RefuseAmbiguousFraming can refuse
// requests with both Content-Length and Transfer-Encoding. Serve HTTP/1.1
// (plain, not TLS) on it. maxHeaderBytes is the server's
// http.Server.MaxHeaderBytes: a head longer than that (plus net/http's
// slack) is not held back but passed through for net/http to refuse.
func FramingListener(ln net.Listener, maxHeaderBytes int) net.Listener {
	return framingListener{ln, maxHeaderBytes + 4096}
}

type framingListener struct {
	net.Listener
	maxHead int
}

func (l framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &framingConn{Conn: c, maxHead: l.maxHead}, nil
}

// RefuseAmbiguousFraming answers a request FramingListener marked with 400
// invalid_request and closes the connection (what followed on it cannot be
// trusted to be framed as its sender meant).
func RefuseAmbiguousFraming(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, bad := r.Header[AmbiguousFramingHeader]; bad {
			w.Header().Set("Connection", "close")
			Error(w, http.StatusBadRequest, "invalid_request",
				"a request must not carry both Content-Length and Transfer-Encoding (RFC 9112 section 6.3)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// framing states.
const (
	inHead      = iota // holding back a request head
	inBody             // passing remaining body bytes
	inChunkLine        // reading a chunk-size line
	inChunkData        // passing remaining chunk data bytes
	inChunkEnd         // reading the CRLF after chunk data
	inTrailer          // reading trailer lines up to the empty one
	passThrough        // no longer inspecting (net/http will refuse or close)
)

type framingConn struct {
	net.Conn
	maxHead int
	state   int
	head    []byte // the head held back (inHead), or the line being read
	remain  int64  // body or chunk bytes left
	out     []byte // processed bytes not yet returned
	raw     []byte // read buffer
}

func (c *framingConn) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if c.raw == nil {
			c.raw = make([]byte, 4096)
		}
		n, err := c.Conn.Read(c.raw)
		if n > 0 {
			c.feed(c.raw[:n])
		}
		if len(c.out) == 0 && err != nil {
			// At the end of the stream a head still held back is
			// incomplete: hand it over so net/http answers it as it
			// would have. A timeout is not the end: net/http interrupts
			// its background read with a past deadline and reads on.
			var ne net.Error
			if len(c.head) > 0 && c.state == inHead && !(errors.As(err, &ne) && ne.Timeout()) {
				c.out, c.head = c.head, nil
				break
			}
			return 0, err
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	if len(c.out) == 0 {
		c.out = nil
	}
	return n, nil
}

// feed runs the framing state machine over b, appending what may be
// passed on to c.out.
func (c *framingConn) feed(b []byte) {
	for len(b) > 0 {
		switch c.state {
		case passThrough:
			c.out = append(c.out, b...)
			return
		case inHead:
			c.head = append(c.head, b...)
			b = nil
			end := bytes.Index(c.head, []byte("\r\n\r\n"))
			if end < 0 {
				if len(c.head) > c.maxHead {
					c.out, c.head, c.state = append(c.out, c.head...), nil, passThrough
				}
				continue
			}
			head, rest := c.head[:end+4], c.head[end+4:]
			c.head = nil
			c.out = append(c.out, c.inspect(head)...)
			b = rest
		case inBody, inChunkData:
			n := int64(len(b))
			if n > c.remain {
				n = c.remain
			}
			c.out = append(c.out, b[:n]...)
			b = b[n:]
			if c.remain -= n; c.remain == 0 {
				if c.state == inBody {
					c.state = inHead
				} else {
					c.state = inChunkEnd
				}
			}
		case inChunkLine, inChunkEnd, inTrailer:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				c.out = append(c.out, b...)
				c.head = append(c.head, b...)
				if len(c.head) > 4096 {
					c.head, c.state = nil, passThrough
				}
				return
			}
			c.out = append(c.out, b[:i+1]...)
			line := append(c.head, b[:i]...)
			c.head = nil
			b = b[i+1:]
			c.line(bytes.TrimRight(line, "\r"))
		}
	}
}

// line handles one line of chunked framing.
func (c *framingConn) line(line []byte) {
	switch c.state {
	case inChunkLine:
		size, _, _ := bytes.Cut(line, []byte(";"))
		n, err := strconv.ParseInt(strings.TrimSpace(string(size)), 16, 64)
		switch {
		case err != nil || n < 0:
			c.state = passThrough // net/http refuses it
		case n == 0:
			c.state = inTrailer
		default:
			c.state, c.remain = inChunkData, n
		}
	case inChunkEnd:
		c.state = inChunkLine
	case inTrailer:
		if len(line) == 0 {
			c.state = inHead
		}
	}
}

// inspect reads a complete request head, sets the state for its body and
// returns the head to pass on (with Content-Length renamed when it comes
// with Transfer-Encoding).
func (c *framingConn) inspect(head []byte) []byte {
	lines := bytes.Split(head[:len(head)-4], []byte("\r\n"))
	if len(lines) == 0 || len(lines[0]) == 0 {
		c.state = passThrough // net/http refuses a blank request line
		return head
	}
	// net/http honours Transfer-Encoding from HTTP/1.1 on only.
	http11 := bytes.HasSuffix(lines[0], []byte(" HTTP/1.1"))
	var cl []int // indexes of Content-Length lines
	var te []byte
	for i, l := range lines[1:] {
		if len(l) == 0 || l[0] == ' ' || l[0] == '\t' {
			continue // a continuation line (net/http refuses it)
		}
		name, value, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			continue
		}
		switch {
		case strings.EqualFold(string(name), "Content-Length"):
			cl = append(cl, i+1)
		case strings.EqualFold(string(name), "Transfer-Encoding") && http11:
			te = bytes.TrimSpace(value)
		}
	}
	switch {
	case te != nil && len(cl) > 0:
		for _, i := range cl {
			_, value, _ := bytes.Cut(lines[i], []byte(":"))
			lines[i] = append([]byte(AmbiguousFramingHeader+":"), value...)
		}
		c.state = passThrough // the connection closes after the 400
		return append(bytes.Join(lines, []byte("\r\n")), "\r\n\r\n"...)
	case te != nil:
		if strings.EqualFold(string(te), "chunked") {
			c.state = inChunkLine
		} else {
			c.state = passThrough // net/http refuses other codings
		}
	case len(cl) > 0:
		_, value, _ := bytes.Cut(lines[cl[0]], []byte(":"))
		n, err := strconv.ParseInt(strings.TrimSpace(string(value)), 10, 64)
		switch {
		case err != nil || n < 0:
			c.state = passThrough // net/http refuses it
		case n == 0:
			c.state = inHead
		default:
			c.state, c.remain = inBody, n
		}
	default:
		c.state = inHead
	}
	return head
}
