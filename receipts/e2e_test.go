package receipts_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otphub/otphub/app/apptest"
)

// fakeTwilio speaks CreateMessage and then, like Twilio, posts the
// message's status changes to its StatusCallback, signed with the auth
// token. script returns the statuses (and error codes) to post for a
// message to a number.
type fakeTwilio struct {
	*httptest.Server
	mu        sync.Mutex
	callbacks []string // StatusCallback of each message
	script    func(n int) [][2]string
	answers   chan int // status codes otphub answered the callbacks with
}

func newFakeTwilio(t *testing.T, script func(n int) [][2]string) *fakeTwilio {
	f := &fakeTwilio{script: script, answers: make(chan int, 64)}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || user != accountSID || pass != authToken || r.URL.Path != "/2010-04-01/Accounts/"+accountSID+"/Messages.json" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"code": 20003, "message": "Authenticate", "status": 401}`)
			return
		}
		r.ParseForm()
		f.mu.Lock()
		n := len(f.callbacks)
		f.callbacks = append(f.callbacks, r.PostForm.Get("StatusCallback"))
		f.mu.Unlock()
		sid := fmt.Sprintf("SM%032x", n+1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"sid": %q, "status": "queued", "to": %q, "account_sid": %q}`, sid, r.PostForm.Get("To"), accountSID)
		cb, to := r.PostForm.Get("StatusCallback"), r.PostForm.Get("To")
		if cb == "" {
			return
		}
		go func() {
			for _, st := range f.script(n) {
				form := twilioCallback(sid, st[0], st[1])
				form.Set("To", to)
				req, _ := http.NewRequest(http.MethodPost, cb, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("X-Twilio-Signature", twilioSignature(authToken, cb, form))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					f.answers <- 0
					continue
				}
				resp.Body.Close()
				f.answers <- resp.StatusCode
			}
		}()
	}))
	t.Cleanup(f.Close)
	return f
}

// fakeVonage speaks the SMS API and posts a signed delivery receipt for
// each SMS to the callback it was sent with.
type fakeVonage struct {
	*httptest.Server
	mu    sync.Mutex
	texts []string
	forms []url.Values
}

func newFakeVonage(t *testing.T, now func() time.Time) *fakeVonage {
	f := &fakeVonage{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		if r.URL.Path != "/sms/json" || r.PostForm.Get("api_key") != vonageKey || r.PostForm.Get("api_secret") != "vonage-api-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		f.mu.Lock()
		n := len(f.texts)
		f.texts = append(f.texts, r.PostForm.Get("text"))
		f.forms = append(f.forms, r.PostForm)
		f.mu.Unlock()
		id := fmt.Sprintf("0B%014X", n+1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"message-count": "1", "messages": [{"to": %q, "message-id": %q, "status": "0"}]}`, r.PostForm.Get("to"), id)
		cb := r.PostForm.Get("callback")
		if cb == "" {
			return
		}
		p := map[string]string{"msisdn": r.PostForm.Get("to"), "to": r.PostForm.Get("from"), "messageId": id, "status": "delivered",
			"err-code": "0", "client-ref": r.PostForm.Get("client-ref"), "api-key": vonageKey,
			"message-timestamp": now().UTC().Format("2006-01-02 15:04:05"), "timestamp": strconv.FormatInt(now().Unix(), 10), "nonce": "n" + id}
		p["sig"] = vonageSign(p, vonageSig, "sha256")
		go func() {
			q := url.Values{}
			for k, v := range p {
				q.Set(k, v)
			}
			if resp, err := http.Get(cb + "?" + q.Encode()); err == nil {
				resp.Body.Close()
			}
		}()
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeVonage) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.texts...)
}

type api struct {
	t   *testing.T
	srv *apptest.TestServer
	tok string
}

func (a api) call(method, path string, body any, out any) int {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, a.srv.URL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if a.tok != "" {
		req.Header.Set("Authorization", "Bearer "+a.tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			a.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
		}
	}
	return resp.StatusCode
}

func (a api) token(id, secret string) string {
	a.t.Helper()
	resp, err := http.PostForm(a.srv.URL+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	if out.AccessToken == "" {
		a.t.Fatalf("token: %d", resp.StatusCode)
	}
	return out.AccessToken
}

type delivery struct {
	ID              string `json:"id"`
	EventID         string `json:"eventId"`
	DestinationType string `json:"destinationType"`
	DestinationID   string `json:"destinationId"`
	Status          string `json:"status"`
	Handset         *struct {
		State             string     `json:"state"`
		ProviderMessageID string     `json:"providerMessageId"`
		ErrorCode         string     `json:"errorCode"`
		AcceptedAt        *time.Time `json:"acceptedAt"`
		SentAt            *time.Time `json:"sentAt"`
		DeliveredAt       *time.Time `json:"deliveredAt"`
		FailedAt          *time.Time `json:"failedAt"`
		Receipts          int        `json:"receipts"`
		Failover          *struct {
			Status, Reason string
		} `json:"failover"`
	} `json:"handset"`
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

var codeIn = regexp.MustCompile(`\b([0-9]{6})\b`)

// TestFailoverEndToEnd runs the whole server: Twilio (receipts on) is the
// primary, Vonage (signed receipts) the fallback. Twilio reports the first
// OTP undelivered (with reordered and repeated callbacks): it is sent
// again through Vonage, whose receipt says delivered, and the code Vonage
// carried verifies. Twilio reports nothing final for the second OTP: it
// fails over when the receipt window ends.
func TestFailoverEndToEnd(t *testing.T) {
	tw := newFakeTwilio(t, func(n int) [][2]string {
		if n == 0 {
			return [][2]string{{"queued", ""}, {"undelivered", "30003"}, {"sent", ""}, {"undelivered", "30003"}}
		}
		return [][2]string{{"sent", ""}}
	})
	vo := newFakeVonage(t, time.Now)
	srv := apptest.Start(t, "--egress-allow-cidrs", "127.0.0.0/8", "--receipt-window", "2s")
	a := api{t: t, srv: srv}
	a.tok = a.token(srv.AdminClientID, srv.AdminClientSecret)
	if st := a.call("POST", "/api/v1/orgs", map[string]string{"name": "acme"}, nil); st != 201 {
		t.Fatalf("create org: %d", st)
	}
	var client struct{ ClientID, ClientSecret string }
	if st := a.call("POST", "/api/v1/orgs/acme/clients", map[string]any{"name": "login", "scopes": []string{"otp", "admin"}}, &client); st != 201 {
		t.Fatalf("create client: %d", st)
	}
	a.tok = a.token(client.ClientID, client.ClientSecret)
	var got map[string]any
	if st := a.call("PUT", "/api/v1/orgs/acme/sms-provider", map[string]any{"type": "twilio", "accountSid": accountSID,
		"authToken": authToken, "sender": "+15005550006", "baseUrl": tw.URL, "deliveryReceipts": true}, &got); st != 200 {
		t.Fatalf("primary: %d %v", st, got)
	}
	if st := a.call("PUT", "/api/v1/orgs/acme/sms-provider/fallback", map[string]any{"type": "vonage", "apiKey": vonageKey,
		"apiSecret": "vonage-api-secret", "sender": "ACME", "baseUrl": vo.URL, "signatureSecret": vonageSig, "signatureMethod": "SHA256"}, &got); st != 200 {
		t.Fatalf("fallback: %d %v", st, got)
	}
	if got["signatureSecret"] != "****"+vonageSig[len(vonageSig)-4:] || got["signatureMethod"] != "sha256" {
		t.Fatalf("fallback as stored: %v", got)
	}

	var ch struct{ ID string }
	if st := a.call("POST", "/api/v1/orgs/acme/sms-otp/challenges", map[string]string{"mobile": "+94771234567", "userId": "alice", "application": "myapp"}, &ch); st != 201 {
		t.Fatalf("start: %d", st)
	}
	eventually(t, "the SMS through the fallback", func() bool { return len(vo.sent()) == 1 })
	for i := 0; i < 4; i++ {
		if code := <-tw.answers; code != http.StatusNoContent {
			t.Fatalf("Twilio callback %d answered %d", i, code)
		}
	}
	if !strings.HasPrefix(vo.forms[0].Get("callback"), srv.URL+"/receipts/vonage/acme/fallback") || vo.forms[0].Get("client-ref") == "" {
		t.Fatalf("fallback SMS form: %v", vo.forms[0])
	}
	if !strings.HasPrefix(tw.callbacks[0], srv.URL+"/receipts/twilio/acme/primary/") {
		t.Fatalf("StatusCallback %q", tw.callbacks[0])
	}

	list := func() []delivery {
		var out struct{ Deliveries []delivery }
		if st := a.call("GET", "/api/v1/orgs/acme/deliveries", nil, &out); st != 200 {
			t.Fatalf("deliveries: %d", st)
		}
		return out.Deliveries
	}
	find := func(ds []delivery, typ string) *delivery {
		for i := range ds {
			if ds[i].DestinationType == typ {
				return &ds[i]
			}
		}
		return nil
	}
	eventually(t, "the fallback's delivered receipt", func() bool {
		d := find(list(), "vonage")
		return d != nil && d.Handset != nil && d.Handset.State == "delivered"
	})
	ds := list()
	p, f := find(ds, "twilio"), find(ds, "vonage")
	if p.Status != "delivered" || p.Handset == nil || p.Handset.State != "undelivered" || p.Handset.ErrorCode != "30003" ||
		p.Handset.Receipts != 3 || p.Handset.SentAt == nil || p.Handset.FailedAt == nil || p.Handset.AcceptedAt == nil ||
		p.Handset.Failover == nil || p.Handset.Failover.Status != "sent" || p.Handset.Failover.Reason != "undelivered" {
		t.Fatalf("primary delivery: %+v %+v", p, p.Handset)
	}
	if f.EventID != p.EventID || f.DestinationID != "fallback" || f.Status != "delivered" || f.Handset.DeliveredAt == nil || f.Handset.Failover != nil {
		t.Fatalf("fallback delivery: %+v %+v", f, f.Handset)
	}

	code := codeIn.FindStringSubmatch(vo.sent()[0])
	if code == nil {
		t.Fatalf("no code in %q", vo.sent()[0])
	}
	if st := a.call("POST", "/api/v1/orgs/acme/sms-otp/challenges/"+ch.ID+"/verify", map[string]string{"code": code[1]}, nil); st != 200 {
		t.Fatalf("verify: %d", st)
	}
	metric := func(line string) bool {
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), line)
	}
	for _, line := range []string{
		`otphub_sms_otp_verified_total{country="94",provider="vonage"} 1`,
		`otphub_sms_accepted_total{country="94",provider="twilio"} 1`,
		`otphub_sms_accepted_total{country="94",provider="vonage"} 1`,
		`otphub_sms_handset_outcomes_total{country="94",outcome="undelivered",provider="twilio"} 1`,
		`otphub_sms_handset_outcomes_total{country="94",outcome="delivered",provider="vonage"} 1`,
		`otphub_sms_failovers_total{outcome="sent",provider="twilio",reason="undelivered"} 1`,
	} {
		eventually(t, line, func() bool { return metric(line) })
	}

	// The second OTP: Twilio says sent, then nothing.
	if st := a.call("POST", "/api/v1/orgs/acme/sms-otp/challenges", map[string]string{"mobile": "+94771234568", "userId": "bob", "application": "myapp"}, &ch); st != 201 {
		t.Fatalf("start: %d", st)
	}
	eventually(t, "the silent SMS's failover", func() bool { return len(vo.sent()) == 2 })
	eventually(t, "the no_receipt failover on record", func() bool {
		for _, d := range list() {
			if d.DestinationType == "twilio" && d.Handset != nil && d.Handset.Failover != nil && d.Handset.Failover.Reason == "no_receipt" {
				return d.Handset.State == "sent"
			}
		}
		return false
	})
}
