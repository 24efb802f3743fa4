package reliability_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/otphub/otphub/app/apptest"
)

// TestProviderThrottling: the org's SMS provider is a local Twilio that
// throttles (429, error 20429) its first requests; every challenge's SMS
// must still arrive exactly once, and the deliveries API must show the
// retries.
func TestProviderThrottling(t *testing.T) {
	throttleTest(t, 6, 3)
}

// TestSoakProviderThrottling is the long form: more challenges, and six
// throttled requests in a row: five open the provider's circuit breaker,
// the sixth is its first half-open probe (30 s later), which opens it again;
// the second probe (30 s after that) succeeds and the SMS go out. Each
// throttled request beyond five costs one 30 s open period.
func TestSoakProviderThrottling(t *testing.T) {
	if !soak {
		t.Skip("soak test: set OTPHUB_SOAK=1 (make soak)")
	}
	throttleTest(t, 60, 6)
}

const (
	twilioSID   = "AC0123456789abcdef0123456789abcdef"
	twilioToken = "0123456789abcdef0123456789abcdef"
	twilioFrom  = "+15005550006"
)

var twilioPath = regexp.MustCompile(`^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Messages\.json$`)

// fakeTwilio speaks Twilio's CreateMessage: Basic auth with the account SID
// and auth token, a form body, 201 with a Message resource; its first
// throttle requests get 429 with Twilio's error 20429.
type fakeTwilio struct {
	throttle int

	mu        sync.Mutex
	requests  int
	throttled int
	sent      map[string]int // To → messages created
	bad       []string       // malformed requests
}

func (f *fakeTwilio) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m := twilioPath.FindStringSubmatch(r.URL.Path)
	user, pass, ok := r.BasicAuth()
	w.Header().Set("Content-Type", "application/json")
	if r.Method != http.MethodPost || m == nil {
		w.WriteHeader(http.StatusNotFound)
		_, _ = fmt.Fprintf(w, `{"code":20404,"message":"The requested resource %s was not found","status":404}`, r.URL.Path)
		return
	}
	if !ok || user != twilioSID || pass != twilioToken || m[1] != user {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"code":20003,"message":"Authenticate","status":401}`))
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("To") == "" || r.PostForm.Get("Body") == "" || r.PostForm.Get("From") != twilioFrom {
		f.mu.Lock()
		f.bad = append(f.bad, fmt.Sprintf("%v %v", err, r.PostForm))
		f.mu.Unlock()
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"code":21211,"message":"Invalid 'To' Phone Number","status":400}`))
		return
	}
	to := r.PostForm.Get("To")
	f.mu.Lock()
	f.requests++
	if f.requests <= f.throttle {
		f.throttled++
		f.mu.Unlock()
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"code":20429,"message":"Too Many Requests","more_info":"https://www.twilio.com/docs/errors/20429","status":429}`))
		return
	}
	f.sent[to]++
	n := f.requests
	f.mu.Unlock()
	now := time.Now().UTC().Format(time.RFC1123Z)
	sid := fmt.Sprintf("SM%032x", n)
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"sid": sid, "account_sid": twilioSID, "to": to, "from": twilioFrom, "body": r.PostForm.Get("Body"),
		"status": "queued", "num_segments": "1", "direction": "outbound-api", "api_version": "2010-04-01",
		"date_created": now, "date_updated": now, "date_sent": nil, "price": nil, "error_code": nil, "error_message": nil,
		"uri": "/2010-04-01/Accounts/" + twilioSID + "/Messages/" + sid + ".json",
	})
}

func (f *fakeTwilio) sentTo(to string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent[to]
}

type deliveryView struct {
	ID              string `json:"id"`
	DestinationType string `json:"destinationType"`
	Status          string `json:"status"`
	Attempts        int    `json:"attempts"`
	AttemptLog      []struct {
		StatusCode int    `json:"statusCode"`
		Outcome    string `json:"outcome"`
	} `json:"attemptLog"`
}

func throttleTest(t *testing.T, challenges, throttle int) {
	tw := &fakeTwilio{throttle: throttle, sent: map[string]int{}}
	twSrv := httptest.NewServer(tw)
	t.Cleanup(twSrv.Close)

	s := apptest.Start(t, "--log-level", "error")
	c := newClient(s.URL)
	tn := setupTenant(t, c, s.AdminClientID, s.AdminClientSecret, "throttle", "otp", "admin")
	c.mustDo(t, http.MethodPut, "/api/v1/orgs/throttle/sms-provider", tn.token, map[string]any{
		"type": "twilio", "accountSid": twilioSID, "authToken": twilioToken, "sender": twilioFrom, "baseUrl": twSrv.URL,
	}, nil)

	began := time.Now()
	mobiles := make([]string, challenges)
	for i := range mobiles {
		mobiles[i] = fmt.Sprintf("+9477%07d", 1000000+i)
		var ch struct {
			ID string `json:"id"`
		}
		c.mustDo(t, http.MethodPost, "/api/v1/orgs/throttle/sms-otp/challenges", tn.token,
			map[string]any{"mobile": mobiles[i], "userId": fmt.Sprintf("user-%d", i), "application": "reliability"}, &ch)
	}

	// Every challenge's SMS delivered, as the deliveries API sees it.
	var list struct {
		Deliveries []deliveryView `json:"deliveries"`
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		states := map[string]int{}
		for _, d := range list.Deliveries {
			states[fmt.Sprintf("%s/%s/attempts=%d", d.DestinationType, d.Status, d.Attempts)]++
		}
		tw.mu.Lock()
		defer tw.mu.Unlock()
		t.Logf("deliveries API (last poll): %v; fake Twilio: %d requests, %d throttled, %d numbers sent to",
			states, tw.requests, tw.throttled, len(tw.sent))
	})
	waitFor(t, pick(60*time.Second, 3*time.Minute), "every SMS delivered", func() bool {
		if c.do(t, http.MethodGet, "/api/v1/orgs/throttle/deliveries?limit=1000", tn.token, nil, &list) != http.StatusOK {
			return false
		}
		delivered := 0
		for _, d := range list.Deliveries {
			if d.DestinationType == "twilio" && d.Status == "delivered" {
				delivered++
			}
		}
		return delivered == challenges
	})
	elapsed := time.Since(began)

	tw.mu.Lock()
	bad, throttled, requests := tw.bad, tw.throttled, tw.requests
	tw.mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("malformed Twilio requests: %v", bad)
	}
	for _, m := range mobiles {
		if n := tw.sentTo(m); n != 1 {
			t.Errorf("%s: %d SMS created, want exactly 1", m, n)
		}
	}
	if throttled != throttle {
		t.Errorf("the fake throttled %d requests, want %d", throttled, throttle)
	}
	attempts, retried := 0, 0
	var retriedID string
	for _, d := range list.Deliveries {
		if d.DestinationType != "twilio" {
			continue
		}
		attempts += d.Attempts
		if d.Attempts > 1 {
			retried++
			retriedID = d.ID
		}
	}
	if attempts != challenges+throttle {
		t.Errorf("deliveries API: %d attempts in all, want %d (one per challenge plus one per 429)", attempts, challenges+throttle)
	}
	if retried == 0 {
		t.Fatal("deliveries API: no delivery shows a retry")
	}
	var one deliveryView
	c.mustDo(t, http.MethodGet, "/api/v1/orgs/throttle/deliveries/"+retriedID, tn.token, nil, &one)
	if len(one.AttemptLog) < 2 || one.AttemptLog[0].StatusCode != http.StatusTooManyRequests ||
		one.AttemptLog[len(one.AttemptLog)-1].Outcome != "success" {
		t.Errorf("deliveries API: attempt log of a retried delivery = %+v, want 429 first and success last", one.AttemptLog)
	}
	t.Logf("provider throttling: %d challenges, %d Twilio requests (%d answered 429), every SMS sent exactly once, %d deliveries retried; all delivered %v after the first challenge",
		challenges, requests, throttled, retried, elapsed.Round(10*time.Millisecond))
}
