// Package egress owns the one HTTP client otphub uses for every outbound
// request to a customer- or operator-supplied URL (webhook callbacks, intent
// verification, custom SMS gateways, provider base URLs): it refuses
// private, loopback, link-local, metadata and other special addresses at
// save time (CheckURL) and again at dial time, after its own DNS lookup,
// dialling the checked IP so a DNS rebinding cannot slip past. It never
// follows redirects, bounds connect and total time, and caps response
// bodies.
package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config.
const (
	DefaultConnectTimeout      = 5 * time.Second
	DefaultTimeout             = 10 * time.Second
	DefaultMaxResponseBytes    = 64 << 10
	DefaultMaxIdleConnsPerHost = 8
	DefaultUserAgent           = "otphub (+https://github.com/otphub/otphub)"
)

// Resolver looks up a host's addresses; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config configures the client.
type Config struct {
	// AllowCIDRs are exempt from the guard (--egress-allow-cidrs), e.g.
	// 127.0.0.0/8 for a gateway on the same machine. Default: none.
	AllowCIDRs []netip.Prefix
	// ConnectTimeout bounds DNS lookup plus TCP connect, and the TLS
	// handshake. Default 5 s.
	ConnectTimeout time.Duration
	// Timeout bounds a whole request, reading the response included.
	// Default 10 s. A shorter context deadline wins.
	Timeout time.Duration
	// MaxResponseBytes caps how much of a response body ReadBody reads.
	// Default 64 KiB.
	MaxResponseBytes int64
	// MaxIdleConnsPerHost is the keep-alive pool size per host. Default 8.
	MaxIdleConnsPerHost int
	// UserAgent is sent when a request sets none. Default DefaultUserAgent.
	UserAgent string
	// Resolver resolves host names. Default net.DefaultResolver.
	Resolver Resolver
	// RootCAs verifies servers' certificates. Default: the system roots.
	RootCAs *x509.CertPool
}

// Validate checks the configuration after defaults were applied.
func (c Config) Validate() error {
	for _, p := range c.AllowCIDRs {
		if !p.IsValid() {
			return fmt.Errorf("egress: invalid allow CIDR %v", p)
		}
	}
	switch {
	case c.ConnectTimeout < 0:
		return errors.New("egress: ConnectTimeout must not be negative")
	case c.Timeout < 0:
		return errors.New("egress: Timeout must not be negative")
	case c.MaxResponseBytes < 0:
		return errors.New("egress: MaxResponseBytes must not be negative")
	case c.MaxIdleConnsPerHost < 0:
		return errors.New("egress: MaxIdleConnsPerHost must not be negative")
	}
	return nil
}

func (c *Config) applyDefaults() {
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.MaxIdleConnsPerHost == 0 {
		c.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
}

// ParseCIDRs parses a comma-separated list of CIDRs or bare addresses (a
// bare address allows just itself), as --egress-allow-cidrs takes them.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("egress: %q is not a CIDR or an IP address", f)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("egress: %q is not a CIDR: %v", f, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// RefusedError is returned (wrapped in *url.Error by http.Client) when the
// guard refuses a destination. Senders classify it as a permanent
// delivery.ReasonEgressRefused. Its message names the host as given and
// why, never the address a name resolved to: error messages reach org
// admins (API errors, delivery attempt logs), and an internal host name's
// address is the operator's to know.
type RefusedError struct {
	Host   string     // the host name or literal asked for
	Addr   netip.Addr // the refused address (for logs only); invalid when the URL itself was refused
	Reason string     // why, without the address or range, e.g. "private address"
}

func (e *RefusedError) Error() string {
	if e.Host != "" {
		return fmt.Sprintf("egress refused: %s: %s", e.Host, e.Reason)
	}
	return "egress refused: " + e.Reason
}

// refused returns the RefusedError of host (resolved to a) for why, the
// refusal's description, without the range it names ("private address
// (10.0.0.0/8)" is "private address").
func refused(host string, a netip.Addr, why string) *RefusedError {
	if i := strings.Index(why, " ("); i > 0 {
		why = why[:i]
	}
	return &RefusedError{Host: host, Addr: a, Reason: why}
}

// lookupError is a failed DNS lookup of Host. Its message says only what
// failed: net.DNSError names the resolver's address (an internal one).
// Unwrap keeps the cause for classification (timeouts).
type lookupError struct {
	host string
	err  error
}

func (e *lookupError) Error() string {
	var de *net.DNSError
	switch {
	case errors.As(e.err, &de) && de.IsNotFound:
		return "resolve " + e.host + ": no such host"
	case errors.As(e.err, &de) && de.IsTimeout, errors.Is(e.err, context.DeadlineExceeded):
		return "resolve " + e.host + ": DNS lookup timed out"
	case errors.Is(e.err, context.Canceled):
		return "resolve " + e.host + ": canceled"
	}
	return "resolve " + e.host + ": DNS lookup failed"
}

func (e *lookupError) Unwrap() error { return e.err }

// dialError is a failed connection to host:port. Its message names the
// host as asked for and the kind of failure, never the address dialled.
type dialError struct {
	hostPort string
	err      error
}

func (e *dialError) Error() string {
	var ne net.Error
	why := "connection failed"
	switch {
	case errors.Is(e.err, syscall.ECONNREFUSED):
		why = "connection refused"
	case errors.Is(e.err, syscall.ECONNRESET):
		why = "connection reset"
	case errors.Is(e.err, syscall.ENETUNREACH), errors.Is(e.err, syscall.EHOSTUNREACH):
		why = "network unreachable"
	case errors.Is(e.err, context.Canceled):
		why = "canceled"
	case errors.Is(e.err, context.DeadlineExceeded), errors.As(e.err, &ne) && ne.Timeout():
		why = "timed out"
	}
	return "connect to " + e.hostPort + ": " + why
}

func (e *dialError) Unwrap() error { return e.err }

// IsRefused reports whether err is (or wraps) a *RefusedError.
func IsRefused(err error) bool {
	var re *RefusedError
	return errors.As(err, &re)
}

// Client is the guarded HTTP client. Safe for concurrent use.
type Client struct {
	cfg     Config
	http    *http.Client
	refused *prometheus.CounterVec
}

// New builds the client and registers otphub_egress_refused_total{stage}
// with reg (which may be nil in tools that export no metrics).
func New(cfg Config, reg prometheus.Registerer) (*Client, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg}
	c.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "otphub_egress_refused_total",
		Help: "Outbound requests refused by the SSRF guard, by stage (subscribe: when a URL is saved; dial: after DNS, before connecting).",
	}, []string{"stage"})
	for _, s := range []string{StageSubscribe, StageDial} {
		c.refused.WithLabelValues(s)
	}
	if reg != nil {
		if err := reg.Register(c.refused); err != nil {
			return nil, fmt.Errorf("egress: register metrics: %w", err)
		}
	}
	tr := &http.Transport{
		Proxy:                  nil, // never an environment proxy: it would dial for us, unguarded
		DialContext:            c.dialContext,
		ForceAttemptHTTP2:      true,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: cfg.RootCAs},
		MaxIdleConns:           1024,
		MaxIdleConnsPerHost:    cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    cfg.ConnectTimeout,
		ResponseHeaderTimeout:  cfg.Timeout,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	c.http = &http.Client{
		Transport: userAgent{ua: cfg.UserAgent, next: tr},
		Timeout:   cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return c, nil
}

// Stages of otphub_egress_refused_total.
const (
	StageSubscribe = "subscribe"
	StageDial      = "dial"
)

// HTTP returns the guarded client. It never follows redirects: a 3xx is
// returned to the caller as is.
func (c *Client) HTTP() *http.Client { return c.http }

// MaxResponseBytes is the configured response body cap.
func (c *Client) MaxResponseBytes() int64 { return c.cfg.MaxResponseBytes }

// ReadBody reads resp's body up to the configured cap and closes it; see
// ReadLimited.
func (c *Client) ReadBody(resp *http.Response) ([]byte, error) {
	return ReadLimited(resp, c.cfg.MaxResponseBytes)
}

// ErrBodyTooLarge is returned by ReadLimited, with the first max bytes,
// when the body is longer than max.
var ErrBodyTooLarge = errors.New("egress: response body too large")

// ReadLimited reads at most max bytes of resp's body and closes it. When the
// body is longer it returns the first max bytes and ErrBodyTooLarge; the
// rest is not read (the connection is then not reused, which is the point
// of a cap).
func ReadLimited(resp *http.Response, max int64) ([]byte, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return b, err
	}
	if int64(len(b)) > max {
		return b[:max], ErrBodyTooLarge
	}
	return b, nil
}

// Discard reads and drops at most max bytes of resp's body (so a short
// body's connection is reused) and closes it.
func Discard(resp *http.Response, max int64) {
	_, _ = io.CopyN(io.Discard, resp.Body, max)
	_ = resp.Body.Close()
}

// CheckURL validates a URL that will be called later (a WebSub callback, a
// custom gateway URL) when it is saved: scheme http or https, a host, no
// userinfo, and a host that resolves only to allowed addresses. A refusal
// of the address is a *RefusedError and counts stage="subscribe"; other
// problems are plain errors. Messages never repeat the URL's path or query.
func (c *Client) CheckURL(ctx context.Context, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("the URL scheme must be http or https")
	case u.Opaque != "" || u.Host == "":
		return errors.New("the URL must be absolute, with a host")
	case u.User != nil:
		return errors.New("the URL must not contain user information")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return errors.New("the URL port is invalid")
		}
	}
	host := u.Hostname()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	if _, err := c.resolve(ctx, host); err != nil {
		if IsRefused(err) {
			c.refused.WithLabelValues(StageSubscribe).Inc()
		}
		return err
	}
	return nil
}

// resolve returns host's addresses if every one of them is allowed.
func (c *Client) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if host == "" {
		return nil, refused("", netip.Addr{}, "empty host")
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return nil, &RefusedError{Host: host, Addr: a, Reason: "scoped (zoned) address"}
		}
		if why := c.refusal(a); why != "" {
			return nil, refused(host, a, why)
		}
		return []netip.Addr{a}, nil
	}
	addrs, err := c.cfg.Resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, &lookupError{host: host, err: err}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", host)
	}
	// Every address must pass: a name that mixes public and private
	// addresses is refused rather than trimmed.
	for _, a := range addrs {
		if why := c.refusal(a); why != "" {
			return nil, refused(host, a, why)
		}
	}
	return addrs, nil
}

// Allowed reports whether a is a destination the guard lets through.
func (c *Client) Allowed(a netip.Addr) bool { return c.refusal(a) == "" }

// refusal returns why a is refused, "" when allowed.
func (c *Client) refusal(a netip.Addr) string {
	a = a.WithZone("")
	for _, p := range c.cfg.AllowCIDRs {
		if p.Contains(a) || (a.Is4In6() && p.Contains(a.Unmap())) {
			return ""
		}
	}
	return blocked(a)
}

func (c *Client) dialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	addrs, err := c.resolve(ctx, host)
	if err != nil {
		if IsRefused(err) {
			c.refused.WithLabelValues(StageDial).Inc()
		}
		return nil, err
	}
	d := net.Dialer{
		// Re-check the address actually connected to; it is one of
		// addrs, so this only fails if something upstream changed it.
		Control: func(_, addr string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				return &RefusedError{Host: host, Reason: "unparseable dial address"}
			}
			if why := c.refusal(ap.Addr()); why != "" {
				return refused(host, ap.Addr(), why)
			}
			return nil
		},
	}
	var first error
	for _, a := range addrs {
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return conn, nil
		}
		var re *RefusedError
		if errors.As(err, &re) {
			// Not the *net.OpError around it: that names the address.
			c.refused.WithLabelValues(StageDial).Inc()
			return nil, re
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, &dialError{hostPort: net.JoinHostPort(host, port), err: first}
}

type userAgent struct {
	ua   string
	next http.RoundTripper
}

func (u userAgent) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("User-Agent") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("User-Agent", u.ua)
	}
	return u.next.RoundTrip(r)
}

// CloseIdleConnections closes kept-alive connections (at shutdown).
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }
