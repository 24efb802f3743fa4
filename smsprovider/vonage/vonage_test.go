package vonage

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/event"
)

const (
	testKey    = "abcd1234"
	testSecret = "s3cr3tV0nage"
)

// fakeVonage implements the SMS API's /sms/json as documented: form
// fields, credentials in the body, one messages[] entry per part, non-zero
// statuses with error-text for failures, and an HTTP 200 either way.
type fakeVonage struct {
	mu       sync.Mutex
	forms    []url.Values
	statuses []string // statuses of the parts of the next answer; nil: "0"
	http     int      // when non-zero, answer this HTTP status instead
}

func (f *fakeVonage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/sms/json" {
		http.NotFound(w, r)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		http.Error(w, "bad content type "+ct, http.StatusBadRequest)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.forms = append(f.forms, r.PostForm)
	statuses, status := f.statuses, f.http
	f.mu.Unlock()
	if status != 0 {
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	reply := func(st, text string) {
		_ = json.NewEncoder(w).Encode(map[string]any{"message-count": "1",
			"messages": []map[string]string{{"status": st, "error-text": text}}})
	}
	for _, k := range []string{"api_key", "api_secret", "from", "to", "text"} {
		if r.PostForm.Get(k) == "" {
			reply("2", "Missing "+k)
			return
		}
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("api_key")), []byte(testKey)) != 1 ||
		subtle.ConstantTimeCompare([]byte(r.PostForm.Get("api_secret")), []byte(testSecret)) != 1 {
		reply("4", "Bad Credentials")
		return
	}
	if strings.HasPrefix(r.PostForm.Get("to"), "+") {
		reply("3", "Invalid to address")
		return
	}
	if statuses == nil {
		statuses = []string{"0"}
	}
	var msgs []map[string]string
	for i, st := range statuses {
		m := map[string]string{"to": r.PostForm.Get("to"), "status": st}
		if st == "0" {
			m["message-id"] = fmt.Sprintf("0C00000021%06d", i)
			m["remaining-balance"] = "15.53590000"
			m["message-price"] = "0.03330000"
			m["network"] = "23410"
		} else {
			m["error-text"] = "status " + st
		}
		msgs = append(msgs, m)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"message-count": fmt.Sprint(len(msgs)), "messages": msgs})
}

func start(t *testing.T) (*fakeVonage, *httptest.Server) {
	f := &fakeVonage{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func testEvent(body string) *event.SmsOtpNotificationEvent {
	return &event.SmsOtpNotificationEvent{ID: "9f1c7a5e-0000-4000-8000-000000000001", IssuedAt: time.Now(),
		SendTo: "+447700900000", MessageBody: body, OrganizationID: 1}
}

func TestSendSuccess(t *testing.T) {
	f, srv := start(t)
	s, err := New(Config{APIKey: testKey, APISecret: testSecret, From: "+14155550100", BaseURL: srv.URL + "/"}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	res := s.Send(context.Background(), testEvent("Your code is 123456 {ok} €"))
	if !res.OK || res.ProviderID != "0C00000021000000" || res.StatusCode != 200 {
		t.Fatalf("result %+v", res)
	}
	form := f.forms[0]
	if form.Get("to") != "447700900000" || form.Get("from") != "14155550100" || form.Get("client-ref") != testEvent("").ID ||
		form.Has("type") || form.Get("text") != "Your code is 123456 {ok} €" {
		t.Fatalf("form %v", form)
	}
	f.statuses = []string{"0", "0"}
	if res := s.Send(context.Background(), testEvent("Ваш код 123456")); !res.OK {
		t.Fatalf("multipart: %+v", res)
	}
	if f.forms[1].Get("type") != "unicode" {
		t.Fatalf("non-GSM text sent as %q", f.forms[1].Get("type"))
	}
	if f.forms[0].Has("callback") {
		t.Fatalf("a callback without receipts: %v", f.forms[0])
	}

	// With receipts on, each SMS names its delivery receipt URL.
	rs, err := New(Config{APIKey: testKey, APISecret: testSecret, From: "+14155550100", BaseURL: srv.URL,
		Callback: func(*event.SmsOtpNotificationEvent) string {
			return "https://otphub.example/receipts/vonage/acme/primary"
		}}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	f.statuses = nil
	if res := rs.Send(context.Background(), testEvent("Your code is 123456")); !res.OK {
		t.Fatalf("with a callback: %+v", res)
	}
	if got := f.forms[len(f.forms)-1].Get("callback"); got != "https://otphub.example/receipts/vonage/acme/primary" {
		t.Fatalf("callback = %q", got)
	}
}

func TestSendFailures(t *testing.T) {
	f, srv := start(t)
	s, _ := New(Config{APIKey: testKey, APISecret: testSecret, From: "MyApp", BaseURL: srv.URL}, srv.Client())
	cases := []struct {
		statuses []string
		http     int
		retry    bool
		reason   delivery.Reason
	}{
		{[]string{"1"}, 0, true, delivery.ReasonRateLimited},
		{[]string{"0", "5"}, 0, true, delivery.ReasonServerError}, // HTTP 200, second part failed
		{[]string{"10"}, 0, true, delivery.ReasonRateLimited},
		{[]string{"7"}, 0, false, delivery.ReasonProviderRefused},
		{[]string{"9"}, 0, false, delivery.ReasonProviderRefused},
		{nil, 429, true, delivery.ReasonRateLimited},
		{nil, 503, true, delivery.ReasonServerError},
		{nil, 400, false, delivery.ReasonClientError},
	}
	for _, c := range cases {
		f.statuses, f.http = c.statuses, c.http
		res := s.Send(context.Background(), testEvent("code 1"))
		if res.OK || res.Retry != c.retry || res.Reason != c.reason || res.Err == nil {
			t.Errorf("%v/%d: %+v", c.statuses, c.http, res)
		}
		if c.http == 429 && res.RetryAfter != 3*time.Second {
			t.Errorf("429 RetryAfter %v", res.RetryAfter)
		}
	}
	f.statuses, f.http = nil, 0
	bad, _ := New(Config{APIKey: testKey, APISecret: "wrong", From: "MyApp", BaseURL: srv.URL}, srv.Client())
	if res := bad.Send(context.Background(), testEvent("code 1")); res.Reason != delivery.ReasonAuthError || res.Retry {
		t.Fatalf("bad credentials: %+v", res)
	}
	if strings.Contains(fmt.Sprint(bad.Send(context.Background(), testEvent("code 1")).Err), "wrong") {
		t.Fatal("the secret leaked into the error")
	}
}

func TestClassifyStatusTable(t *testing.T) {
	want := map[string]delivery.Result{
		"0":  {OK: true},
		"1":  {Retry: true, Reason: delivery.ReasonRateLimited},
		"5":  {Retry: true, Reason: delivery.ReasonServerError},
		"10": {Retry: true, Reason: delivery.ReasonRateLimited},
		"4":  {Reason: delivery.ReasonAuthError},
		"14": {Reason: delivery.ReasonAuthError},
		"32": {Reason: delivery.ReasonAuthError},
	}
	for _, st := range []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "14", "15", "22", "23", "29", "32", "33", "99"} {
		w, ok := want[st]
		if !ok {
			w = delivery.Result{Reason: delivery.ReasonProviderRefused}
		}
		if got := ClassifyStatus(st); got.OK != w.OK || got.Retry != w.Retry || got.Reason != w.Reason {
			t.Errorf("ClassifyStatus(%s) = %+v, want %+v", st, got, w)
		}
	}
	for code := 100; code < 600; code++ {
		r := ClassifyHTTP(code)
		retry := code == 429 || code == 408 || code == 425 || code >= 500 || code < 300
		if r.OK || r.Retry != retry || r.StatusCode != code || r.Reason == "" {
			t.Errorf("ClassifyHTTP(%d) = %+v", code, r)
		}
	}
}

func TestIsGSM7(t *testing.T) {
	for s, want := range map[string]bool{
		"Your code is 123456": true, "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!\"#¤%&'()*+,-./:;<=>?¡ÄÖÑÜ§¿äöñüà": true,
		"^{}\\[~]|€": true, "line\nbreak\r": true, "ç": false, "Ваш код": false, "😀": false, "`": false, "\x1b": false, "\xff": false,
	} {
		if IsGSM7(s) != want {
			t.Errorf("IsGSM7(%q) != %v", s, want)
		}
	}
}

// TestEndpointIsPerAccount: the breaker and concurrency cap are per Vonage
// account (API key), and the key never carries the secret.
func TestEndpointIsPerAccount(t *testing.T) {
	mk := func(key string) string {
		s, err := New(Config{APIKey: key, APISecret: testSecret, From: "MyApp"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s.Endpoint()
	}
	a, a2, b := mk(testKey), mk(testKey), mk("other123")
	if a != a2 || a == b || !strings.HasPrefix(a, "https://rest.nexmo.com#") || strings.Contains(a, testSecret) {
		t.Fatalf("endpoints %q %q %q", a, a2, b)
	}
}
