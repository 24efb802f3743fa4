package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/app/apptest"
)

// TestAgainstOtphub runs the example as a user would, against the whole
// otphub in-process: it subscribes, a challenge's SMS reaches the gateway,
// and cancelling it unsubscribes.
func TestAgainstOtphub(t *testing.T) {
	srv := apptest.Start(t)
	api := func(method, path, token string, in, out any, want int) {
		t.Helper()
		var body io.Reader
		if in != nil {
			b, _ := json.Marshal(in)
			body = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, srv.URL+path, body)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
		}
		if out != nil {
			_ = json.Unmarshal(raw, out)
		}
	}
	token := func(id, secret string) string {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tok struct {
			AccessToken string `json:"access_token"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&tok)
		return tok.AccessToken
	}
	admin := token(srv.AdminClientID, srv.AdminClientSecret)
	api(http.MethodPost, "/api/v1/orgs", admin, map[string]string{"name": "myorg"}, nil, http.StatusCreated)
	var sub, app struct{ ClientID, ClientSecret string }
	api(http.MethodPost, "/api/v1/orgs/myorg/clients", admin, map[string]any{"name": "sms-handler", "scopes": []string{"subscribe"}}, &sub, http.StatusCreated)
	api(http.MethodPost, "/api/v1/orgs/myorg/clients", admin, map[string]any{"name": "myapp", "scopes": []string{"otp"}}, &app, http.StatusCreated)

	sms := make(chan struct{ To, Message string }, 4)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-API-Key") != "gw-key" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var m struct{ To, Message string }
		_ = json.NewDecoder(r.Body).Decode(&m)
		sms <- m
		w.WriteHeader(http.StatusAccepted)
	}))
	defer gw.Close()

	env := map[string]string{
		"SMS_HANDLER_HUB_URL": srv.URL + "/hub", "SMS_HANDLER_CLIENT_ID": sub.ClientID,
		"SMS_HANDLER_CLIENT_SECRET": sub.ClientSecret, "SMS_HANDLER_GATEWAY_KEY": "gw-key",
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-org", "myorg", "-gateway-url", gw.URL},
			func(k string) string { return env[k] }, io.Discard, io.Discard, ready)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not subscribed within 20s")
	}

	var c struct{ ID string }
	otp := token(app.ClientID, app.ClientSecret)
	api(http.MethodPost, "/api/v1/orgs/myorg/sms-otp/challenges", otp,
		map[string]string{"mobile": "+94771234567", "userId": "alice", "application": "myapp"}, &c, http.StatusCreated)
	select {
	case m := <-sms:
		if m.To != "+94771234567" || !strings.HasPrefix(m.Message, "Your one-time password for the myapp is ") {
			t.Errorf("gateway got %+v", m)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no SMS at the gateway within 20s")
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	// The hub ends the subscription once the handler has confirmed the
	// unsubscription; poll for it.
	subToken := token(sub.ClientID, sub.ClientSecret)
	for deadline := time.Now().Add(10 * time.Second); ; {
		var subs struct{ Subscriptions []any }
		api(http.MethodGet, "/api/v1/orgs/myorg/subscriptions", subToken, nil, &subs, http.StatusOK)
		if len(subs.Subscriptions) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still subscribed after exit: %v", subs.Subscriptions)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
