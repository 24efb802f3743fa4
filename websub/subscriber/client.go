package subscriber

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Hub modes.
const (
	modeSubscribe   = "subscribe"
	modeUnsubscribe = "unsubscribe"
	modeDenied      = "denied"
)

// ErrDenied is returned by Start (or logged by a renewal) when the hub
// denied the subscription (hub.mode=denied).
var ErrDenied = errors.New("subscriber: the hub denied the subscription")

// HubError is a hub's or token endpoint's refusal of a request.
type HubError struct {
	Op         string // "token", "subscribe" or "unsubscribe"
	StatusCode int
	Code       string // the JSON error code, if any
	Message    string
}

func (e *HubError) Error() string {
	return fmt.Sprintf("subscriber: %s: HTTP %d %s: %s", e.Op, e.StatusCode, e.Code, e.Message)
}

// intent is a subscribe or unsubscribe request awaiting the hub's
// verification of intent.
type intent struct {
	mode string
	done chan verdict // buffered: the first verdict is kept
}

type verdict struct {
	lease  int    // hub.lease_seconds of a verified subscribe
	denied bool   // the hub sent hub.mode=denied
	reason string // its hub.reason
}

// Start subscribes: it obtains a token, sends the subscribe request and
// waits until the hub has verified intent (ServeHTTP must already be
// reachable at CallbackURL), then starts renewing the lease in the
// background until Shutdown. ctx bounds this first subscription only.
func (l *Listener) Start(ctx context.Context) error {
	l.mu.Lock()
	if l.started {
		l.mu.Unlock()
		return errors.New("subscriber: already started")
	}
	l.started = true
	l.mu.Unlock()

	lease, err := l.subscribe(ctx)
	if err != nil {
		l.mu.Lock()
		l.started = false
		l.mu.Unlock()
		return err
	}
	loopCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	l.mu.Lock()
	l.stop, l.loopDone = stop, done
	l.mu.Unlock()
	go func() {
		defer close(done)
		l.renewLoop(loopCtx, lease)
	}()
	return nil
}

// Shutdown stops the renewal loop and unsubscribes, waiting for the hub's
// verification within ctx. The Listener keeps serving: deliveries already
// on their way are still handled.
func (l *Listener) Shutdown(ctx context.Context) error {
	l.mu.Lock()
	stop, done := l.stop, l.loopDone
	started := l.started
	l.stop, l.loopDone, l.started = nil, nil, false
	l.mu.Unlock()
	if !started {
		return nil
	}
	if stop != nil {
		stop()
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return l.request(ctx, modeUnsubscribe, nil)
}

// renewLoop re-subscribes at renewAfter(lease) after each verification;
// a failed renewal is retried with backoff (5 s doubling to 5 min).
func (l *Listener) renewLoop(ctx context.Context, lease int) {
	delay := l.renewAfter(time.Duration(lease) * time.Second)
	backoff := l.retryBackoff
	for {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		granted, err := l.subscribe(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			l.log.Error("renewing the subscription failed; retrying", "topic", l.topic, "err", err, "retry_in", backoff)
			delay = backoff
			backoff = min(backoff*2, 5*time.Minute)
			continue
		}
		l.log.Info("subscription renewed", "topic", l.topic, "lease_seconds", granted)
		delay = l.renewAfter(time.Duration(granted) * time.Second)
		backoff = l.retryBackoff
	}
}

// subscribe sends a subscribe request and returns the granted lease.
func (l *Listener) subscribe(ctx context.Context) (int, error) {
	var lease int
	err := l.request(ctx, modeSubscribe, &lease)
	return lease, err
}

// request sends a subscribe or unsubscribe request and waits for the
// hub's verification of it (or its denial).
func (l *Listener) request(ctx context.Context, mode string, lease *int) error {
	tok, err := l.tokens.token(ctx)
	if err != nil {
		return err
	}
	in := &intent{mode: mode, done: make(chan verdict, 1)}
	l.mu.Lock()
	l.pending[mode] = in // before the request: the verification may overtake its answer
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		if l.pending[mode] == in {
			delete(l.pending, mode)
		}
		l.mu.Unlock()
	}()

	form := url.Values{}
	form.Set("hub.mode", mode)
	form.Set("hub.topic", l.topic)
	form.Set("hub.callback", l.cfg.CallbackURL)
	if mode == modeSubscribe {
		form.Set("hub.secret", l.cfg.Secret)
		if l.cfg.LeaseSeconds > 0 {
			form.Set("hub.lease_seconds", strconv.Itoa(l.cfg.LeaseSeconds))
		}
		form.Set("otphub.format", string(l.cfg.Format))
		if l.cfg.SignatureAlg != "" {
			form.Set("otphub.signature_alg", l.cfg.SignatureAlg)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.cfg.HubURL, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("subscriber: %s: %w", mode, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := l.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("subscriber: %s: %w", mode, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if resp.StatusCode == http.StatusUnauthorized {
			l.tokens.forget()
		}
		return hubError(mode, resp)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))

	wait, cancel := context.WithTimeout(ctx, l.cfg.VerifyTimeout)
	defer cancel()
	select {
	case v := <-in.done:
		if v.denied {
			return fmt.Errorf("%w: %q", ErrDenied, v.reason)
		}
		if lease != nil {
			*lease = v.lease
		}
		return nil
	case <-wait.Done():
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("subscriber: %s: the hub accepted the request but did not verify it within %s", mode, l.cfg.VerifyTimeout)
	}
}

func hubError(op string, resp *http.Response) error {
	e := &HubError{Op: op, StatusCode: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 8<<10))
	var j struct {
		Error            string `json:"error"`
		Message          string `json:"message"`
		ErrorDescription string `json:"error_description"`
	}
	if json.Unmarshal(body, &j) == nil {
		e.Code, e.Message = j.Error, j.Message
		if e.Message == "" {
			e.Message = j.ErrorDescription
		}
	} else {
		e.Message = strings.TrimSpace(string(body))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200]
		}
	}
	return e
}

// tokenSource gets and caches a client-credentials access token.
type tokenSource struct {
	url, id, secret string
	client          *http.Client
	now             func() time.Time

	mu      sync.Mutex
	cached  string
	expires time.Time
}

func (s *tokenSource) forget() {
	s.mu.Lock()
	s.cached = ""
	s.mu.Unlock()
}

// token returns a cached token valid for at least 30 more seconds, or a
// new one.
func (s *tokenSource) token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cached != "" && s.now().Add(30*time.Second).Before(s.expires) {
		return s.cached, nil
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("subscriber: token: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 §2.3.1: the credentials are form-encoded before Basic.
	req.SetBasicAuth(url.QueryEscape(s.id), url.QueryEscape(s.secret))
	resp, err := s.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("subscriber: token: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", hubError("token", resp)
	}
	var t struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&t); err != nil || t.AccessToken == "" {
		return "", errors.New("subscriber: token: the token endpoint's answer has no access_token")
	}
	if !strings.EqualFold(t.TokenType, "bearer") {
		return "", fmt.Errorf("subscriber: token: token_type %q, want Bearer", t.TokenType)
	}
	s.cached = t.AccessToken
	s.expires = s.now().Add(time.Duration(t.ExpiresIn) * time.Second)
	if t.ExpiresIn <= 0 {
		s.expires = s.now().Add(time.Minute)
	}
	return s.cached, nil
}
