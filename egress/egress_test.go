package egress_test

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/egress"
)

// staticResolver answers fixed addresses per host, standing in for DNS
// (the real net.Resolver is used when Config.Resolver is nil).
type staticResolver map[string][]string

func (s staticResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	ips, ok := s[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, ip := range ips {
		out = append(out, netip.MustParseAddr(ip))
	}
	return out, nil
}

func newClient(t *testing.T, cfg egress.Config) (*egress.Client, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := egress.New(cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c, reg
}

func TestRanges(t *testing.T) {
	c, _ := newClient(t, egress.Config{})
	cases := []struct {
		ip      string
		allowed bool
	}{
		// Public.
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"93.184.216.34", true},
		{"2606:4700:4700::1111", true},
		{"2001:4860:4860::8888", true},
		{"::ffff:8.8.8.8", true},
		{"64:ff9b::808:808", true}, // NAT64 of 8.8.8.8
		{"2002:808:808::1", true},  // 6to4 of 8.8.8.8
		{"100.63.255.255", true},
		{"100.128.0.0", true},
		{"172.15.255.255", true},
		{"172.32.0.0", true},
		{"192.169.0.1", true},
		{"198.17.255.255", true},
		{"198.20.0.0", true},
		{"11.0.0.1", true},
		{"223.255.255.255", true},
		// 0/8 and unspecified.
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"::", false},
		// RFC 1918.
		{"10.0.0.1", false},
		{"10.255.255.255", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.168.0.1", false},
		{"192.168.255.255", false},
		// Loopback.
		{"127.0.0.1", false},
		{"127.255.255.254", false},
		{"::1", false},
		// Link-local and metadata.
		{"169.254.0.1", false},
		{"169.254.169.254", false},
		{"fe80::1", false},
		{"febf::1", false},
		{"fd00:ec2::254", false},
		// CGNAT.
		{"100.64.0.1", false},
		{"100.127.255.255", false},
		// Special IPv4.
		{"192.0.0.8", false},
		{"192.0.2.1", false},
		{"198.18.0.1", false},
		{"198.19.255.255", false},
		{"198.51.100.7", false},
		{"203.0.113.9", false},
		{"192.88.99.1", false},
		{"224.0.0.1", false},
		{"239.255.255.250", false},
		{"240.0.0.1", false},
		{"255.255.255.255", false},
		// ULA, site-local, multicast, documentation, Teredo, discard.
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"fec0::1", false},
		{"ff02::1", false},
		{"2001:db8::1", false},
		{"2001::1", false},
		{"100::1", false},
		{"::7f00:1", false}, // IPv4-compatible 127.0.0.1
		// IPv4-mapped IPv6 of refused ranges.
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.1.2.3", false},
		{"::ffff:169.254.169.254", false},
		{"::ffff:0.0.0.0", false},
		// NAT64 and 6to4 of refused ranges.
		{"64:ff9b::7f00:1", false},
		{"64:ff9b::a9fe:a9fe", false},
		{"64:ff9b::c0a8:1", false},
		{"64:ff9b:1::1", false},
		{"2002:7f00:1::1", false},
		{"2002:a00:1::", false},
	}
	for _, tc := range cases {
		if got := c.Allowed(netip.MustParseAddr(tc.ip)); got != tc.allowed {
			t.Errorf("Allowed(%s) = %v, want %v", tc.ip, got, tc.allowed)
		}
	}
}

func TestAllowCIDRs(t *testing.T) {
	allow, err := egress.ParseCIDRs(" 127.0.0.0/8, 10.1.0.0/16 ,fd00::/8,169.254.169.254")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := newClient(t, egress.Config{AllowCIDRs: allow})
	cases := []struct {
		ip      string
		allowed bool
	}{
		{"127.0.0.1", true},
		{"::ffff:127.0.0.1", true}, // the mapped form of an allowed address
		{"10.1.2.3", true},
		{"10.2.0.1", false},
		{"fd00::5", true},
		{"fc00::5", false},
		{"169.254.169.254", true},
		{"169.254.169.253", false},
		{"::1", false}, // 127/8 does not allow the IPv6 loopback
		{"192.168.1.1", false},
		{"8.8.8.8", true},
	}
	for _, tc := range cases {
		if got := c.Allowed(netip.MustParseAddr(tc.ip)); got != tc.allowed {
			t.Errorf("Allowed(%s) = %v, want %v", tc.ip, got, tc.allowed)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "nonsense", "1.2.3"} {
		if _, err := egress.ParseCIDRs(bad); err == nil {
			t.Errorf("ParseCIDRs(%q) accepted", bad)
		}
	}
}

func TestCheckURL(t *testing.T) {
	res := staticResolver{
		"public.example":  {"93.184.216.34"},
		"private.example": {"10.0.0.7"},
		"mixed.example":   {"93.184.216.34", "127.0.0.1"},
		"meta.example":    {"169.254.169.254"},
		"v6.example":      {"2606:4700::1"},
	}
	c, reg := newClient(t, egress.Config{Resolver: res})
	cases := []struct {
		url     string
		ok      bool
		refused bool // a *RefusedError
	}{
		{"https://public.example/cb?x=1", true, false},
		{"http://public.example:8080/cb", true, false},
		{"https://v6.example/cb", true, false},
		{"https://93.184.216.34/cb", true, false},
		{"https://[2606:4700::1]:8443/cb", true, false},
		{"ftp://public.example/cb", false, false},
		{"javascript:alert(1)", false, false},
		{"/relative/cb", false, false},
		{"https://user:pw@public.example/cb", false, false},
		{"https://public.example:0/cb", false, false},
		{"https://public.example:99999/cb", false, false},
		{"https://no-such.example/cb", false, false},
		{"https://private.example/cb", false, true},
		{"https://mixed.example/cb", false, true},
		{"https://meta.example/latest/meta-data", false, true},
		{"http://127.0.0.1:8080/cb", false, true},
		{"http://[::1]/cb", false, true},
		{"http://[::ffff:127.0.0.1]/cb", false, true},
		{"http://[fe80::1%25eth0]/cb", false, true},
		{"http://169.254.169.254/", false, true},
		{"http://0.0.0.0:80/", false, true},
		{"http://%zz/", false, false},
	}
	refusals := 0
	for _, tc := range cases {
		err := c.CheckURL(context.Background(), tc.url)
		if (err == nil) != tc.ok {
			t.Errorf("CheckURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
			continue
		}
		if got := egress.IsRefused(err); got != tc.refused {
			t.Errorf("CheckURL(%q) = %v, refused=%v, want %v", tc.url, err, got, tc.refused)
		}
		if tc.refused {
			refusals++
		}
		if err != nil && strings.Contains(err.Error(), "/cb") {
			t.Errorf("CheckURL(%q) error repeats the path: %v", tc.url, err)
		}
	}
	if got := refused(t, reg, "subscribe"); got != float64(refusals) {
		t.Errorf("refused{stage=subscribe} = %v, want %d", got, refusals)
	}
}

// refused reads otphub_egress_refused_total{stage} from reg.
func refused(t *testing.T, reg *prometheus.Registry, stage string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "otphub_egress_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" && l.GetValue() == stage {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no otphub_egress_refused_total{stage=%q}", stage)
	return 0
}

func TestDialRefusesLoopbackWithoutAllowList(t *testing.T) {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits++ }))
	defer srv.Close()

	c, reg := newClient(t, egress.Config{})
	_, err := c.HTTP().Get(srv.URL)
	if !egress.IsRefused(err) {
		t.Fatalf("GET %s: err = %v, want a *RefusedError", srv.URL, err)
	}
	if hits != 0 {
		t.Fatal("the refused request reached the server")
	}
	if got := refused(t, reg, "dial"); got != 1 {
		t.Errorf("refused{stage=dial} = %v, want 1", got)
	}
}

// TestDialRebinding: a name that resolved to a public address at save time
// and to loopback at dial time is refused at dial time.
func TestDialRebinding(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	res := staticResolver{"rebind.example": {"93.184.216.34"}}
	c, _ := newClient(t, egress.Config{Resolver: res})
	if err := c.CheckURL(context.Background(), "http://rebind.example:"+port+"/"); err != nil {
		t.Fatalf("CheckURL at save time: %v", err)
	}
	res["rebind.example"] = []string{"127.0.0.1"}
	_, err := c.HTTP().Get("http://rebind.example:" + port + "/")
	if !egress.IsRefused(err) {
		t.Fatalf("after rebinding: err = %v, want a *RefusedError", err)
	}
}

// TestDialAllowListedByName: an allow-listed name is dialled at the
// address the guard resolved, not re-resolved by the transport.
func TestDialAllowListedByName(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host == "" || !strings.HasPrefix(r.Host, "gateway.internal:") {
			t.Errorf("Host header = %q", r.Host)
		}
		if ua := r.Header.Get("User-Agent"); ua != "otphub-test" {
			t.Errorf("User-Agent = %q", ua)
		}
		io.WriteString(w, "hello")
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	res := staticResolver{"gateway.internal": {"127.0.0.1"}}
	c, _ := newClient(t, egress.Config{
		Resolver:   res,
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		UserAgent:  "otphub-test",
	})
	resp, err := c.HTTP().Get("http://gateway.internal:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.ReadBody(resp)
	if err != nil || string(b) != "hello" {
		t.Fatalf("body = %q, %v", b, err)
	}
}

func TestNoRedirects(t *testing.T) {
	followed := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/target" {
			followed = true
			return
		}
		http.Redirect(w, r, "/target", http.StatusFound)
	}))
	defer srv.Close()
	c, _ := newClient(t, egress.Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	resp, err := c.HTTP().Get(srv.URL + "/start")
	if err != nil {
		t.Fatal(err)
	}
	egress.Discard(resp, 1024)
	if resp.StatusCode != http.StatusFound || followed {
		t.Fatalf("status %d, followed=%v; want the 302 itself", resp.StatusCode, followed)
	}
}

func TestReadLimited(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Repeat("x", 100))
	}))
	defer srv.Close()
	c, _ := newClient(t, egress.Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, MaxResponseBytes: 10})
	resp, err := c.HTTP().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.ReadBody(resp)
	if !errors.Is(err, egress.ErrBodyTooLarge) || len(b) != 10 {
		t.Fatalf("ReadBody = %d bytes, %v; want 10 bytes and ErrBodyTooLarge", len(b), err)
	}
	resp, err = c.HTTP().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	b, err = egress.ReadLimited(resp, 100)
	if err != nil || len(b) != 100 {
		t.Fatalf("ReadLimited(100) = %d bytes, %v", len(b), err)
	}
}

func TestTotalTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c, _ := newClient(t, egress.Config{
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Timeout:    50 * time.Millisecond,
	})
	_, err := c.HTTP().Get(srv.URL)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want a timeout", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []egress.Config{
		{ConnectTimeout: -1},
		{Timeout: -1},
		{MaxResponseBytes: -1},
		{MaxIdleConnsPerHost: -1},
		{AllowCIDRs: []netip.Prefix{{}}},
	} {
		if _, err := egress.New(cfg, nil); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	// Registering twice with one registry fails loudly rather than panicking.
	reg := prometheus.NewRegistry()
	if _, err := egress.New(egress.Config{}, reg); err != nil {
		t.Fatal(err)
	}
	if _, err := egress.New(egress.Config{}, reg); err == nil {
		t.Error("second registration accepted")
	}
}

// TestTLSDialByCheckedIP: TLS still verifies the certificate against the
// URL's host although the guard dials the resolved IP.
func TestTLSDialByCheckedIP(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tls") }))
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	// httptest's certificate is for 127.0.0.1 and "example.com".
	res := staticResolver{"example.com": {"127.0.0.1"}, "other.example": {"127.0.0.1"}}
	c, _ := newClient(t, egress.Config{
		Resolver: res, RootCAs: pool,
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	})
	resp, err := c.HTTP().Get("https://example.com:" + port + "/")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := c.ReadBody(resp); string(b) != "tls" {
		t.Fatalf("body %q", b)
	}
	if _, err := c.HTTP().Get("https://other.example:" + port + "/"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a certificate for another name was accepted: %v", err)
	}
}
