package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/websub/subscriber"
)

func TestGatewaySend(t *testing.T) {
	var got struct{ To, Message string }
	var auth, key string
	status := http.StatusOK
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth, key = r.Header.Get("Authorization"), r.Header.Get("X-API-Key")
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s", r.Method, r.Header.Get("Content-Type"))
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Error(err)
		}
		w.WriteHeader(status)
	}))
	defer gw.Close()
	g := &Gateway{URL: gw.URL, Token: "tok", KeyHeader: "X-API-Key", Key: "k1", Client: gw.Client()}
	h := &SmsHandler{Gateway: g, Log: slog.New(slog.DiscardHandler)}
	ev := event.SmsOtpNotificationEvent{ID: "j", SendTo: "+94771234567", MessageBody: `Code "075052" & more`}
	if err := h.OnSmsOtp(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if got.To != ev.SendTo || got.Message != ev.MessageBody || auth != "Bearer tok" || key != "k1" {
		t.Errorf("gateway got %+v auth %q key %q", got, auth, key)
	}
	for code, permanent := range map[int]bool{201: false, 400: true, 401: true, 422: true, 408: false, 429: false, 500: false, 503: false} {
		status = code
		err := g.Send(context.Background(), "+1", "m")
		switch {
		case code < 300 && err != nil:
			t.Errorf("%d: %v", code, err)
		case code >= 300 && (err == nil || subscriber.IsPermanent(err) != permanent):
			t.Errorf("%d: err %v, permanent %v", code, err, subscriber.IsPermanent(err))
		}
	}
	// Unreachable and slow gateways are retryable errors.
	dead := &Gateway{URL: "http://127.0.0.1:1/", Client: &http.Client{Timeout: time.Second}}
	if err := dead.Send(context.Background(), "+1", "m"); err == nil || subscriber.IsPermanent(err) {
		t.Errorf("unreachable: %v", err)
	}
}

func TestStdoutGateway(t *testing.T) {
	var out strings.Builder
	if err := (&StdoutGateway{W: &out}).Send(context.Background(), "+1234567", "hello"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "SMS to +1234567: hello") {
		t.Errorf("%q", out.String())
	}
}

func TestOptions(t *testing.T) {
	env := map[string]string{"SMS_HANDLER_CLIENT_ID": "c", "SMS_HANDLER_CLIENT_SECRET": "s",
		"SMS_HANDLER_ORG": "acme", "SMS_HANDLER_GATEWAY_URL": "http://gw"}
	o, err := parseOptions([]string{"-org", "other"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.org != "other" || o.clientID != "c" || o.hubURL != "http://127.0.0.1:8080/hub" || o.format != "asgardeo" {
		t.Errorf("%+v", o)
	}
	_, err = parseOptions(nil, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-client-id") || !strings.Contains(err.Error(), "-gateway-url") {
		t.Errorf("missing settings: %v", err)
	}
	err = run(context.Background(), []string{"-format", "xml"}, func(k string) string { return env[k] }, io.Discard, io.Discard, nil)
	if err == nil {
		t.Error("a bad format was accepted")
	}
}
