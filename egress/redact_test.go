package egress_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/otphub/otphub/egress"
)

// failingResolver answers like a real resolver whose server is internal.
type failingResolver struct{ err error }

func (f failingResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return nil, f.err
}

// TestErrorsNameNoInternalAddress is issue 18's disclosure: errors shown
// to org admins (API errors, delivery attempt logs) named the internal
// DNS resolver's address and the IP an internal host name resolves to.
func TestErrorsNameNoInternalAddress(t *testing.T) {
	ctx := context.Background()
	private, _ := newClient(t, egress.Config{Resolver: staticResolver{"billing.internal": {"10.20.30.40"}, "meta.internal": {"169.254.169.254"}}})
	for _, u := range []string{"https://billing.internal/cb", "http://meta.internal/"} {
		for what, err := range map[string]error{
			"CheckURL": private.CheckURL(ctx, u),
			"request":  get(private, u),
		} {
			if !egress.IsRefused(err) {
				t.Fatalf("%s %s: %v, want refused", what, u, err)
			}
			msg := err.Error()
			if strings.Contains(msg, "10.20.30.40") || strings.Contains(msg, "169.254") || strings.Contains(msg, "10.0.0.0/8") {
				t.Errorf("%s %s: %q names the address", what, u, msg)
			}
		}
	}
	if err := private.CheckURL(ctx, "https://billing.internal/cb"); !strings.HasSuffix(err.Error(), "refused: billing.internal: private address") {
		t.Errorf("CheckURL: %q", err)
	}

	dnsFails := []*net.DNSError{
		&net.DNSError{Err: "no such host", Name: "gone.example", Server: "10.96.0.10:53", IsNotFound: true},
		&net.DNSError{Err: "i/o timeout", Name: "slow.example", Server: "10.96.0.10:53", IsTimeout: true},
		&net.DNSError{Err: "server misbehaving", Name: "odd.example", Server: "10.96.0.10:53"},
	}
	for _, de := range dnsFails {
		c, _ := newClient(t, egress.Config{Resolver: failingResolver{de}})
		for _, err := range []error{c.CheckURL(ctx, "https://"+de.Name+"/cb"), get(c, "https://"+de.Name+"/cb")} {
			if err == nil || strings.Contains(err.Error(), "10.96.0.10") || !strings.Contains(err.Error(), de.Name) {
				t.Errorf("DNS failure %q: %v", de.Err, err)
			}
		}
	}
	// A timeout stays a timeout for the classifiers.
	c, _ := newClient(t, egress.Config{Resolver: failingResolver{dnsFails[1]}})
	var ne net.Error
	if err := c.CheckURL(ctx, "https://slow.example/"); !errorsAs(err, &ne) || !ne.Timeout() {
		t.Errorf("a DNS timeout is no longer a timeout: %v", err)
	}

	// A failed connection to an allow-listed internal address names the
	// host asked for, not the address dialled.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now
	allowed, _ := newClient(t, egress.Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Resolver: staticResolver{"gateway.internal": {"127.0.0.1"}}})
	err = get(allowed, "http://gateway.internal:"+itoa(port)+"/send")
	if err == nil || strings.Contains(err.Error(), "127.0.0.1") || !strings.Contains(err.Error(), "connect to gateway.internal:"+itoa(port)+": connection refused") {
		t.Errorf("connection failure: %v", err)
	}
}

func get(c *egress.Client, u string) error {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.HTTP().Do(req)
	if err == nil {
		resp.Body.Close()
	}
	return err
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

func itoa(n int) string { return strconv.Itoa(n) }
