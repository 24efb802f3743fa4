// Command sms-handler is a complete custom SMS handler for otphub: it
// subscribes to an organization's SMS OTP notifications with the Go SDK
// (websub/subscriber) and sends each message through an HTTP SMS gateway
// of your choice. It is the Go twin of the Ballerina sample in Asgardeo's
// "Add MFA with SMS OTP" guide: the business logic lives in onSmsOtp.
//
// Every flag has an environment twin (SMS_HANDLER_*); see README.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/websub/subscriber"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "sms-handler:", err)
		os.Exit(1)
	}
}

// options are the handler's settings.
type options struct {
	addr, callbackURL            string
	hubURL, tokenURL             string
	clientID, clientSecret, org  string
	secret, format               string
	leaseSeconds                 int
	gatewayURL, gatewayToken     string
	gatewayKeyHeader, gatewayKey string
	gatewayTimeout               time.Duration
}

func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("sms-handler", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := getenv("SMS_HANDLER_" + name); v != "" {
			return v
		}
		return def
	}
	o := &options{}
	fs.StringVar(&o.addr, "addr", env("ADDR", "127.0.0.1:8090"), "listen address (SMS_HANDLER_ADDR)")
	fs.StringVar(&o.callbackURL, "callback-url", env("CALLBACK_URL", ""), "public URL the hub reaches this handler at; default http://<addr>/ (SMS_HANDLER_CALLBACK_URL)")
	fs.StringVar(&o.hubURL, "hub-url", env("HUB_URL", "http://127.0.0.1:8080/hub"), "otphub's hub URL (SMS_HANDLER_HUB_URL)")
	fs.StringVar(&o.tokenURL, "token-url", env("TOKEN_URL", ""), "OAuth token endpoint; default <hub base>/oauth2/token (SMS_HANDLER_TOKEN_URL)")
	fs.StringVar(&o.clientID, "client-id", env("CLIENT_ID", ""), "OAuth client ID with the subscribe scope (SMS_HANDLER_CLIENT_ID)")
	fs.StringVar(&o.clientSecret, "client-secret", env("CLIENT_SECRET", ""), "OAuth client secret (SMS_HANDLER_CLIENT_SECRET)")
	fs.StringVar(&o.org, "org", env("ORG", ""), "organization name (SMS_HANDLER_ORG)")
	fs.StringVar(&o.secret, "secret", env("SECRET", ""), "hub.secret; generated when empty (SMS_HANDLER_SECRET)")
	fs.StringVar(&o.format, "format", env("FORMAT", "asgardeo"), "body format: asgardeo, set, set-jwt or cloudevents (SMS_HANDLER_FORMAT)")
	fs.IntVar(&o.leaseSeconds, "lease-seconds", 0, "lease to ask for; 0 = the hub's default")
	fs.StringVar(&o.gatewayURL, "gateway-url", env("GATEWAY_URL", ""), `SMS gateway URL; receives POST {"to": "+…", "message": "…"}; "stdout" prints each SMS instead (development) (SMS_HANDLER_GATEWAY_URL)`)
	fs.StringVar(&o.gatewayToken, "gateway-token", env("GATEWAY_TOKEN", ""), "bearer token for the gateway, optional (SMS_HANDLER_GATEWAY_TOKEN)")
	fs.StringVar(&o.gatewayKeyHeader, "gateway-key-header", env("GATEWAY_KEY_HEADER", "X-API-Key"), "header carrying the gateway API key (SMS_HANDLER_GATEWAY_KEY_HEADER)")
	fs.StringVar(&o.gatewayKey, "gateway-key", env("GATEWAY_KEY", ""), "gateway API key, optional (SMS_HANDLER_GATEWAY_KEY)")
	fs.DurationVar(&o.gatewayTimeout, "gateway-timeout", 10*time.Second, "timeout of one gateway request")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var missing []string
	for name, v := range map[string]string{"-client-id": o.clientID, "-client-secret": o.clientSecret, "-org": o.org, "-gateway-url": o.gatewayURL} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	return o, nil
}

// run starts the handler and blocks until ctx is done, then unsubscribes.
// ready, if set, receives the listening address once subscribed (tests).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, ready chan<- string) error {
	o, err := parseOptions(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	format, err := event.ParseFormat(o.format)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	if o.callbackURL == "" {
		o.callbackURL = "http://" + ln.Addr().String() + "/"
	}
	var sender Sender = &Gateway{URL: o.gatewayURL, Token: o.gatewayToken, KeyHeader: o.gatewayKeyHeader, Key: o.gatewayKey,
		Client: &http.Client{Timeout: o.gatewayTimeout}}
	if o.gatewayURL == "stdout" {
		sender = &StdoutGateway{W: stdout}
	}
	handler := &SmsHandler{Gateway: sender, Log: log}

	l, err := subscriber.New(subscriber.Config{
		HubURL: o.hubURL, TokenURL: o.tokenURL, ClientID: o.clientID, ClientSecret: o.clientSecret,
		Org: o.org, CallbackURL: o.callbackURL, Secret: o.secret, LeaseSeconds: o.leaseSeconds,
		Format: format, Logger: log,
	}, handler)
	if err != nil {
		_ = ln.Close()
		return err
	}
	srv := &http.Server{Handler: l, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	if err := l.Start(ctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("subscribing: %w", err)
	}
	log.Info("subscribed", "topic", l.Topic(), "callback", o.callbackURL)
	if ready != nil {
		ready <- ln.Addr().String()
	}

	select {
	case <-ctx.Done():
	case err := <-served:
		return err
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := l.Shutdown(shutdown); err != nil {
		log.Error("unsubscribing failed", "err", err)
	}
	return srv.Shutdown(shutdown)
}

// Sender sends one SMS.
type Sender interface {
	Send(ctx context.Context, to, message string) error
}

// SmsHandler is the business logic: send the OTP message to the number.
type SmsHandler struct {
	Gateway Sender
	Log     *slog.Logger
}

// OnSmsOtp sends ev's message through the gateway. A gateway failure is
// returned, so the hub retries; a refusal (4xx) is permanent.
func (h *SmsHandler) OnSmsOtp(ctx context.Context, ev event.SmsOtpNotificationEvent) error {
	// Never log the message body: it holds the OTP.
	h.Log.Info("SMS OTP notification", "jti", ev.ID, "org", ev.OrganizationName)
	if err := h.Gateway.Send(ctx, ev.SendTo, ev.MessageBody); err != nil {
		return err
	}
	h.Log.Info("SMS sent", "jti", ev.ID)
	return nil
}

// StdoutGateway prints each SMS to W instead of sending it: for trying the
// example without a gateway account (-gateway-url stdout). Development only:
// the message holds the OTP.
type StdoutGateway struct{ W io.Writer }

// Send prints the SMS.
func (g *StdoutGateway) Send(_ context.Context, to, message string) error {
	_, err := fmt.Fprintf(g.W, "=== sms-handler (development gateway) SMS to %s: %s\n", to, message)
	return err
}

// Gateway is an HTTP SMS gateway taking POST {"to": "…", "message": "…"}
// (JSON), authenticated by an optional bearer token and/or API key header.
// Any 2xx is success.
type Gateway struct {
	URL       string
	Token     string // Authorization: Bearer <Token>, if set
	KeyHeader string // e.g. X-API-Key
	Key       string // the API key, if set
	Client    *http.Client
}

// Send sends one SMS. A 4xx answer (other than 408 and 429) is returned as
// a subscriber.Permanent error.
func (g *Gateway) Send(ctx context.Context, to, message string) error {
	body, err := json.Marshal(struct {
		To      string `json:"to"`
		Message string `json:"message"`
	}{to, message})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.URL, bytes.NewReader(body))
	if err != nil {
		return subscriber.Permanent(fmt.Errorf("gateway URL: %w", err))
	}
	req.Header.Set("Content-Type", "application/json")
	if g.Token != "" {
		req.Header.Set("Authorization", "Bearer "+g.Token)
	}
	if g.Key != "" && g.KeyHeader != "" {
		req.Header.Set(g.KeyHeader, g.Key)
	}
	resp, err := g.Client.Do(req)
	if err != nil {
		var ue interface{ Timeout() bool }
		if errors.As(err, &ue) && ue.Timeout() {
			return fmt.Errorf("gateway timed out")
		}
		return fmt.Errorf("gateway unreachable: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch code := resp.StatusCode; {
	case code >= 200 && code <= 299:
		return nil
	case code >= 400 && code <= 499 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests:
		return subscriber.Permanent(fmt.Errorf("gateway refused the SMS: HTTP %d", code))
	default:
		return fmt.Errorf("gateway answered HTTP %d", code)
	}
}
