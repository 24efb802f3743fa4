// Package config owns otphub's start-up configuration: every setting as a
// flag with an OTPHUB_* environment twin and a key in the optional YAML
// file, its default, and its validation. Precedence: flag, then
// environment, then YAML file, then default. Invalid configuration fails at
// start-up with an error that names the setting and what is wrong.
package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/otphub/otphub/authcore"
	"github.com/otphub/otphub/bus/kafka"
	"github.com/otphub/otphub/dispatcher"
	"github.com/otphub/otphub/dispatcher/backlog"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
)

// Roles a process can run.
const (
	RoleAuthcore   = "authcore"
	RoleHub        = "hub"
	RoleDispatcher = "dispatcher"
)

// The SMS OTP admission defaults (--otp-max-in-flight,
// --otp-max-queue-wait; docs/performance.md, "Shedding SMS OTP load").
const (
	DefaultOTPMaxInFlight  = 128
	DefaultOTPMaxQueueWait = 250 * time.Millisecond
)

// AllRoles lists every role, in a stable order.
var AllRoles = []string{RoleAuthcore, RoleHub, RoleDispatcher}

// Config is the whole start-up configuration of `otphub serve`.
type Config struct {
	// Addr is the HTTP listen address. Default 127.0.0.1:8080.
	Addr string
	// PublicURL is the base URL clients reach otphub at; topic URLs, the hub
	// URL, token issuer and Link headers derive from it. Default
	// http://<Addr>.
	PublicURL string
	// DataDir holds the embedded store and log, and a generated encryption
	// key. Default ./data.
	DataDir string
	// DatabaseURL, when set (postgres://…), switches the store to PostgreSQL.
	DatabaseURL string
	// KafkaBrokers, when set, switches the log to Kafka.
	KafkaBrokers []string
	Kafka        KafkaConfig
	// Roles are the roles this process runs. Default all.
	Roles []string
	// EgressAllowCIDRs are exempt from the SSRF guard.
	EgressAllowCIDRs []netip.Prefix
	// AdminClientID and AdminClientSecret define the platform admin client.
	// When both are empty on a first start, one is generated and printed once.
	AdminClientID     string
	AdminClientSecret string
	// EncryptionKey is the 32-byte key for secrets at rest (and OTP HMACs).
	// Required with DatabaseURL; otherwise generated into DataDir.
	EncryptionKey []byte
	// PreviousEncryptionKeys were EncryptionKey before a rotation: what they
	// sealed still opens and is re-encrypted under EncryptionKey in the
	// background. Requires EncryptionKey.
	PreviousEncryptionKeys [][]byte
	// NextEncryptionKey is the key a rotation will switch to, given to
	// every process before any seals with it: opened, never written, and
	// nothing is re-encrypted while it is set. Requires EncryptionKey; not
	// with PreviousEncryptionKeys.
	NextEncryptionKey []byte
	// AllowConsoleProvider lets orgs choose the development-only console
	// SMS provider, which prints SMS to standard output. Default false.
	AllowConsoleProvider bool
	// ConsoleSignInOrg names the org whose SMS pipeline sends the
	// console's sign-in codes; "" leaves console sign-in password only.
	ConsoleSignInOrg string
	// TrustProxyHeaders makes client-IP limits use X-Forwarded-For. Default false.
	TrustProxyHeaders bool
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string
	// ShutdownTimeout bounds the graceful drain on SIGTERM. Default 20s.
	ShutdownTimeout time.Duration
	// LogRetention is how long the log keeps events: the embedded log's
	// retention (segments sealed at a 24th of it), and retention.ms of the
	// Kafka topics otphub creates (segment.ms a 24th of it). Events carry
	// OTPs in clear. Default 24h.
	LogRetention time.Duration
	// DeliveryMaxAttempts bounds retries before a delivery is dead. Default 10.
	DeliveryMaxAttempts int
	// DeliveryTimeout bounds one delivery attempt. Default 10s.
	DeliveryTimeout time.Duration
	// EndpointConcurrency caps concurrent deliveries per org and endpoint. Default 8.
	EndpointConcurrency int
	// HostConcurrency caps concurrent deliveries per host across orgs; 0
	// (the default) is no cap.
	HostConcurrency int
	// MaxPendingPerDestination: a destination (webhook subscription or SMS
	// provider slot) with more pending deliveries than this is backed up,
	// and an org whose every destination is backed up gets its new events
	// refused (503 delivery_backlog). Default 1000 (see
	// backlog.DefaultLimit for why); 0 disables.
	MaxPendingPerDestination int
	// MaxLogWait: in a process that runs the dispatcher, an org whose
	// events wait in the log before the dispatcher reads them gets a share
	// of its new events refused (503 delivery_backlog): none up to half of
	// this wait, all of them from this wait on. Default 500ms
	// (backlog.DefaultMaxLogWait); 0 disables.
	MaxLogWait time.Duration
	// OTPLimitPerNumber, OTPLimitPerIP and OTPLimitPerOrg are the auth
	// core's SMS send budgets (starts and resends) per mobile number, per
	// client IP and per org. Defaults 10/1h, 100/10m and 1000/1m.
	OTPLimitPerNumber authcore.Limit
	OTPLimitPerIP     authcore.Limit
	OTPLimitPerOrg    authcore.Limit
	// OTPMaxInFlight bounds the SMS OTP starts, resends and verifications
	// doing their store and log work at once; the others wait up to
	// OTPMaxQueueWait for a slot, in turn by org, and are then refused
	// (503 overloaded). Defaults 128 and 250ms; 0 in flight disables.
	OTPMaxInFlight  int
	OTPMaxQueueWait time.Duration
	// ReceiptWindow is how long a final delivery receipt may take after a
	// provider accepted an SMS before the OTP fails over to the org's
	// fallback provider. Default 60s; 0 disables that failover (undelivered
	// and failed receipts still fail over).
	ReceiptWindow time.Duration
}

// KafkaConfig holds the Kafka client settings.
type KafkaConfig struct {
	ClientID          string // default "otphub"
	Partitions        int    // for topics created at start-up; default 12
	ReplicationFactor int    // default 1
	TLS               bool
	TLSCAFile         string
	TLSCertFile       string
	TLSKeyFile        string
	SASLMechanism     string // "", plain, scram-sha-256, scram-sha-512
	SASLUsername      string
	SASLPassword      string
	// SessionTimeout is how long the group waits for a silent consumer
	// (a crashed dispatcher) before handing its partitions to the others:
	// the failover time of first attempts. Default 30s.
	SessionTimeout time.Duration
}

// Has reports whether role is enabled.
func (c *Config) Has(role string) bool { return slices.Contains(c.Roles, role) }

// Embedded reports whether the store is the embedded SQLite one.
func (c *Config) Embedded() bool { return c.DatabaseURL == "" }

// setting is one configurable value: a flag, its env twin and YAML key.
type setting struct {
	name    string // flag name and YAML key
	usage   string
	def     string
	boolean bool
	set     func(c *Config, v string) error
}

// Env returns the environment variable of a flag name.
func Env(name string) string {
	return "OTPHUB_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

var settings = []setting{
	{name: "addr", def: "127.0.0.1:8080", usage: "HTTP listen address (host:port)", set: func(c *Config, v string) error {
		if _, _, err := net.SplitHostPort(v); err != nil {
			return fmt.Errorf("must be host:port: %v", err)
		}
		c.Addr = v
		return nil
	}},
	{name: "public-url", usage: "base URL otphub is reached at; topic, hub and issuer URLs derive from it (default http://<addr>)", set: func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return errors.New("must be an absolute http(s) URL without query or fragment, e.g. https://otp.example.com")
		}
		c.PublicURL = strings.TrimRight(v, "/")
		return nil
	}},
	{name: "data-dir", def: "./data", usage: "directory of the embedded store, log and generated keys", set: func(c *Config, v string) error {
		if v == "" {
			return errors.New("must not be empty")
		}
		c.DataDir = v
		return nil
	}},
	{name: "database-url", usage: "postgres://… switches the store to PostgreSQL", set: func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return errors.New("must be a postgres:// or postgresql:// URL")
		}
		c.DatabaseURL = v
		return nil
	}},
	{name: "kafka-brokers", usage: "comma-separated host:port list; switches the log to Kafka", set: func(c *Config, v string) error {
		c.KafkaBrokers = nil
		for _, b := range splitList(v) {
			if _, _, err := net.SplitHostPort(b); err != nil {
				return fmt.Errorf("broker %q must be host:port", b)
			}
			c.KafkaBrokers = append(c.KafkaBrokers, b)
		}
		return nil
	}},
	{name: "kafka-client-id", def: kafka.DefaultClientID, usage: "Kafka client ID", set: func(c *Config, v string) error { c.Kafka.ClientID = v; return nil }},
	{name: "kafka-partitions", def: strconv.Itoa(kafka.DefaultPartitions), usage: "partitions of topics created at start-up", set: func(c *Config, v string) error {
		return intIn(&c.Kafka.Partitions, v, 1, 10000)
	}},
	{name: "kafka-replication-factor", def: strconv.Itoa(kafka.DefaultReplicationFactor), usage: "replication factor of topics created at start-up", set: func(c *Config, v string) error {
		return intIn(&c.Kafka.ReplicationFactor, v, 1, 100)
	}},
	{name: "kafka-session-timeout", def: kafka.DefaultSessionTimeout.String(), usage: "how long a silent consumer keeps its partitions before the group hands them to another dispatcher (failover time after a crash); 6s to 30m, within the brokers' group.min/max.session.timeout.ms", set: func(c *Config, v string) error {
		return durationIn(&c.Kafka.SessionTimeout, v, 6*time.Second, 30*time.Minute)
	}},
	{name: "kafka-tls", boolean: true, def: "false", usage: "connect to Kafka over TLS", set: func(c *Config, v string) error { return boolVal(&c.Kafka.TLS, v) }},
	{name: "kafka-tls-ca-file", usage: "PEM CA bundle for Kafka TLS", set: fileVal(func(c *Config) *string { return &c.Kafka.TLSCAFile })},
	{name: "kafka-tls-cert-file", usage: "PEM client certificate for Kafka mTLS", set: fileVal(func(c *Config) *string { return &c.Kafka.TLSCertFile })},
	{name: "kafka-tls-key-file", usage: "PEM client key for Kafka mTLS", set: fileVal(func(c *Config) *string { return &c.Kafka.TLSKeyFile })},
	{name: "kafka-sasl-mechanism", usage: "Kafka SASL mechanism: plain, scram-sha-256 or scram-sha-512", set: func(c *Config, v string) error {
		v = strings.ToLower(v)
		if v != "" && v != "plain" && v != "scram-sha-256" && v != "scram-sha-512" {
			return errors.New("must be plain, scram-sha-256 or scram-sha-512")
		}
		c.Kafka.SASLMechanism = v
		return nil
	}},
	{name: "kafka-sasl-username", usage: "Kafka SASL username", set: func(c *Config, v string) error { c.Kafka.SASLUsername = v; return nil }},
	{name: "kafka-sasl-password", usage: "Kafka SASL password", set: func(c *Config, v string) error { c.Kafka.SASLPassword = v; return nil }},
	{name: "roles", def: strings.Join(AllRoles, ","), usage: "roles to run: any of authcore,hub,dispatcher", set: func(c *Config, v string) error {
		c.Roles = nil
		for _, r := range splitList(v) {
			if !slices.Contains(AllRoles, r) {
				return fmt.Errorf("unknown role %q (valid: %s)", r, strings.Join(AllRoles, ", "))
			}
			if !slices.Contains(c.Roles, r) {
				c.Roles = append(c.Roles, r)
			}
		}
		if len(c.Roles) == 0 {
			return errors.New("must name at least one role")
		}
		return nil
	}},
	{name: "egress-allow-cidrs", usage: "comma-separated CIDRs exempt from the SSRF guard (e.g. 127.0.0.0/8)", set: func(c *Config, v string) error {
		c.EgressAllowCIDRs = nil
		for _, s := range splitList(v) {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return fmt.Errorf("%q is not a CIDR", s)
			}
			c.EgressAllowCIDRs = append(c.EgressAllowCIDRs, p.Masked())
		}
		return nil
	}},
	{name: "admin-client-id", usage: "platform admin OAuth client ID (generated and printed once on a first embedded start when unset)", set: func(c *Config, v string) error {
		c.AdminClientID = v
		return nil
	}},
	{name: "admin-client-secret", usage: "platform admin OAuth client secret (at least 32 characters: the token endpoint slows guessing per address, not across addresses)", set: func(c *Config, v string) error {
		if v != "" && len(v) < 32 {
			return errors.New("must be at least 32 characters (e.g. openssl rand -hex 24)")
		}
		c.AdminClientSecret = v
		return nil
	}},
	{name: "encryption-key", usage: "32-byte key (base64 or hex) for secrets at rest; required with --database-url, else generated into --data-dir", set: func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		k, err := store.ParseKey(v)
		if err != nil {
			return errors.New(strings.TrimPrefix(err.Error(), "store: "))
		}
		c.EncryptionKey = k
		return nil
	}},
	{name: "next-encryption-key", usage: "the key a rotation will switch to (base64 or hex): opened but never written; give it to every process before any gets it as --encryption-key", set: func(c *Config, v string) error {
		if v == "" {
			c.NextEncryptionKey = nil
			return nil
		}
		k, err := store.ParseKey(v)
		if err != nil {
			return errors.New(strings.TrimPrefix(err.Error(), "store: "))
		}
		c.NextEncryptionKey = k
		return nil
	}},
	{name: "previous-encryption-keys", usage: "comma-separated keys that were --encryption-key before a rotation: still opened, re-encrypted under --encryption-key in the background", set: func(c *Config, v string) error {
		c.PreviousEncryptionKeys = nil
		for i, part := range strings.Split(v, ",") {
			if strings.TrimSpace(part) == "" {
				continue
			}
			k, err := store.ParseKey(part)
			if err != nil {
				return fmt.Errorf("key %d: %s", i+1, strings.TrimPrefix(err.Error(), "store: "))
			}
			c.PreviousEncryptionKeys = append(c.PreviousEncryptionKeys, k)
		}
		return nil
	}},
	{name: "allow-console-provider", boolean: true, def: "false", usage: "let orgs choose the development-only console SMS provider (prints SMS to stdout)", set: func(c *Config, v string) error {
		return boolVal(&c.AllowConsoleProvider, v)
	}},
	{name: "console-sign-in-org", usage: "org whose SMS OTP settings, provider and templates send the console's sign-in codes (the second factor after the password, through the hosted login step), created at start if missing; password only until it has an SMS provider; empty: console sign-in is password only", set: func(c *Config, v string) error {
		if v != "" && !event.ValidOrgName(v) {
			return errors.New("must be an org name (^[a-z0-9][a-z0-9-]{0,62}$)")
		}
		c.ConsoleSignInOrg = v
		return nil
	}},
	{name: "trust-proxy-headers", boolean: true, def: "false", usage: "take the client IP from X-Forwarded-For (only behind a trusted proxy)", set: func(c *Config, v string) error {
		return boolVal(&c.TrustProxyHeaders, v)
	}},
	{name: "log-level", def: "info", usage: "log level: debug, info, warn or error", set: func(c *Config, v string) error {
		switch v {
		case "debug", "info", "warn", "error":
			c.LogLevel = v
			return nil
		}
		return errors.New("must be debug, info, warn or error")
	}},
	{name: "log-retention", def: "24h", usage: "how long the log keeps events, which carry OTPs in clear (embedded log; retention.ms of Kafka topics otphub creates, with segment.ms a 24th of it); an event is deleted at most a 24th + 5 min later; 1h to 720h, longer than the longest dispatcher outage to survive", set: func(c *Config, v string) error {
		return durationIn(&c.LogRetention, v, time.Hour, 30*24*time.Hour)
	}},
	{name: "shutdown-timeout", def: "20s", usage: "graceful shutdown drain bound", set: func(c *Config, v string) error {
		return durationIn(&c.ShutdownTimeout, v, time.Second, 10*time.Minute)
	}},
	{name: "delivery-max-attempts", def: strconv.Itoa(dispatcher.DefaultMaxAttempts), usage: "attempts before a delivery is dead-lettered", set: func(c *Config, v string) error {
		return intIn(&c.DeliveryMaxAttempts, v, 1, 100)
	}},
	{name: "delivery-timeout", def: dispatcher.DefaultAttemptTimeout.String(), usage: "timeout of one delivery attempt", set: func(c *Config, v string) error {
		return durationIn(&c.DeliveryTimeout, v, 100*time.Millisecond, 2*time.Minute)
	}},
	{name: "endpoint-concurrency", def: strconv.Itoa(dispatcher.DefaultPerEndpointConcurrency), usage: "concurrent deliveries per org and endpoint (each org's endpoint has its own cap, queue and circuit breaker)", set: func(c *Config, v string) error {
		return intIn(&c.EndpointConcurrency, v, 1, 1000)
	}},
	{name: "host-concurrency", def: "0", usage: "concurrent deliveries per host across every org (a politeness cap for a shared host; attempts wait for a slot within --delivery-timeout); 0 disables", set: func(c *Config, v string) error {
		return intIn(&c.HostConcurrency, v, 0, 100000)
	}},
	{name: "max-pending-per-destination", def: strconv.Itoa(backlog.DefaultLimit), usage: "a destination with more pending deliveries than this is backed up; an org whose every destination is backed up gets its new events and OTPs refused (503 delivery_backlog); 0 disables", set: func(c *Config, v string) error {
		return intIn(&c.MaxPendingPerDestination, v, 0, 10_000_000)
	}},
	{name: "max-log-wait", def: backlog.DefaultMaxLogWait.String(), usage: "in a process running the dispatcher, an org whose events wait in the log before the dispatcher reads them gets a share of its new events and OTPs refused (503 delivery_backlog): none while they wait up to half of this, all once they wait this long; 0 disables", set: func(c *Config, v string) error {
		return durationIn(&c.MaxLogWait, v, 0, time.Minute)
	}},
	{name: "otp-limit-per-number", def: limitString(authcore.DefaultLimits.PerNumber), usage: "SMS OTP sends (starts and resends) to one mobile number: N/duration, e.g. 10/1h for at most 10 per fixed hour; 0 disables", set: func(c *Config, v string) error {
		return sendLimit(&c.OTPLimitPerNumber, v)
	}},
	{name: "otp-limit-per-ip", def: limitString(authcore.DefaultLimits.PerIP), usage: "SMS OTP sends requested for one client IP (the request's clientIp, else the caller's address): N/duration; 0 disables", set: func(c *Config, v string) error {
		return sendLimit(&c.OTPLimitPerIP, v)
	}},
	{name: "otp-limit-per-org", def: limitString(authcore.DefaultLimits.PerOrg), usage: "SMS OTP sends of one organization: N/duration; 0 disables", set: func(c *Config, v string) error {
		return sendLimit(&c.OTPLimitPerOrg, v)
	}},
	{name: "otp-max-in-flight", def: strconv.Itoa(DefaultOTPMaxInFlight), usage: "SMS OTP starts, resends and verifications doing their store and log work at once; more wait up to --otp-max-queue-wait, in turn by organization, then get 503 overloaded; 0 disables", set: func(c *Config, v string) error {
		return intIn(&c.OTPMaxInFlight, v, 0, 100000)
	}},
	{name: "otp-max-queue-wait", def: DefaultOTPMaxQueueWait.String(), usage: "how long an SMS OTP request waits for one of --otp-max-in-flight slots before it is refused (503 overloaded); 0 refuses at once", set: func(c *Config, v string) error {
		return durationIn(&c.OTPMaxQueueWait, v, 0, 10*time.Second)
	}},
	{name: "receipt-window", def: "60s", usage: "how long after a provider accepted an SMS its final delivery receipt may take before the OTP is sent again through the org's fallback provider (while it is valid); 0 disables this failover (undelivered and failed receipts still fail over)", set: func(c *Config, v string) error {
		if d, err := time.ParseDuration(v); v == "0" || (err == nil && d == 0) {
			c.ReceiptWindow = 0
			return nil
		}
		return durationIn(&c.ReceiptWindow, v, time.Second, time.Hour)
	}},
}

// Error is a configuration error naming the setting.
type Error struct {
	Setting string // flag name
	Source  string // flag, environment, config file
	Err     error
}

func (e *Error) Error() string {
	where := "--" + e.Setting
	switch e.Source {
	case "environment":
		where = Env(e.Setting)
	case "config file":
		where = "config file key " + strconv.Quote(e.Setting)
	}
	return fmt.Sprintf("invalid %s: %v", where, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrHelp is returned by Parse when -h/--help was asked for; usage has been
// written to the output.
var ErrHelp = flag.ErrHelp

// removed are settings of earlier versions and what replaced them: naming
// one (flag, environment or config file) fails with that, rather than
// "not defined" or, for the environment, silence.
var removed = map[string]string{
	"max-pending-per-org": "was removed: back-pressure is now per destination and on by default (--max-pending-per-destination, default 1000; see CHANGELOG.md)",
}

// checkRemoved refuses a removed setting given as a flag or in the environment.
func checkRemoved(args []string, getenv func(string) string) error {
	for name, why := range removed {
		if _, ok := lookupEnv(getenv, Env(name)); ok {
			return &Error{Setting: name, Source: "environment", Err: errors.New(why)}
		}
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if why, ok := removed[name]; ok && strings.HasPrefix(a, "-") {
			return &Error{Setting: name, Source: "flag", Err: errors.New(why)}
		}
	}
	return nil
}

// Parse reads args (after "serve"), the environment (getenv) and the YAML
// file named by --config / OTPHUB_CONFIG, and returns the validated Config.
// Usage goes to out on --help.
func Parse(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	if err := checkRemoved(args, getenv); err != nil {
		return nil, err
	}
	fs := flag.NewFlagSet("otphub serve", flag.ContinueOnError)
	fs.SetOutput(out)
	raw := map[string]*string{}
	for _, s := range settings {
		v := new(string)
		raw[s.name] = v
		if s.boolean {
			fs.Var(boolFlag{v}, s.name, s.usage+" (env "+Env(s.name)+")")
		} else {
			fs.StringVar(v, s.name, s.def, s.usage+" (env "+Env(s.name)+")")
		}
	}
	configFile := fs.String("config", "", "optional YAML file whose keys are these flag names (env OTPHUB_CONFIG)")
	fs.Usage = func() {
		fmt.Fprint(out, "Usage: otphub serve [flags]\n\nStarts the otphub server. Every flag has an OTPHUB_* environment twin and a key\nin the optional YAML config file; precedence is flag, environment, file, default.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })

	path := *configFile
	if !explicit["config"] {
		path = getenv("OTPHUB_CONFIG")
	}
	fileVals, err := readFile(path)
	if err != nil {
		return nil, err
	}

	c := &Config{}
	for _, s := range settings {
		v, source := s.def, "default"
		if fv, ok := fileVals[s.name]; ok {
			v, source = fv, "config file"
		}
		if ev, ok := lookupEnv(getenv, Env(s.name)); ok {
			v, source = ev, "environment"
		}
		if explicit[s.name] {
			v, source = *raw[s.name], "flag"
		}
		if err := s.set(c, strings.TrimSpace(v)); err != nil {
			return nil, &Error{Setting: s.name, Source: source, Err: err}
		}
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) validate() error {
	if c.PublicURL == "" {
		host, port, _ := net.SplitHostPort(c.Addr)
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "localhost"
		}
		c.PublicURL = "http://" + net.JoinHostPort(host, port)
	}
	if c.DatabaseURL != "" && len(c.EncryptionKey) == 0 {
		return &Error{Setting: "encryption-key", Source: "flag", Err: errors.New("is required with --database-url: every replica must share one key (32 bytes, base64 or hex)")}
	}
	if len(c.PreviousEncryptionKeys) > 0 && len(c.EncryptionKey) == 0 {
		return &Error{Setting: "previous-encryption-keys", Source: "flag", Err: errors.New("needs --encryption-key, the new key to rotate to")}
	}
	if len(c.NextEncryptionKey) > 0 {
		switch {
		case len(c.EncryptionKey) == 0:
			return &Error{Setting: "next-encryption-key", Source: "flag", Err: errors.New("needs --encryption-key, the key in use until the rotation")}
		case len(c.PreviousEncryptionKeys) > 0:
			return &Error{Setting: "next-encryption-key", Source: "flag", Err: errors.New("cannot start a rotation while --previous-encryption-keys are still being re-encrypted: finish that one first")}
		case bytes.Equal(c.NextEncryptionKey, c.EncryptionKey):
			return &Error{Setting: "next-encryption-key", Source: "flag", Err: errors.New("is the current --encryption-key")}
		}
	}
	for i, k := range c.PreviousEncryptionKeys {
		for _, o := range append([][]byte{c.EncryptionKey}, c.PreviousEncryptionKeys[:i]...) {
			if bytes.Equal(k, o) {
				return &Error{Setting: "previous-encryption-keys", Source: "flag", Err: fmt.Errorf("key %d is the current --encryption-key or listed twice", i+1)}
			}
		}
	}
	if (c.AdminClientID == "") != (c.AdminClientSecret == "") {
		return &Error{Setting: "admin-client-secret", Source: "flag", Err: errors.New("--admin-client-id and --admin-client-secret must be given together")}
	}
	if c.Kafka.SASLMechanism != "" && (c.Kafka.SASLUsername == "" || c.Kafka.SASLPassword == "") {
		return &Error{Setting: "kafka-sasl-username", Source: "flag", Err: errors.New("SASL needs both a username and a password")}
	}
	if (c.Kafka.TLSCertFile == "") != (c.Kafka.TLSKeyFile == "") {
		return &Error{Setting: "kafka-tls-cert-file", Source: "flag", Err: errors.New("a client certificate needs its key (--kafka-tls-key-file) and vice versa")}
	}
	return nil
}

// Usage writes the serve usage (for `otphub --help`).
func Usage(out io.Writer) {
	_, _ = Parse([]string{"-h"}, func(string) string { return "" }, out)
}

func readFile(path string) (map[string]string, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("invalid --config: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("invalid --config %s: %w", path, err)
	}
	out := map[string]string{}
	for k, v := range doc {
		if why, ok := removed[k]; ok {
			return nil, fmt.Errorf("invalid --config %s: key %q %s", path, k, why)
		}
		if !slices.ContainsFunc(settings, func(s setting) bool { return s.name == k }) {
			return nil, fmt.Errorf("invalid --config %s: unknown key %q", path, k)
		}
		switch t := v.(type) {
		case []any:
			parts := make([]string, len(t))
			for i, e := range t {
				parts[i] = fmt.Sprint(e)
			}
			out[k] = strings.Join(parts, ",")
		case nil:
			out[k] = ""
		default:
			out[k] = fmt.Sprint(t)
		}
	}
	return out, nil
}

func lookupEnv(getenv func(string) string, key string) (string, bool) {
	v := getenv(key)
	return v, v != ""
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func intIn(dst *int, v string, lo, hi int) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return fmt.Errorf("must be an integer from %d to %d, got %q", lo, hi, v)
	}
	*dst = n
	return nil
}

func durationIn(dst *time.Duration, v string, lo, hi time.Duration) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		return fmt.Errorf("must be a duration from %s to %s (e.g. 20s), got %q", lo, hi, v)
	}
	*dst = d
	return nil
}

// disabled is the authcore.Limit of a budget set to 0.
var disabled = authcore.Limit{Max: -1}

// sendLimit parses N/duration (N sends per fixed window of 1s to 168h),
// or 0 (or 0/duration) to disable the limit.
func sendLimit(dst *authcore.Limit, v string) error {
	n, w, hasWindow := strings.Cut(v, "/")
	max, err := strconv.Atoi(n)
	if err == nil && max == 0 && !hasWindow {
		*dst = disabled
		return nil
	}
	d, derr := time.ParseDuration(w)
	if err != nil || max < 0 || max > 10_000_000 || !hasWindow || derr != nil || d < time.Second || d > 168*time.Hour {
		return fmt.Errorf("must be N/duration, e.g. 10/1h for at most 10 sends per hour (N from 0 to 10000000, duration from 1s to 168h), or 0 to disable; got %q", v)
	}
	*dst = authcore.Limit{Max: max, Window: d}
	if max == 0 {
		*dst = disabled
	}
	return nil
}

// limitString is a limit as --otp-limit-* takes it: "10/1h".
func limitString(l authcore.Limit) string {
	w := l.Window.String() // "1h0m0s", "10m0s"
	if strings.HasSuffix(w, "m0s") {
		w = w[:len(w)-2]
	}
	if strings.HasSuffix(w, "h0m") {
		w = w[:len(w)-2]
	}
	return strconv.Itoa(l.Max) + "/" + w
}

func boolVal(dst *bool, v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("must be true or false, got %q", v)
	}
	*dst = b
	return nil
}

func fileVal(field func(c *Config) *string) func(c *Config, v string) error {
	return func(c *Config, v string) error {
		if v != "" {
			if _, err := os.Stat(v); err != nil {
				return fmt.Errorf("cannot read %s: %v", v, errors.Unwrap(err))
			}
		}
		*field(c) = v
		return nil
	}
}

// boolFlag is a string-backed boolean flag so that `--kafka-tls` works
// without a value and the raw text is validated like env and file values.
type boolFlag struct{ v *string }

func (b boolFlag) String() string {
	if b.v == nil {
		return ""
	}
	return *b.v
}
func (b boolFlag) Set(s string) error { *b.v = s; return nil }
func (b boolFlag) IsBoolFlag() bool   { return true }
