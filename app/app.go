// Package app wires otphub's components from a config.Config into one
// in-process service: the store, the log, the egress client, the token
// issuer, the auth core, the WebSub hub, the SMS providers and the delivery
// engine, behind one HTTP server. cmd/otphub runs it; tests start the
// whole service in-process with it.
package app

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/otphub/otphub/applications"
	"github.com/otphub/otphub/audit"
	"github.com/otphub/otphub/authcore"
	"github.com/otphub/otphub/bus"
	"github.com/otphub/otphub/bus/embedded"
	"github.com/otphub/otphub/bus/kafka"
	"github.com/otphub/otphub/config"
	"github.com/otphub/otphub/console"
	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/dispatcher"
	"github.com/otphub/otphub/dispatcher/backlog"
	"github.com/otphub/otphub/dispatcher/deliveries"
	"github.com/otphub/otphub/egress"
	"github.com/otphub/otphub/internal/admit"
	"github.com/otphub/otphub/internal/httpx"
	"github.com/otphub/otphub/login"
	"github.com/otphub/otphub/oauth"
	"github.com/otphub/otphub/receipts"
	"github.com/otphub/otphub/smspolicy"
	"github.com/otphub/otphub/smsprovider"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/postgres"
	"github.com/otphub/otphub/store/sqlite"
	"github.com/otphub/otphub/tenants"
	"github.com/otphub/otphub/websub"
	"github.com/otphub/otphub/websub/keyservice"
)

// Options are what the process gives the app besides its configuration.
type Options struct {
	Stdout  io.Writer // the console SMS provider and the first-start admin credentials go here
	Stderr  io.Writer // JSON logs go here
	Version string
	// Registry, if set, receives the metrics (tests); default a new one.
	Registry *prometheus.Registry
	// BacklogInterval, if set, is how often the publish back-pressure gate
	// rereads the pending counts (tests); default
	// backlog.DefaultInterval.
	BacklogInterval time.Duration
}

// eventLog is what the app needs of a log adapter.
type eventLog interface {
	bus.Publisher
	bus.Subscriber
	bus.Pinger
}

// App is one otphub process.
type App struct {
	cfg     *config.Config
	log     *slog.Logger
	reg     *prometheus.Registry
	store   store.Store
	bus     eventLog
	handler http.Handler
	routes  []string
	runners []func(context.Context) error
	mu      sync.Mutex // guards closers
	closers []func() error

	// AdminClientID and AdminClientSecret are set when this start created
	// the platform admin client (first embedded start); tests read them.
	AdminClientID, AdminClientSecret string
	// ConsoleSetupLink is the first platform admin's setup link when this
	// start printed one; tests read it.
	ConsoleSetupLink string
}

// New builds the app from cfg, in phases: the state (keys, store, log),
// the components, then the routes and background runners. Resources
// opened before an error are closed.
func New(ctx context.Context, cfg *config.Config, opts Options) (_ *App, err error) {
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	a := &App{cfg: cfg, reg: opts.Registry, log: newLogger(opts.Stderr, cfg.LogLevel)}
	defer func() {
		if err != nil {
			_ = a.Close()
		}
	}()
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	key, err := a.openState(ctx)
	if err != nil {
		return nil, err
	}
	c, err := a.build(ctx, key, opts)
	if err != nil {
		return nil, err
	}
	if err := a.route(ctx, c, opts); err != nil {
		return nil, err
	}
	return a, nil
}

// components are the parts of one process, built by build.
type components struct {
	egress      *egress.Client
	issuer      *oauth.Issuer
	tenants     *tenants.API
	backlog     *backlog.Gate
	resealer    *store.Resealer
	core        *authcore.Service
	apps        *applications.API
	payloadKeys *keyservice.Service
	receipts    *receipts.Service
	login       *login.Service
	hub         *websub.Hub
	providers   *smsprovider.Service
	deliveries  *deliveries.API
	engine      *dispatcher.Engine // nil unless this process has the dispatcher role
	smsPolicy   *smspolicy.Guard   // every SMS's number policy and budgets
}

// openState opens the encryption key, the store and the log, the state
// every component works on. It returns the master key.
func (a *App) openState(ctx context.Context) ([]byte, error) {
	key := a.cfg.EncryptionKey
	if len(key) == 0 {
		var err error
		if key, err = store.LoadOrCreateKey(a.cfg.DataDir); err != nil {
			return nil, fmt.Errorf("encryption key: %w", err)
		}
	}
	if err := a.openStore(ctx, key); err != nil {
		return nil, err
	}
	if err := a.openLog(ctx); err != nil {
		return nil, err
	}
	return key, nil
}

// build builds the components: access (egress, token issuer, platform
// admin, tenants), the auth core, then the delivery side.
func (a *App) build(ctx context.Context, key []byte, opts Options) (*components, error) {
	cfg := a.cfg
	c := &components{}
	var err error
	if c.egress, err = egress.New(egress.Config{AllowCIDRs: cfg.EgressAllowCIDRs, Timeout: cfg.DeliveryTimeout}, a.reg); err != nil {
		return nil, fmt.Errorf("egress client: %w", err)
	}
	a.closers = append(a.closers, func() error { c.egress.CloseIdleConnections(); return nil })
	if c.issuer, err = oauth.New(oauth.Config{Issuer: cfg.PublicURL, Audience: cfg.PublicURL, TrustProxyHeaders: cfg.TrustProxyHeaders}, a.store, a.log, a.reg); err != nil {
		return nil, fmt.Errorf("token issuer: %w", err)
	}
	if err := a.ensureAdmin(ctx, c.issuer, opts.Stdout); err != nil {
		return nil, err
	}
	if c.tenants, err = tenants.New(tenants.Config{OnClientDeleted: c.issuer.ForgetClient}, a.store, a.log); err != nil {
		return nil, fmt.Errorf("tenants: %w", err)
	}
	if c.backlog, err = backlog.New(backlog.Config{Limit: int64(cfg.MaxPendingPerDestination), Interval: opts.BacklogInterval, MaxLogWait: cfg.MaxLogWait}, a.store, a.log, a.reg); err != nil {
		return nil, fmt.Errorf("delivery backlog gate: %w", err)
	}
	if err := a.buildCore(ctx, c, key); err != nil {
		return nil, err
	}
	if err := a.buildDelivery(c, opts); err != nil {
		return nil, err
	}
	return c, nil
}

// buildCore builds the auth core with its OTP HMAC key, and the resealer
// of sealed values.
func (a *App) buildCore(ctx context.Context, c *components, key []byte) error {
	cfg := a.cfg
	hmacKey, err := a.store.DataKey(ctx, "otp-hmac", func() ([]byte, error) {
		if len(cfg.PreviousEncryptionKeys) > 0 {
			// Versions before data keys derived it from the encryption key
			// in use; during a rotation that is not --encryption-key.
			return nil, errors.New("it is not stored yet (first start of this version) and a key rotation is under way: " +
				"start once with the key in use until now as --encryption-key and without --previous-encryption-keys, then rotate")
		}
		return deriveKey(key, "otphub otp hmac v1"), nil
	})
	if err != nil {
		return fmt.Errorf("OTP HMAC key: %w", err)
	}
	if c.resealer, err = store.NewResealer(a.store, len(cfg.PreviousEncryptionKeys) > 0, 0, a.log.With("component", "reseal"), a.reg); err != nil {
		return fmt.Errorf("resealer: %w", err)
	}
	// The server-wide SMS budgets are every org's ceilings, for challenges
	// (authcore) and for every other SMS a provider sends (the policy).
	limits := authcore.Limits{PerNumber: cfg.OTPLimitPerNumber, PerIP: cfg.OTPLimitPerIP, PerOrg: cfg.OTPLimitPerOrg}
	c.smsPolicy = smspolicy.NewGuard(a.store, limits, nil)
	// Receipts authenticate callbacks with the providers' secrets, and the
	// providers send with receipts' callback URLs: the credentials are
	// looked up through c.providers, built in buildDelivery.
	receiptWindow := cfg.ReceiptWindow
	if receiptWindow == 0 {
		receiptWindow = -1 // --receipt-window=0: no failover for silence
	}
	if c.receipts, err = receipts.New(receipts.Config{PublicURL: cfg.PublicURL, Window: receiptWindow}, a.store,
		receipts.CredentialFunc(func(ctx context.Context, orgID int64, slot string) (receipts.Credentials, error) {
			return c.providers.ReceiptCredentials(ctx, orgID, slot)
		}), a.log, a.reg); err != nil {
		return fmt.Errorf("delivery receipts: %w", err)
	}
	var admission authcore.Admission
	if cfg.OTPMaxInFlight > 0 {
		g, err := admit.New(cfg.OTPMaxInFlight, cfg.OTPMaxQueueWait)
		if err != nil {
			return fmt.Errorf("auth core: %w", err)
		}
		admission = g
	}
	c.core, err = authcore.New(authcore.Config{
		PublicURL:         cfg.PublicURL,
		Admission:         admission,
		Backlog:           c.backlog,
		HMACKey:           hmacKey,
		TrustProxyHeaders: cfg.TrustProxyHeaders,
		OnVerified:        c.receipts.Verified,
		Limits:            limits,
	}, a.store, a.bus, a.log, a.reg)
	if err != nil {
		return fmt.Errorf("auth core: %w", err)
	}
	if c.apps, err = applications.New(a.store, a.log); err != nil {
		return fmt.Errorf("applications: %w", err)
	}
	if c.login, err = login.New(login.Config{PublicURL: cfg.PublicURL, TrustProxyHeaders: cfg.TrustProxyHeaders}, a.store, c.core, c.issuer, a.log, a.reg); err != nil {
		return fmt.Errorf("login step: %w", err)
	}
	return nil
}

// buildDelivery builds the delivery side: the hub and the SMS providers
// (the two resolvers), the deliveries API, and the engine when this
// process has the dispatcher role.
func (a *App) buildDelivery(c *components, opts Options) error {
	cfg := a.cfg
	var err error
	// The key service tells the hub when an org's payload key changes.
	c.payloadKeys = keyservice.New(a.store, func(org string) { c.hub.Forget(org) }, a.log)
	if c.hub, err = websub.New(websub.Config{PublicURL: cfg.PublicURL, Backlog: c.backlog, PayloadKeys: c.payloadKeys}, a.store, a.bus, c.egress, c.issuer, a.log, a.reg); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	c.providers, err = smsprovider.New(smsprovider.Config{
		AllowConsole: cfg.AllowConsoleProvider,
		// Plain http:// gateways only where the operator opened the egress
		// guard (local gateways, tests); the public internet needs https.
		AllowHTTP: len(cfg.EgressAllowCIDRs) > 0,
		Stdout:    opts.Stdout,
		Receipts:  c.receipts,
		Policy:    c.smsPolicy,
	}, a.store, c.egress.HTTP(), c.egress, a.log, a.reg)
	if err != nil {
		return fmt.Errorf("sms providers: %w", err)
	}
	resolvers := []delivery.Resolver{c.hub.Resolver(), c.providers.Resolver()}
	// The gate sees an org's destinations as the router resolves them.
	c.backlog.UseResolvers(c.hub.Resolver(), c.providers.Resolver())
	if c.deliveries, err = deliveries.New(deliveries.Config{Policy: c.smsPolicy}, a.store, a.log); err != nil {
		return fmt.Errorf("deliveries API: %w", err)
	}
	if cfg.Has(config.RoleDispatcher) {
		c.engine, err = dispatcher.New(dispatcher.Config{
			RetryPolicy:            dispatcher.RetryPolicy{MaxAttempts: cfg.DeliveryMaxAttempts},
			AttemptTimeout:         cfg.DeliveryTimeout,
			PerEndpointConcurrency: cfg.EndpointConcurrency,
			PerHostConcurrency:     cfg.HostConcurrency,
		}, a.bus, a.bus, a.store, resolvers, a.log, a.reg)
		if err != nil {
			return fmt.Errorf("dispatcher: %w", err)
		}
		// Publishing in this process sees the engine's saturated
		// endpoints at once (the store's counts lag by their interval).
		c.backlog.UseLocal(c.engine)
	}
	return nil
}

// route registers the routes of this process's roles and its background
// runners, and builds the console in front of them.
func (a *App) route(ctx context.Context, c *components, opts Options) error {
	cfg := a.cfg
	auditLog := audit.New(audit.Config{TrustProxyHeaders: cfg.TrustProxyHeaders}, a.store, c.issuer, a.log)
	mux := &routeRecorder{ServeMux: http.NewServeMux()}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpx.JSON(w, http.StatusOK, map[string]string{"status": "ok", "version": opts.Version})
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	a.runners = append(a.runners, c.resealer.Run, c.issuer.Run)
	api := cfg.Has(config.RoleAuthcore) || cfg.Has(config.RoleHub)
	if api {
		c.issuer.Register(mux, c.issuer)
		c.tenants.Register(mux, c.issuer)
		c.core.Register(mux, c.issuer)
		c.apps.Register(mux, c.issuer)
		c.login.Register(mux, c.issuer)
		c.providers.Register(mux, c.issuer)
		c.hub.Register(mux, c.issuer)
		c.payloadKeys.Register(mux, c.issuer)
		c.deliveries.Register(mux, c.issuer)
		c.receipts.Register(mux)
		auditLog.Register(mux, c.issuer)
		a.runners = append(a.runners, c.backlog.Run)
	}
	if cfg.Has(config.RoleHub) {
		a.runners = append(a.runners, c.hub.Run)
	}
	if c.engine != nil {
		// The failover sweep runs with the engine, whose retry loop sends
		// the fallback tasks it creates.
		a.runners = append(a.runners, c.engine.Run, func(ctx context.Context) error { c.receipts.Run(ctx); return nil })
	}
	// Every state-changing API request, from the network or from the
	// console in process, passes the audit log on its way to the mux.
	handler := auditLog.Middleware(mux.ServeMux)
	if api {
		con, err := console.New(ctx, console.Config{PublicURL: cfg.PublicURL},
			a.store, handler, auditLog, a.log)
		if err != nil {
			return fmt.Errorf("console: %w", err)
		}
		if cfg.ConsoleSignInOrg != "" {
			step := console.NewSMSStep(con, cfg.ConsoleSignInOrg)
			created, err := step.Provision(ctx, cfg.AllowConsoleProvider)
			if err != nil {
				return err
			}
			if created {
				a.log.Info("created the console sign-in org", "org", cfg.ConsoleSignInOrg, "consoleProvider", cfg.AllowConsoleProvider)
			}
			con.UseSecondFactor(step)
		}
		// Its pages are not on the route recorder: they are not API
		// operations (docs/openapi.yaml); its API route is.
		con.Register(mux.ServeMux)
		con.RegisterAPI(mux, c.issuer)
		if err := a.printSetupLink(ctx, con, opts.Stdout); err != nil {
			return err
		}
	}
	a.routes = mux.patterns
	a.handler = httpx.RefuseAmbiguousFraming(instrument(mux.ServeMux, handler, a.log, newHTTPMetrics(a.reg)))
	return nil
}

func (a *App) openStore(ctx context.Context, key []byte) error {
	opts := store.Options{EncryptionKey: key, PreviousEncryptionKeys: a.cfg.PreviousEncryptionKeys, NextEncryptionKey: a.cfg.NextEncryptionKey}
	if a.cfg.Embedded() {
		st, err := sqlite.Open(ctx, a.cfg.DataDir, opts)
		if err != nil {
			return fmt.Errorf("embedded store in %s: %w", a.cfg.DataDir, err)
		}
		a.store = cacheReads(st)
	} else {
		st, err := postgres.Open(ctx, a.cfg.DatabaseURL, opts)
		if err != nil {
			return fmt.Errorf("postgresql store: %w", err)
		}
		a.store = cacheReads(st)
	}
	a.closers = append(a.closers, a.store.Close)
	return nil
}

// settingsTTL is how long a replica serves an org's OTP settings and
// message templates from memory: another replica's change to them takes
// effect here within it (this replica's own changes at once).
const settingsTTL = time.Second

// cacheReads keeps the reads every request or OTP makes (its org, the
// org's settings and templates) off the database.
func cacheReads(st store.Store) store.Store {
	return store.CacheSettings(store.CacheOrgs(st), settingsTTL)
}

func (a *App) openLog(ctx context.Context) error {
	if len(a.cfg.KafkaBrokers) == 0 {
		l, err := embedded.Open(filepath.Join(a.cfg.DataDir, "log"), embedded.Config{
			Logger:    a.log.With("component", "log"),
			Retention: a.cfg.LogRetention,
			// A segment is sealed (and so deletable) when its first
			// record is a 24th of the retention old, appends or not: no
			// committed event outlives the retention by more than that
			// plus one retention interval (5 min).
			SegmentMaxAge: a.cfg.LogRetention / 24,
		})
		if err != nil {
			return fmt.Errorf("embedded log: %w", err)
		}
		a.bus = l
	} else {
		k := a.cfg.Kafka
		b, err := kafka.New(ctx, kafka.Config{
			Brokers:           a.cfg.KafkaBrokers,
			ClientID:          k.ClientID,
			Logger:            a.log.With("component", "log"),
			Partitions:        k.Partitions,
			ReplicationFactor: k.ReplicationFactor,
			Retention:         a.cfg.LogRetention,
			SessionTimeout:    k.SessionTimeout,
			// A third of the session at most, as Kafka recommends, so that
			// two lost heartbeats do not cost a live consumer its partitions.
			HeartbeatInterval: min(3*time.Second, k.SessionTimeout/3),
			TLS:               kafka.TLSConfig{Enabled: k.TLS, CAFile: k.TLSCAFile, CertFile: k.TLSCertFile, KeyFile: k.TLSKeyFile},
			SASL:              kafka.SASLConfig{Mechanism: k.SASLMechanism, Username: k.SASLUsername, Password: k.SASLPassword},
		})
		if err != nil {
			return fmt.Errorf("kafka: %w", err)
		}
		a.bus = b
	}
	a.closers = append(a.closers, a.bus.Close)
	return nil
}

// ensureAdmin creates the platform admin client from the configuration, or
// on a first embedded start generates one and prints its credentials once
// (to stdout, never to the logs).
func (a *App) ensureAdmin(ctx context.Context, issuer *oauth.Issuer, stdout io.Writer) error {
	if a.cfg.AdminClientID == "" && !a.cfg.Embedded() {
		return nil
	}
	id, secret, err := issuer.EnsurePlatformAdmin(ctx, a.cfg.AdminClientID, a.cfg.AdminClientSecret)
	if err != nil {
		return fmt.Errorf("platform admin client: %w", err)
	}
	if secret != "" && a.cfg.AdminClientSecret == "" {
		a.AdminClientID, a.AdminClientSecret = id, secret
		fmt.Fprintf(stdout, "\n=== otphub: platform admin client created (shown once; store it now) ===\n"+
			"OTPHUB_ADMIN_CLIENT_ID=%s\nOTPHUB_ADMIN_CLIENT_SECRET=%s\n"+
			"=========================================================================\n\n", id, secret)
	}
	return nil
}

// printSetupLink prints, while the console has no platform admin, a
// one-time link that creates the first one (to stdout, never to the logs).
func (a *App) printSetupLink(ctx context.Context, con *console.Console, stdout io.Writer) error {
	link, err := con.SetupLink(ctx)
	if err != nil {
		return fmt.Errorf("console setup link: %w", err)
	}
	if link != "" {
		a.ConsoleSetupLink = link
		fmt.Fprintf(stdout, "\n=== otphub: create the console's first platform admin (link works once, for 72 h) ===\n"+
			"%s\n"+
			"=========================================================================\n\n", link)
	}
	return nil
}

func (a *App) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{}
	status := http.StatusOK
	for name, ping := range map[string]func(context.Context) error{"store": a.store.Ping, "log": a.bus.Ping} {
		if err := ping(ctx); err != nil {
			checks[name] = "unavailable: " + err.Error()
			status = http.StatusServiceUnavailable
		} else {
			checks[name] = "ok"
		}
	}
	httpx.JSON(w, status, map[string]any{"ready": status == http.StatusOK, "checks": checks})
}

// Routes lists the patterns of every route served ("METHOD /path/{var}").
func (a *App) Routes() []string { return slices.Clone(a.routes) }

// Handler is the app's HTTP handler (tests may serve it themselves).
func (a *App) Handler() http.Handler { return a.handler }

// Serve runs the background workers and serves HTTP on ln until ctx is
// done, then shuts down gracefully: stops accepting, drains in-flight
// requests and deliveries within the shutdown timeout, and closes the store
// and log. It returns the first error that stopped it, or nil.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	defer a.Close()
	// inflight counts requests being handled, so that shutdown can tell
	// them from connections that never sent one (see below).
	var inflight atomic.Int64
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			inflight.Add(1)
			defer inflight.Add(-1)
			a.handler.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	g, gctx := errgroup.WithContext(workCtx)
	for _, run := range a.runners {
		g.Go(func() error {
			if err := run(gctx); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		})
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(httpx.FramingListener(ln, maxHeaderBytes)) }()
	a.log.Info("otphub serving", "addr", ln.Addr().String(), "public_url", a.cfg.PublicURL,
		"roles", a.cfg.Roles, "store", map[bool]string{true: "sqlite", false: "postgres"}[a.cfg.Embedded()],
		"log", map[bool]string{true: "embedded", false: "kafka"}[len(a.cfg.KafkaBrokers) == 0])

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	case <-gctx.Done():
	}
	a.log.Info("otphub shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if serr := srv.Shutdown(shutCtx); serr != nil {
		// net/http waits up to 5 s for a connection that was opened but has
		// not sent a request yet (a client that dialed and then gave up
		// keeps such a connection in its idle pool). Only requests that were
		// still being handled make the shutdown unclean.
		n := inflight.Load()
		_ = srv.Close()
		if n > 0 && err == nil {
			err = fmt.Errorf("http shutdown: %d requests still in flight after %v: %w", n, a.cfg.ShutdownTimeout, serr)
		}
	}
	stopWork()
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case werr := <-done:
		if werr != nil && err == nil {
			err = werr
		}
	case <-shutCtx.Done():
		a.log.Warn("background workers did not stop within the shutdown timeout")
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// ListenAndServe listens on the configured address and serves.
func (a *App) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		_ = a.Close()
		return fmt.Errorf("listen on %s: %w", a.cfg.Addr, err)
	}
	return a.Serve(ctx, ln)
}

// Close releases the store, log and clients, in reverse order of opening.
// It is safe to call more than once.
func (a *App) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	a.closers = nil
	return errors.Join(errs...)
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// deriveKey derives a purpose-bound key from the master key, so the OTP
// HMAC key is never the encryption key itself.
func deriveKey(master []byte, purpose string) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}
