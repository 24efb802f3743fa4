package app_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/app/apptest"
)

// TestServerRefusesContentLengthWithTransferEncoding: the served otphub
// (not just the httpx pieces) answers a request carrying both framing
// headers with 400 and closes the connection (issue 18, RFC 9112 §6.3).
func TestServerRefusesContentLengthWithTransferEncoding(t *testing.T) {
	srv := apptest.Start(t)
	u, _ := url.Parse(srv.URL)
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	body := "grant_type=client_credentials"
	io.WriteString(c, "POST /oauth2/token HTTP/1.1\r\nHost: "+u.Host+"\r\nContent-Type: application/x-www-form-urlencoded\r\n"+
		"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"+
		strconv.FormatInt(int64(len(body)), 16)+"\r\n"+body+"\r\n0\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(string(b), `"error":"invalid_request"`) || !strings.Contains(string(b), "Transfer-Encoding") {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("the connection stayed open: %v", err)
	}
}
