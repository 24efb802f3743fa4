package receipts_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/otphub/otphub/receipts"
	"github.com/otphub/otphub/store"
	"github.com/otphub/otphub/store/sqlite"
)

const (
	accountSID = "AC0123456789abcdef0123456789abcdef"
	authToken  = "0123456789abcdef0123456789abcdef"
	vonageKey  = "abcd1234"
	vonageSig  = "vonage-signature-secret-0123456789"
	customKey  = "custom-receipt-secret-0123456789"
)

// creds is the credential source of the tests: what smsprovider returns
// for each configured slot.
type creds struct {
	mu    sync.Mutex
	slots map[string]receipts.Credentials // "<org id>/<slot>"
}

func (c *creds) set(orgID int64, slot string, cr receipts.Credentials) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slots[strconv.FormatInt(orgID, 10)+"/"+slot] = cr
}

func (c *creds) ReceiptCredentials(_ context.Context, orgID int64, slot string) (receipts.Credentials, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cr, ok := c.slots[strconv.FormatInt(orgID, 10)+"/"+slot]
	if !ok {
		return receipts.Credentials{}, store.ErrNotFound
	}
	return cr, nil
}

type env struct {
	t     *testing.T
	st    store.Store
	svc   *receipts.Service
	creds *creds
	reg   *prometheus.Registry
	srv   *httptest.Server
	org   store.Org
	now   time.Time
	mu    sync.Mutex
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

// newEnv serves the receipt endpoints over a real socket, with the public
// URL prefix a reverse proxy would add (Twilio signs the public URL).
func newEnv(t *testing.T, window time.Duration) *env {
	t.Helper()
	key := make([]byte, 32)
	rand.Read(key)
	st, err := sqlite.Open(context.Background(), t.TempDir(), store.Options{EncryptionKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, st: st, creds: &creds{slots: map[string]receipts.Credentials{}}, reg: prometheus.NewRegistry(),
		now: time.Now().UTC().Truncate(time.Second)}
	mux := http.NewServeMux()
	var proxied http.Handler = http.StripPrefix("/otphub", mux)
	e.srv = httptest.NewServer(proxied)
	t.Cleanup(e.srv.Close)
	e.svc, err = receipts.New(receipts.Config{PublicURL: e.srv.URL + "/otphub/", Window: window, Now: e.clock}, st, e.creds, nil, e.reg)
	if err != nil {
		t.Fatal(err)
	}
	e.svc.Register(mux)
	e.org, err = st.CreateOrg(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	e.creds.set(e.org.ID, store.ProviderPrimary, receipts.Credentials{Type: "twilio", TwilioReceipts: true, AccountSID: accountSID, AuthToken: authToken})
	return e
}

// sent records an SMS of jti that slot's provider accepted, with its
// delivered task, as the dispatcher does.
func (e *env) sent(jti, typ, slot, msgID string) {
	e.t.Helper()
	ctx := context.Background()
	now := e.clock()
	_, err := e.st.InsertDeliveryTasks(ctx, []store.DeliveryTask{{ID: "task-" + jti + "-" + slot, OrgID: e.org.ID, EventID: jti,
		DestinationType: typ, DestinationID: slot, Event: []byte(`{"jti":"` + jti + `"}`), Status: store.DeliveryDelivered,
		Attempts: 1, ExpiresAt: now.Add(5 * time.Minute), CreatedAt: now, UpdatedAt: now}}, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	cr, _ := e.creds.ReceiptCredentials(ctx, e.org.ID, slot)
	err = e.svc.RecordAccepted(ctx, receipts.Accepted{OrgID: e.org.ID, EventID: jti, Type: typ, Slot: slot,
		ProviderMessageID: msgID, Mobile: "+94771234567", At: now, ExpiresAt: now.Add(5 * time.Minute), ExpectReceipts: cr.ExpectsReceipts()})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) record(jti, typ, slot string) store.SMSReceipt {
	e.t.Helper()
	r, err := e.st.GetSMSReceipt(context.Background(), store.ReceiptKey{OrgID: e.org.ID, EventID: jti, DestinationType: typ, DestinationID: slot})
	if err != nil {
		e.t.Fatalf("GetSMSReceipt(%s %s %s): %v", jti, typ, slot, err)
	}
	return r
}

func (e *env) withFallback(typ string) {
	e.t.Helper()
	err := e.st.PutSMSProvider(context.Background(), store.SMSProvider{OrgID: e.org.ID, Slot: store.ProviderFallback, Type: typ, Config: []byte(`{}`)})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) fallbackTask(jti, typ string) (store.DeliveryTask, error) {
	return e.st.FindDelivery(context.Background(), e.org.ID, "", jti, typ, store.ProviderFallback)
}

func post(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// --- Twilio, as https://www.twilio.com/docs/usage/webhooks/webhooks-security describes it.

// twilioSignature is Twilio's algorithm, written from its documentation
// (not with twilio-go): the full URL, then each POST parameter's name and
// value, sorted by name, HMAC-SHA1 keyed by the auth token, base64.
func twilioSignature(token, fullURL string, form url.Values) string {
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := fullURL
	for _, k := range keys {
		s += k + form.Get(k)
	}
	m := hmac.New(sha1.New, []byte(token))
	m.Write([]byte(s))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// twilioCallback is a status callback as Twilio posts it.
func twilioCallback(sid, status, errorCode string) url.Values {
	f := url.Values{
		"ApiVersion": {"2010-04-01"}, "AccountSid": {accountSID}, "MessageSid": {sid}, "SmsSid": {sid},
		"MessageStatus": {status}, "SmsStatus": {status}, "From": {"+15005550006"}, "To": {"+94771234567"},
	}
	if errorCode != "" {
		f.Set("ErrorCode", errorCode)
	}
	if status == "delivered" || status == "undelivered" {
		f.Set("RawDlrDoneDate", "2603040506")
	}
	return f
}

func (e *env) twilio(jti string, form url.Values, token string) (int, string) {
	e.t.Helper()
	u := e.svc.TwilioCallbackURL(e.org.Name, store.ProviderPrimary, jti)
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "TwilioProxy/1.1")
	req.Header.Set("I-Twilio-Idempotency-Token", strconv.FormatInt(time.Now().UnixNano(), 36))
	if token != "" {
		req.Header.Set("X-Twilio-Signature", twilioSignature(token, u, form))
	}
	return post(e.t, req)
}

func TestTwilioStatusCallbacks(t *testing.T) {
	e := newEnv(t, time.Minute)
	e.sent("ev-1", "twilio", store.ProviderPrimary, "SM1")
	for _, st := range []string{"queued", "sent", "delivered"} {
		e.advance(time.Second)
		if code, body := e.twilio("ev-1", twilioCallback("SM1", st, ""), authToken); code != http.StatusNoContent {
			t.Fatalf("%s callback: %d %s", st, code, body)
		}
	}
	r := e.record("ev-1", "twilio", store.ProviderPrimary)
	if r.State != store.HandsetDelivered || r.Receipts != 3 || r.CountryCode != 94 ||
		r.QueuedAt.IsZero() || !r.SentAt.After(r.QueuedAt) || !r.DeliveredAt.After(r.SentAt) {
		t.Fatalf("record = %+v", r)
	}
	if got := value(t, e.reg, "otphub_sms_handset_outcomes_total", "twilio", "94", "delivered"); got != 1 {
		t.Fatalf("delivered outcomes = %v, want 1", got)
	}
	if got := histogramCount(t, e.reg, "otphub_sms_receipt_latency_seconds"); got != 1 {
		t.Fatalf("receipt latency observations = %v, want 1", got)
	}

	// Twilio retries (or a replay): the same callback again changes nothing.
	if code, _ := e.twilio("ev-1", twilioCallback("SM1", "delivered", ""), authToken); code != http.StatusNoContent {
		t.Fatalf("repeated callback: %d", code)
	}
	if got := e.record("ev-1", "twilio", store.ProviderPrimary); got.Receipts != 3 {
		t.Fatalf("receipts after a repeat = %d, want 3", got.Receipts)
	}
	if got := value(t, e.reg, "otphub_sms_receipt_callbacks_total", "twilio", "duplicate"); got != 1 {
		t.Fatalf("duplicate callbacks = %v, want 1", got)
	}
}

func TestTwilioReorderedCallbacks(t *testing.T) {
	e := newEnv(t, time.Minute)
	e.sent("ev-1", "twilio", store.ProviderPrimary, "SM1")
	// Twilio does not promise order: delivered may overtake sent and queued.
	for _, st := range []string{"delivered", "sent", "queued"} {
		if code, body := e.twilio("ev-1", twilioCallback("SM1", st, ""), authToken); code != http.StatusNoContent {
			t.Fatalf("%s callback: %d %s", st, code, body)
		}
	}
	r := e.record("ev-1", "twilio", store.ProviderPrimary)
	if r.State != store.HandsetDelivered || r.SentAt.IsZero() || r.QueuedAt.IsZero() {
		t.Fatalf("record after reordered callbacks = %+v", r)
	}
}

func TestTwilioForgedCallbacks(t *testing.T) {
	e := newEnv(t, time.Minute)
	e.sent("ev-1", "twilio", store.ProviderPrimary, "SM1")
	u := e.svc.TwilioCallbackURL(e.org.Name, store.ProviderPrimary, "ev-1")

	cases := map[string]func() *http.Request{
		"unsigned": func() *http.Request {
			return form(u, twilioCallback("SM1", "undelivered", "30003"), "")
		},
		"wrong auth token": func() *http.Request {
			f := twilioCallback("SM1", "undelivered", "30003")
			return form(u, f, twilioSignature("ffffffffffffffffffffffffffffffff", u, f))
		},
		"tampered after signing": func() *http.Request {
			f := twilioCallback("SM1", "delivered", "")
			sig := twilioSignature(authToken, u, f)
			f.Set("MessageStatus", "undelivered")
			return form(u, f, sig)
		},
		"signed for another URL": func() *http.Request {
			f := twilioCallback("SM1", "undelivered", "")
			other := e.svc.TwilioCallbackURL(e.org.Name, store.ProviderPrimary, "ev-2")
			return form(u, f, twilioSignature(authToken, other, f))
		},
		"another account": func() *http.Request {
			f := twilioCallback("SM1", "undelivered", "")
			f.Set("AccountSid", "ACffffffffffffffffffffffffffffffff")
			return form(u, f, twilioSignature(authToken, u, f))
		},
	}
	for name, mk := range cases {
		if code, body := post(t, mk()); code != http.StatusForbidden || !strings.Contains(body, "invalid_signature") {
			t.Errorf("%s: %d %s, want 403 invalid_signature", name, code, body)
		}
	}
	if r := e.record("ev-1", "twilio", store.ProviderPrimary); r.State != "" || r.Receipts != 0 {
		t.Fatalf("a forged callback changed the record: %+v", r)
	}
	if got := value(t, e.reg, "otphub_sms_receipt_callbacks_total", "twilio", "forged"); got != float64(len(cases)) {
		t.Fatalf("forged callbacks = %v, want %d", got, len(cases))
	}

	// Another message's authentic callback posted to this SMS's URL.
	if code, _ := e.twilio("ev-1", twilioCallback("SM-other", "undelivered", ""), authToken); code != http.StatusNoContent {
		t.Fatalf("another message's callback: %d", code)
	}
	if r := e.record("ev-1", "twilio", store.ProviderPrimary); r.State != "" {
		t.Fatalf("another message's callback applied: %+v", r)
	}
	// Unknown org and unconfigured slots are refused, not trusted.
	bad := strings.Replace(u, "/acme/", "/nobody/", 1)
	if code, _ := post(t, form(bad, twilioCallback("SM1", "delivered", ""), "x")); code != http.StatusNotFound {
		t.Fatalf("unknown org: %d, want 404", code)
	}
	fb := e.svc.TwilioCallbackURL(e.org.Name, store.ProviderFallback, "ev-1")
	if code, body := post(t, form(fb, twilioCallback("SM1", "delivered", ""), "x")); code != http.StatusNotFound ||
		!strings.Contains(body, "receipts_not_configured") {
		t.Fatalf("unconfigured slot: %d %s, want 404 receipts_not_configured", code, body)
	}
	if code, body := e.twilio("ev-1", twilioCallback("SM1", "receiving", ""), authToken); code != http.StatusBadRequest {
		t.Fatalf("unknown status: %d %s, want 400", code, body)
	}
}

func form(u string, f url.Values, sig string) *http.Request {
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if sig != "" {
		req.Header.Set("X-Twilio-Signature", sig)
	}
	return req
}

func TestTwilioUndeliveredFailsOverOnce(t *testing.T) {
	e := newEnv(t, time.Minute)
	e.withFallback("vonage")
	e.sent("ev-1", "twilio", store.ProviderPrimary, "SM1")
	e.twilio("ev-1", twilioCallback("SM1", "sent", ""), authToken)
	if code, body := e.twilio("ev-1", twilioCallback("SM1", "undelivered", "30003"), authToken); code != http.StatusNoContent {
		t.Fatalf("undelivered: %d %s", code, body)
	}
	task, err := e.fallbackTask("ev-1", "vonage")
	if err != nil {
		t.Fatalf("fallback task: %v", err)
	}
	if task.Status != store.DeliveryPending || !task.ExpiresAt.Equal(e.clock().Add(5*time.Minute)) || string(task.Event) != `{"jti":"ev-1"}` {
		t.Fatalf("fallback task = %+v", task)
	}
	r := e.record("ev-1", "twilio", store.ProviderPrimary)
	if r.State != store.HandsetUndelivered || r.ErrorCode != "30003" || r.FailoverStatus != store.FailoverSent || r.FailoverReason != "undelivered" {
		t.Fatalf("record = %+v", r)
	}
	// A repeated undelivered and a failed after it do not fail over again.
	e.twilio("ev-1", twilioCallback("SM1", "undelivered", "30003"), authToken)
	e.twilio("ev-1", twilioCallback("SM1", "failed", "30008"), authToken)
	if got := value(t, e.reg, "otphub_sms_failovers_total", "twilio", "undelivered", "sent"); got != 1 {
		t.Fatalf("failovers = %v, want 1", got)
	}
}

func TestNoReceiptWithinWindowFailsOver(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	e.withFallback("custom")
	e.sent("ev-silent", "twilio", store.ProviderPrimary, "SM1")
	e.sent("ev-ok", "twilio", store.ProviderPrimary, "SM2")
	e.twilio("ev-silent", twilioCallback("SM1", "sent", ""), authToken) // not final
	e.twilio("ev-ok", twilioCallback("SM2", "delivered", ""), authToken)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); e.svc.Run(ctx) }()
	defer func() { cancel(); <-done }()

	e.advance(29 * time.Second)
	if _, err := e.fallbackTask("ev-silent", "custom"); !errors.Is(err, store.ErrNotFound) {
		// (The window's exact boundary is the store's DueFailovers case.)
		t.Fatalf("failed over before the window: %v", err)
	}
	e.advance(2 * time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := e.fallbackTask("ev-silent", "custom"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no fallback task after the window")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := e.fallbackTask("ev-ok", "custom"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a delivered SMS failed over: %v", err)
	}
	if r := e.record("ev-silent", "twilio", store.ProviderPrimary); r.FailoverReason != receipts.ReasonNoReceipt {
		t.Fatalf("record = %+v, want failover for no_receipt", r)
	}
	if got := value(t, e.reg, "otphub_sms_handset_outcomes_total", "twilio", "94", "no_receipt"); got != 1 {
		t.Fatalf("no_receipt outcomes = %v, want 1", got)
	}
}

func TestNoFailoverOnceTheOTPExpired(t *testing.T) {
	e := newEnv(t, time.Minute)
	e.withFallback("vonage")
	e.sent("ev-1", "twilio", store.ProviderPrimary, "SM1")
	e.advance(6 * time.Minute)
	e.twilio("ev-1", twilioCallback("SM1", "undelivered", "30003"), authToken)
	if _, err := e.fallbackTask("ev-1", "vonage"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("failed over after the OTP expired: %v", err)
	}
}

func TestFailoverWithoutFallbackIsRecorded(t *testing.T) {
	e := newEnv(t, time.Minute)
	e.sent("ev-1", "twilio", store.ProviderPrimary, "SM1")
	e.twilio("ev-1", twilioCallback("SM1", "failed", "30008"), authToken)
	if r := e.record("ev-1", "twilio", store.ProviderPrimary); r.FailoverStatus != store.FailoverNoFallback || r.FailoverReason != "failed" {
		t.Fatalf("record = %+v, want no_fallback", r)
	}
}

// --- Vonage, as developer.vonage.com documents delivery receipts and signed webhooks.

// vonageSign signs params as Vonage does, written from its documentation.
func vonageSign(params map[string]string, secret, method string) string {
	keys := []string{}
	for k, v := range params {
		if k != "sig" && v != "" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var s string
	for _, k := range keys {
		v := strings.NewReplacer("&", "_", "=", "_").Replace(params[k])
		s += "&" + k + "=" + v
	}
	switch method {
	case "sha256":
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(s))
		return strings.ToUpper(hex.EncodeToString(m.Sum(nil))) // Vonage sends HMACs in upper case
	default:
		sum := md5.Sum([]byte(s + secret))
		return hex.EncodeToString(sum[:])
	}
}

func TestVonageSignatureVector(t *testing.T) {
	// The vector of Vonage's own client library tests.
	p := map[string]string{"a": "1", "b": "2", "timestamp": "1461605396"}
	if got := receipts.VonageSignature(p, "secret", receipts.SignatureMD5Hash); got != "6af838ef94998832dbfc29020b564830" {
		t.Fatalf("md5hash = %s", got)
	}
	p["c"] = "x&y=z"
	for _, m := range []string{"md5hash", "sha256"} {
		if got, want := receipts.VonageSignature(p, "secret", m), strings.ToLower(vonageSign(p, "secret", m)); got != want {
			t.Errorf("%s: %s, want %s", m, got, want)
		}
	}
	if receipts.VonageSignature(p, "secret", "crc32") != "" {
		t.Error("an unknown method signed")
	}
}

// vonageDLR is a delivery receipt as Vonage sends it, signed.
func (e *env) vonageDLR(jti, msgID, status, errCode string) map[string]string {
	p := map[string]string{
		"msisdn": "94771234567", "to": "ACME", "network-code": "41302", "messageId": msgID, "price": "0.03330000",
		"status": status, "scts": e.clock().Format("0601021504"), "err-code": errCode, "api-key": vonageKey,
		"client-ref": jti, "message-timestamp": e.clock().Format("2006-01-02 15:04:05"),
		"timestamp": strconv.FormatInt(e.clock().Unix(), 10), "nonce": strconv.FormatInt(time.Now().UnixNano(), 16),
	}
	p["sig"] = vonageSign(p, vonageSig, "sha256")
	return p
}

func (e *env) sendVonage(how string, p map[string]string) (int, string) {
	e.t.Helper()
	u := e.svc.VonageCallbackURL(e.org.Name, store.ProviderPrimary)
	v := url.Values{}
	for k, x := range p {
		v.Set(k, x)
	}
	var req *http.Request
	switch how {
	case "GET":
		req, _ = http.NewRequest(http.MethodGet, u+"?"+v.Encode(), nil)
	case "POST-JSON":
		b, _ := json.Marshal(p)
		req, _ = http.NewRequest(http.MethodPost, u, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
	default:
		req, _ = http.NewRequest(http.MethodPost, u, strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return post(e.t, req)
}

func vonageEnv(t *testing.T) *env {
	e := newEnv(t, time.Minute)
	e.creds.set(e.org.ID, store.ProviderPrimary, receipts.Credentials{Type: "vonage", APIKey: vonageKey,
		SignatureSecret: vonageSig, SignatureMethod: receipts.SignatureSHA256})
	return e
}

func TestVonageDeliveryReceipts(t *testing.T) {
	for _, how := range []string{"GET", "POST-FORM", "POST-JSON"} {
		t.Run(how, func(t *testing.T) {
			e := vonageEnv(t)
			e.sent("ev-1", "vonage", store.ProviderPrimary, "0B00000127FDBC63")
			e.advance(2 * time.Second)
			if code, body := e.sendVonage(how, e.vonageDLR("ev-1", "0B00000127FDBC63", "accepted", "0")); code != http.StatusNoContent {
				t.Fatalf("accepted: %d %s", code, body)
			}
			e.advance(3 * time.Second)
			if code, body := e.sendVonage(how, e.vonageDLR("ev-1", "0B00000127FDBC63", "delivered", "0")); code != http.StatusNoContent {
				t.Fatalf("delivered: %d %s", code, body)
			}
			r := e.record("ev-1", "vonage", store.ProviderPrimary)
			if r.State != store.HandsetDelivered || r.ErrorCode != "" || !r.DeliveredAt.Equal(e.clock()) || r.CountryCode != 94 {
				t.Fatalf("record = %+v", r)
			}
		})
	}
}

func TestVonageRetriesAndFailures(t *testing.T) {
	e := vonageEnv(t)
	e.withFallback("twilio")
	e.sent("ev-1", "vonage", store.ProviderPrimary, "MSG1")
	// Vonage retries a receipt until it gets a 2xx: each retry is signed
	// anew (new timestamp and nonce) and recorded once.
	for i := 0; i < 3; i++ {
		e.advance(time.Second)
		p := e.vonageDLR("ev-1", "MSG1", "rejected", "6")
		p["message-timestamp"] = "2026-03-04 05:06:07"
		p["sig"] = vonageSign(p, vonageSig, "sha256")
		if code, body := e.sendVonage("POST-FORM", p); code != http.StatusNoContent {
			t.Fatalf("attempt %d: %d %s", i, code, body)
		}
	}
	r := e.record("ev-1", "vonage", store.ProviderPrimary)
	if r.State != store.HandsetFailed || r.ErrorCode != "6" || r.Receipts != 1 || r.FailoverStatus != store.FailoverSent {
		t.Fatalf("record = %+v", r)
	}
	if _, err := e.fallbackTask("ev-1", "twilio"); err != nil {
		t.Fatalf("fallback task: %v", err)
	}
	// expired is undelivered.
	e.sent("ev-2", "vonage", store.ProviderPrimary, "MSG2")
	e.sendVonage("GET", e.vonageDLR("ev-2", "MSG2", "expired", "2"))
	if r := e.record("ev-2", "vonage", store.ProviderPrimary); r.State != store.HandsetUndelivered || r.ErrorCode != "2" {
		t.Fatalf("expired record = %+v", r)
	}
}

func TestVonageForgedAndReplayed(t *testing.T) {
	e := vonageEnv(t)
	e.sent("ev-1", "vonage", store.ProviderPrimary, "MSG1")
	good := e.vonageDLR("ev-1", "MSG1", "failed", "4")

	forged := map[string]string{}
	for k, v := range good {
		forged[k] = v
	}
	forged["status"] = "delivered" // changed after signing
	if code, body := e.sendVonage("GET", forged); code != http.StatusForbidden || !strings.Contains(body, "invalid_signature") {
		t.Fatalf("tampered: %d %s", code, body)
	}
	unsigned := map[string]string{}
	for k, v := range good {
		if k != "sig" {
			unsigned[k] = v
		}
	}
	if code, _ := e.sendVonage("GET", unsigned); code != http.StatusForbidden {
		t.Fatalf("unsigned: %d", code)
	}
	md5Signed := map[string]string{}
	for k, v := range good {
		md5Signed[k] = v
	}
	md5Signed["sig"] = vonageSign(md5Signed, vonageSig, "md5hash") // the wrong method for this account
	if code, _ := e.sendVonage("GET", md5Signed); code != http.StatusForbidden {
		t.Fatalf("other method: %d", code)
	}
	// A captured receipt replayed after the allowed skew.
	e.advance(6 * time.Minute)
	if code, body := e.sendVonage("GET", good); code != http.StatusForbidden || !strings.Contains(body, "stale_signature") {
		t.Fatalf("replayed: %d %s", code, body)
	}
	if r := e.record("ev-1", "vonage", store.ProviderPrimary); r.State != "" {
		t.Fatalf("a refused receipt changed the record: %+v", r)
	}
	if got := value(t, e.reg, "otphub_sms_receipt_callbacks_total", "vonage", "expired"); got != 1 {
		t.Fatalf("expired callbacks = %v", got)
	}
	// A receipt of another account signed with our secret (cannot happen
	// unless secrets are shared) is refused too.
	other := e.vonageDLR("ev-1", "MSG1", "failed", "4")
	other["api-key"] = "other"
	other["sig"] = vonageSign(other, vonageSig, "sha256")
	if code, _ := e.sendVonage("GET", other); code != http.StatusForbidden {
		t.Fatalf("another account: %d", code)
	}
}

// --- Custom gateway: Standard Webhooks signatures.

func standardSign(secret, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(id + "." + strconv.FormatInt(ts, 10) + "."))
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func (e *env) sendCustom(body string, secret string, ts time.Time) (int, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.svc.CustomCallbackURL(e.org.Name, store.ProviderPrimary), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	id := "msg_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	if secret != "" {
		req.Header.Set("webhook-signature", "v1,bm90LXRoaXMtb25l "+standardSign(secret, id, ts.Unix(), []byte(body)))
	}
	return post(e.t, req)
}

func TestCustomGatewayReceipts(t *testing.T) {
	e := newEnv(t, time.Minute)
	e.creds.set(e.org.ID, store.ProviderPrimary, receipts.Credentials{Type: "custom", ReceiptSecret: customKey})
	e.sent("ev-1", "custom", store.ProviderPrimary, "")

	if code, body := e.sendCustom(`{"id":"ev-1","status":"delivered","messageId":"gw-1","timestamp":"2026-03-04T05:06:07Z","to":"+447700900123"}`,
		customKey, e.clock()); code != http.StatusNoContent {
		t.Fatalf("delivered: %d %s", code, body)
	}
	r := e.record("ev-1", "custom", store.ProviderPrimary)
	if r.State != store.HandsetDelivered || r.ProviderMessageID != "gw-1" || !r.DeliveredAt.Equal(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)) {
		t.Fatalf("record = %+v", r)
	}
	for name, c := range map[string]struct {
		body, secret string
		ts           time.Time
		code         int
	}{
		"wrong secret":      {`{"id":"ev-1","status":"failed"}`, "other-secret", e.clock(), http.StatusForbidden},
		"unsigned":          {`{"id":"ev-1","status":"failed"}`, "", e.clock(), http.StatusUnauthorized},
		"replayed later":    {`{"id":"ev-1","status":"failed"}`, customKey, e.clock().Add(-10 * time.Minute), http.StatusForbidden},
		"unknown status":    {`{"id":"ev-1","status":"lost"}`, customKey, e.clock(), http.StatusBadRequest},
		"unknown field":     {`{"id":"ev-1","status":"failed","sattus":"x"}`, customKey, e.clock(), http.StatusBadRequest},
		"no id":             {`{"status":"failed"}`, customKey, e.clock(), http.StatusBadRequest},
		"bad timestamp":     {`{"id":"ev-1","status":"failed","timestamp":"yesterday"}`, customKey, e.clock(), http.StatusBadRequest},
		"not a JSON object": {`["ev-1"]`, customKey, e.clock(), http.StatusBadRequest},
	} {
		if code, body := e.sendCustom(c.body, c.secret, c.ts); code != c.code {
			t.Errorf("%s: %d %s, want %d", name, code, body, c.code)
		}
	}
	if r := e.record("ev-1", "custom", store.ProviderPrimary); r.State != store.HandsetDelivered || r.Receipts != 1 {
		t.Fatalf("a refused receipt changed the record: %+v", r)
	}
}

func TestConversionMetrics(t *testing.T) {
	e := newEnv(t, time.Minute)
	e.sent("ev-1", "twilio", store.ProviderPrimary, "SM1")
	e.sent("ev-2", "twilio", store.ProviderPrimary, "SM2")
	e.svc.Verified(context.Background(), e.org.ID, "ev-1")
	e.svc.Verified(context.Background(), e.org.ID, "ev-unknown")
	if got := value(t, e.reg, "otphub_sms_accepted_total", "twilio", "94"); got != 2 {
		t.Fatalf("accepted = %v, want 2", got)
	}
	if got := value(t, e.reg, "otphub_sms_otp_verified_total", "twilio", "94"); got != 1 {
		t.Fatalf("verified = %v, want 1", got)
	}
}

// value is the counter name{labels} (label values matched as a set).
func value(t *testing.T, reg *prometheus.Registry, name string, values ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(values) {
				continue
			}
			have := map[string]bool{}
			for _, l := range m.GetLabel() {
				have[l.GetValue()] = true
			}
			for _, v := range values {
				if !have[v] {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, _ := reg.Gather()
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return n
}
