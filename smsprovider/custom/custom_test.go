package custom

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/egress"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/smsprovider/provider"
)

func testEvent() *event.SmsOtpNotificationEvent {
	return &event.SmsOtpNotificationEvent{
		ID: "3b241101-e2bb-4255-8caf-4136c566a962", IssuedAt: time.Now(), OrganizationID: 1, OrganizationName: "myorg",
		SendTo: "+94771234567", MessageBody: `Your "myapp" code is 123456`, ExpiresAt: time.Now().Add(5 * time.Minute),
	}
}

// gateway is a custom SMS gateway: it records what it received and answers
// with the configured status.
type gateway struct {
	mu     sync.Mutex
	reqs   []received
	status int
}

type received struct {
	method, path, contentType string
	header                    http.Header
	body                      []byte
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	g.mu.Lock()
	g.reqs = append(g.reqs, received{r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Clone(), body})
	status := g.status
	g.mu.Unlock()
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "7")
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, `{"accepted":true}`)
}

func (g *gateway) last(t *testing.T) received {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.reqs) == 0 {
		t.Fatal("the gateway received nothing")
	}
	return g.reqs[len(g.reqs)-1]
}

func startGateway(t *testing.T, status int) (*gateway, *httptest.Server) {
	g := &gateway{status: status}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv
}

func TestSendJSONPost(t *testing.T) {
	g, srv := startGateway(t, http.StatusOK)
	s, err := New(Config{URL: srv.URL + "/api/v1/sms", PayloadTemplate: seedTemplate,
		Headers: "authorisation: qwer1234asdfzxcv, x-csrf: true, x-abc: some-value, x-url: https://example.com:8443/a, Accept: text/plain, application/json"}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	ev := testEvent()
	res := s.Send(context.Background(), ev)
	if !res.OK || res.StatusCode != 200 || res.Err != nil {
		t.Fatalf("result %+v", res)
	}
	r := g.last(t)
	if r.method != http.MethodPost || r.path != "/api/v1/sms" || r.contentType != "application/json" {
		t.Fatalf("request %s %s %s", r.method, r.path, r.contentType)
	}
	var p struct{ Content, To string }
	if err := json.Unmarshal(r.body, &p); err != nil || p.Content != ev.MessageBody || p.To != ev.SendTo {
		t.Fatalf("payload %s: %v", r.body, err)
	}
	for name, want := range map[string]string{"Authorisation": "qwer1234asdfzxcv", "X-Csrf": "true", "X-Abc": "some-value",
		"X-Url": "https://example.com:8443/a", "Accept": "text/plain, application/json", "Idempotency-Key": ev.ID} {
		if got := r.header.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
}

func TestSendFormPut(t *testing.T) {
	g, srv := startGateway(t, http.StatusAccepted)
	s, err := New(Config{URL: srv.URL + "/send", ContentType: "form", Method: "put",
		PayloadTemplate: "to={{mobile}}&text={{body}}&sender=otphub", Headers: "X-Api-Key: k:e:y"}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	ev := testEvent()
	ev.MessageBody = "Código 123456 & más=sí"
	if res := s.Send(context.Background(), ev); !res.OK || res.StatusCode != 202 {
		t.Fatalf("result %+v", res)
	}
	r := g.last(t)
	v, err := url.ParseQuery(string(r.body))
	if r.method != http.MethodPut || r.contentType != "application/x-www-form-urlencoded" || err != nil ||
		v.Get("to") != ev.SendTo || v.Get("text") != ev.MessageBody || v.Get("sender") != "otphub" || r.header.Get("X-Api-Key") != "k:e:y" {
		t.Fatalf("request %s %s %q %v", r.method, r.contentType, r.body, r.header)
	}
}

func TestSendErrors(t *testing.T) {
	_, srv := startGateway(t, http.StatusTooManyRequests)
	s, err := New(Config{URL: srv.URL, PayloadTemplate: seedTemplate}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	res := s.Send(context.Background(), testEvent())
	if res.OK || !res.Retry || res.Reason != delivery.ReasonRateLimited || res.RetryAfter != 7*time.Second || res.StatusCode != 429 {
		t.Fatalf("429: %+v", res)
	}

	// A refused connection is retried.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	s, _ = New(Config{URL: "http://" + addr + "/x", PayloadTemplate: seedTemplate}, nil)
	if res := s.Send(context.Background(), testEvent()); !res.Retry || res.Reason != delivery.ReasonConnection {
		t.Fatalf("refused: %+v", res)
	}

	// A gateway slower than the context is a timeout.
	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(block) })
	s, _ = New(Config{URL: slow.URL, PayloadTemplate: seedTemplate}, slow.Client())
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if res := s.Send(ctx, testEvent()); !res.Retry || res.Reason != delivery.ReasonTimeout {
		t.Fatalf("slow: %+v", res)
	}

	// An event without a recipient cannot be rendered.
	ev := testEvent()
	ev.SendTo = ""
	if res := s.Send(context.Background(), ev); res.Retry || res.Reason != delivery.ReasonInvalid {
		t.Fatalf("no recipient: %+v", res)
	}
}

func TestEgressRefusal(t *testing.T) {
	g, srv := startGateway(t, http.StatusOK)
	eg, err := egress.New(egress.Config{}, prometheus.NewRegistry()) // loopback not allowed
	if err != nil {
		t.Fatal(err)
	}
	s, _ := New(Config{URL: srv.URL, PayloadTemplate: seedTemplate}, eg.HTTP())
	if res := s.Send(context.Background(), testEvent()); res.OK || res.Retry || res.Reason != delivery.ReasonEgressRefused {
		t.Fatalf("refused: %+v", res)
	}
	if len(g.reqs) != 0 {
		t.Fatal("the guard let the request through")
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	target, tsrv := startGateway(t, http.StatusOK)
	redir := httptest.NewServer(http.RedirectHandler(tsrv.URL, http.StatusTemporaryRedirect))
	t.Cleanup(redir.Close)
	s, _ := New(Config{URL: redir.URL, PayloadTemplate: seedTemplate}, nil)
	if res := s.Send(context.Background(), testEvent()); res.OK || res.Retry || res.Reason != delivery.ReasonRedirect {
		t.Fatalf("redirect: %+v", res)
	}
	if len(target.reqs) != 0 {
		t.Fatal("the redirect was followed")
	}
}

func TestNewRefusals(t *testing.T) {
	cases := []struct {
		cfg   Config
		field string
	}{
		{Config{URL: "ftp://x", PayloadTemplate: seedTemplate}, "url"},
		{Config{URL: "/relative", PayloadTemplate: seedTemplate}, "url"},
		{Config{URL: "https://u:p@x", PayloadTemplate: seedTemplate}, "url"},
		{Config{URL: "https://x", ContentType: "XML", PayloadTemplate: seedTemplate}, "contentType"},
		{Config{URL: "https://x", Method: "GET", PayloadTemplate: seedTemplate}, "method"},
		{Config{URL: "https://x", PayloadTemplate: "{}"}, "payloadTemplate"},
		{Config{URL: "https://x", PayloadTemplate: seedTemplate, Headers: "X-A: b\r\nHost: evil"}, "headers"},
	}
	for _, c := range cases {
		_, err := New(c.cfg, nil)
		var fe *provider.FieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("New(%+v) = %v, want a %s error", c.cfg, err, c.field)
		}
	}
}

func TestParseHeaders(t *testing.T) {
	hs, err := ParseHeaders("authorisation: qwer1234asdfzxcv, x-csrf: true, x-abc: some-value,")
	if err != nil || len(hs) != 3 || hs[0] != (Header{"Authorisation", "qwer1234asdfzxcv"}) || hs[2] != (Header{"X-Abc", "some-value"}) {
		t.Fatalf("%v %v", hs, err)
	}
	if FormatHeaders(hs) != "Authorisation: qwer1234asdfzxcv, X-Csrf: true, X-Abc: some-value" {
		t.Fatal(FormatHeaders(hs))
	}
	if hs, err := ParseHeaders(""); err != nil || len(hs) != 0 {
		t.Fatalf("empty: %v %v", hs, err)
	}
	bad := map[string]int{
		"x-a: b\r\nx-b: c":                 6,
		"x-a: b\n":                         6,
		"x-a: \x00":                        5,
		"no colon here":                    0,
		"bad name: v":                      0,
		"Host: evil.example":               0,
		"x: 1, content-length: 5":          6,
		"x: 1, Transfer-Encoding: chunked": 6,
	}
	for in, off := range bad {
		_, err := ParseHeaders(in)
		var he *HeaderError
		if !errors.As(err, &he) || he.Offset != off {
			t.Errorf("ParseHeaders(%q) = %v, want an error at %d", in, err, off)
		}
	}
	if _, err := ParseHeaders(strings.Repeat("x-a: b, ", MaxHeaders+1)); err == nil {
		t.Error("too many headers accepted")
	}
}

// TestClassify covers every HTTP status code.
func TestClassify(t *testing.T) {
	for code := 100; code < 600; code++ {
		r := delivery.Provider.Classify(code, http.Header{"Retry-After": {"5"}}, time.Now())
		var ok, retry bool
		var reason delivery.Reason
		switch {
		case code >= 200 && code < 300:
			ok = true
		case code == 429:
			retry, reason = true, delivery.ReasonRateLimited
		case code >= 500:
			retry, reason = true, delivery.ReasonServerError
		case code == 408:
			retry, reason = true, delivery.ReasonTimeout
		case code == 425:
			retry, reason = true, delivery.ReasonClientError
		case code == 401 || code == 403:
			reason = delivery.ReasonAuthError
		case code >= 400:
			reason = delivery.ReasonClientError
		case code >= 300:
			reason = delivery.ReasonRedirect
		default:
			retry, reason = true, delivery.ReasonServerError
		}
		wantAfter := time.Duration(0)
		if retry {
			wantAfter = 5 * time.Second
		}
		if r.OK != ok || r.Retry != retry || r.Reason != reason || r.StatusCode != code || r.RetryAfter != wantAfter {
			t.Errorf("Classify(%d) = %+v", code, r)
		}
	}
}
