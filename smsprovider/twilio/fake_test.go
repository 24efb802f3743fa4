package twilio

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

const (
	testSID   = "AC0123456789abcdef0123456789abcdef"
	testToken = "0123456789abcdef0123456789abcdef"
	testFrom  = "+15005550006"
	testMGSID = "MG0123456789abcdef0123456789abcdef"
)

// Magic recipient numbers the fake answers with Twilio's errors (after
// Twilio's own test credentials' magic numbers).
const (
	toInvalid      = "+15005550001" // 21211
	toRegion       = "+15005550002" // 21408
	toUnsubscribed = "+15005550004" // 21610
	toPremium      = "+15005550003" // 21268
)

// fakeTwilio implements POST /2010-04-01/Accounts/{sid}/Messages.json as
// Twilio documents it: HTTP Basic auth with the account SID and auth token,
// the request validated against Twilio's own OpenAPI description, 201 with
// a Message resource, Twilio-shaped error bodies, throttling 429/20429.
type fakeTwilio struct {
	t      testing.TB
	router routers.Router

	mu        sync.Mutex
	forms     []url.Values
	invalid   []string // validation failures of requests we sent
	mode      string   // "", "throttle", "error500", "html502", "auth"
	userAgent string
}

func newFakeTwilio(t testing.TB) (*fakeTwilio, *httptest.Server) {
	t.Helper()
	f := &fakeTwilio{t: t}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)

	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile("testdata/twilio-messages-openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	servers := openapi3.Servers{{URL: srv.URL}}
	doc.Servers = servers
	for _, item := range doc.Paths.Map() {
		item.Servers = servers
	}
	if f.router, err = legacy.NewRouter(doc); err != nil {
		t.Fatal(err)
	}
	return f, srv
}

func (f *fakeTwilio) setMode(m string) {
	f.mu.Lock()
	f.mode = m
	f.mu.Unlock()
}

func twilioError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg,
		"more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code), "status": status})
}

func (f *fakeTwilio) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A server-side request has no scheme and host in its URL; the router
	// matches them against the document's servers.
	r.URL.Scheme, r.URL.Host = "http", r.Host
	route, params, err := f.router.FindRoute(r)
	if err != nil {
		twilioError(w, http.StatusNotFound, 20404, "The requested resource "+r.URL.Path+" was not found: "+err.Error())
		return
	}
	user, pass, _ := r.BasicAuth()
	authOK := subtle.ConstantTimeCompare([]byte(user), []byte(testSID)) == 1 &&
		subtle.ConstantTimeCompare([]byte(pass), []byte(testToken)) == 1 && params["AccountSid"] == user
	err = openapi3filter.ValidateRequest(r.Context(), &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: func(context.Context, *openapi3filter.AuthenticationInput) error {
			if !authOK {
				return errors.New("bad credentials")
			}
			return nil
		}},
	})
	var se *openapi3filter.SecurityRequirementsError
	if errors.As(err, &se) || !authOK {
		twilioError(w, http.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	f.mu.Lock()
	mode := f.mode
	f.userAgent = r.Header.Get("User-Agent")
	if err != nil {
		f.invalid = append(f.invalid, err.Error())
	}
	f.mu.Unlock()
	if err != nil {
		twilioError(w, http.StatusBadRequest, 21200, "Invalid request: "+err.Error())
		return
	}
	// The body was consumed by the validator, which restores it.
	if err := r.ParseForm(); err != nil {
		twilioError(w, http.StatusBadRequest, 21200, err.Error())
		return
	}
	form := r.PostForm
	f.mu.Lock()
	f.forms = append(f.forms, form)
	f.mu.Unlock()

	// Twilio's own rules beyond the schema.
	if form.Get("From") == "" && form.Get("MessagingServiceSid") == "" {
		twilioError(w, http.StatusBadRequest, 21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message")
		return
	}
	if form.Get("Body") == "" {
		twilioError(w, http.StatusBadRequest, 21602, "Message body is required.")
		return
	}
	if vp := form.Get("ValidityPeriod"); vp != "" {
		if n, err := strconv.Atoi(vp); err != nil || n < 1 || n > 36000 {
			twilioError(w, http.StatusBadRequest, 21609, "Invalid ValidityPeriod")
			return
		}
	}
	switch mode {
	case "throttle":
		w.Header().Set("Retry-After", "2")
		twilioError(w, http.StatusTooManyRequests, 20429, "Too Many Requests")
		return
	case "error500":
		twilioError(w, http.StatusInternalServerError, 20500, "Internal Server Error")
		return
	case "garbled201":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"sid": "SM`))
		return
	case "html502":
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte("<html><body>Bad Gateway</body></html>"))
		return
	}
	switch form.Get("To") {
	case toInvalid:
		twilioError(w, http.StatusBadRequest, 21211, "The 'To' number "+toInvalid+" is not a valid phone number.")
		return
	case toRegion:
		twilioError(w, http.StatusBadRequest, 21408, "Permission to send an SMS has not been enabled for the region indicated by the 'To' number")
		return
	case toUnsubscribed:
		twilioError(w, http.StatusBadRequest, 21610, "Attempt to send to unsubscribed recipient")
		return
	case toPremium:
		twilioError(w, http.StatusBadRequest, 21268, "Premium numbers are not permitted")
		return
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	sid := "SM" + hex.EncodeToString(b)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"account_sid": user, "api_version": "2010-04-01", "body": form.Get("Body"), "direction": "outbound-api",
		"from": nullable(form.Get("From")), "messaging_service_sid": nullable(form.Get("MessagingServiceSid")),
		"num_segments": "1", "num_media": "0", "sid": sid, "status": "queued", "to": form.Get("To"),
		"error_code": nil, "error_message": nil,
		"uri": "/2010-04-01/Accounts/" + user + "/Messages/" + sid + ".json",
	})
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (f *fakeTwilio) lastForm(t testing.TB) url.Values {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.invalid) > 0 {
		t.Fatalf("requests failed Twilio's OpenAPI validation: %s", strings.Join(f.invalid, "; "))
	}
	if len(f.forms) == 0 {
		t.Fatal("the fake received no message")
	}
	return f.forms[len(f.forms)-1]
}
