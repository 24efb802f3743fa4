package httpx_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otphub/otphub/internal/httpx"
)

// framingServer serves, on a loopback FramingListener, a handler that
// echoes the method, path and body it got, and records every path.
func framingServer(t *testing.T) (addr string, paths func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	h := httpx.RefuseAmbiguousFraming(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.URL.Path)
		mu.Unlock()
		io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(b))
	}))
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 32 << 10}
	go srv.Serve(httpx.FramingListener(ln, srv.MaxHeaderBytes))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}
}

// exchange writes raw on one connection and reads answers until the
// server closes it or want answers arrived.
func exchange(t *testing.T, addr, raw string, want int) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// Written in small pieces so heads and bodies straddle reads.
	for i := 0; i < len(raw); i += 7 {
		if _, err := io.WriteString(c, raw[i:min(i+7, len(raw))]); err != nil {
			break
		}
	}
	br := bufio.NewReader(c)
	var out []*http.Response
	for len(out) < want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		out = append(out, resp)
	}
	return out
}

func bodyOf(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// TestContentLengthWithTransferEncodingRefused is issue 18's framing case:
// a request with both headers was served (RFC 9112 §6.3 says refuse it).
// The classic smuggling payload's hidden second request never runs.
func TestContentLengthWithTransferEncodingRefused(t *testing.T) {
	t.Parallel()
	addr, paths := framingServer(t)
	smuggle := "POST /front HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
	got := exchange(t, addr, smuggle, 2)
	if len(got) != 1 || got[0].StatusCode != 400 || got[0].Header.Get("Content-Type") != "application/json" ||
		!strings.Contains(bodyOf(got[0]), `"error":"invalid_request"`) {
		t.Fatalf("CL+TE: %d answers, first %+v", len(got), got)
	}
	if p := paths(); len(p) != 0 {
		t.Fatalf("handled paths %v, want none", p)
	}
	// The header names' case and order do not matter.
	got = exchange(t, addr, "POST /b HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 1)
	if len(got) != 1 || got[0].StatusCode != 400 {
		t.Fatalf("lower-case TE then CL: %+v", got)
	}
}

// TestFramingKeepsKeepAliveRequestsIntact: on one connection, bodies of
// either framing are passed through and the following heads still found.
func TestFramingKeepsKeepAliveRequestsIntact(t *testing.T) {
	t.Parallel()
	addr, _ := framingServer(t)
	raw := "POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello\r\n\r\nxx" +
		"POST /two HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n" +
		"GET /three HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /four HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	got := exchange(t, addr, raw, 4)
	want := []struct {
		code int
		body string
	}{{200, "POST /one hello\r\n\r\nxx"}, {200, "POST /two hello world"}, {200, "GET /three "}, {400, ""}}
	if len(got) != len(want) {
		t.Fatalf("%d answers, want %d", len(got), len(want))
	}
	for i, w := range want {
		b := bodyOf(got[i])
		if got[i].StatusCode != w.code || (w.body != "" && b != w.body) {
			t.Errorf("answer %d: %d %q, want %d %q", i+1, got[i].StatusCode, b, w.code, w.body)
		}
	}
}
