package interop

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// TestHubAnswersMatchOpenAPI: the 202 of subscribe, unsubscribe and a
// CloudEvents publish, and the key service's answer, are what
// docs/openapi.yaml declares (validated with kin-openapi).
func TestHubAnswersMatchOpenAPI(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromFile("../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	o := start(t)
	doc.Servers = openapi3.Servers{{URL: o.srv.URL}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	const org = "specorg"
	orgID, c, _ := o.org(org, "subscribe", "publish")
	tok := o.token(c.ClientID, c.ClientSecret)
	rcv := newReceiver(t)

	check := func(req *http.Request, body []byte, want int) {
		t.Helper()
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, got)
		}
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatal(err)
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Errorf("%s %s: the request does not match docs/openapi.yaml: %v", req.Method, req.URL.Path, err)
		}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
			Body: io.NopCloser(bytes.NewReader(got)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
		if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
			t.Errorf("%s %s: the %d answer %s does not match docs/openapi.yaml: %v", req.Method, req.URL.Path, resp.StatusCode, got, err)
		}
	}
	form := func(mode string, extra url.Values) (*http.Request, []byte) {
		f := url.Values{"hub.mode": {mode}, "hub.topic": {org + "-NOTIFICATIONS"}, "hub.callback": {rcv.URL + "/hook"}}
		for k, v := range extra {
			f[k] = v
		}
		b := []byte(f.Encode())
		req, _ := http.NewRequest(http.MethodPost, o.srv.URL+"/hub", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return req, b
	}
	req, b := form("subscribe", url.Values{"otphub.generate_secret": {"whsec"}})
	check(req, b, http.StatusAccepted)
	req, b = form("unsubscribe", nil)
	check(req, b, http.StatusAccepted)

	ce := []byte(`{"specversion":"1.0","id":"ext-42","source":"urn:producer:spec","type":"urn:ietf:params:notifications:smsOtp",` +
		`"datacontenttype":"application/json","data":{"organizationId":` + strconv.FormatInt(orgID, 10) + `,"organizationName":"` + org +
		`","sendTo":"+94771234567","messageBody":"Your code is 123456"}}`)
	req, _ = http.NewRequest(http.MethodPost, o.srv.URL+"/hub?hub.mode=publish&hub.topic="+org+"-NOTIFICATIONS", bytes.NewReader(ce))
	req.Header.Set("Content-Type", "application/cloudevents+json")
	check(req, ce, http.StatusAccepted)

	req, _ = http.NewRequest(http.MethodGet, o.srv.URL+"/crypto/"+org+"/keys/dec/0", strings.NewReader(""))
	check(req, nil, http.StatusOK)
}
