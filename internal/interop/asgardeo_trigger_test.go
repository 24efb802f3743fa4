package interop

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otphub/otphub/event"
)

// The Asgardeo trigger for Ballerina, as its source has it. Ballerina
// cannot be installed here, so trigger below makes exactly the requests
// the trigger makes and checks exactly what it checks, step by step, each
// step naming the source it reproduces:
//
//	T = ballerina-platform/asyncapi-triggers, asyncapi/asgardeo/ (ballerinax/trigger.asgardeo 0.8.0)
//	    listener.bal, utils.bal, dispatcher_service.bal, data_types.bal;
//	    native/asgardeo/src/main/java/io/crypto/{Decryption,Utils}.java
//	W = ballerina-platform/module-ballerina-websub, ballerina/
//	    subscriber_client.bal, http_service.bal, request_processor.bal,
//	    utils.bal, commons.bal
//
// The seed's handler is
//
//	listener asgardeo:Listener webhookListener = new (config, httpListener);
//	service asgardeo:NotificationService on webhookListener {
//	    remote function onSmsOtp(asgardeo:SmsOtpNotificationEvent event) returns error? { … }
//	}
//
// with config = {clientId, clientSecret, hubSecret, organization,
// tokenEndpointHost, callbackURL, hubURL, keyServiceURL}.

// listenerConfig is the trigger's ListenerConfig (T data_types.bal).
type listenerConfig struct {
	ClientID, ClientSecret string
	Organization           string
	TokenEndpointHost      string // fetchToken posts to <host>/oauth2/token
	CallbackURL            string
	HubURL                 string
	KeyServiceURL          string
}

// smsOtpEvent is what onSmsOtp receives: SmsOtpNotificationEvent
// {eventData: SmsOtpNotificationData, securityData: GenericSecurityData}.
type smsOtpEvent struct {
	// securityData
	Aud, Iss, Jti string
	Iat           int64
	// eventData
	OrganizationID                        int64
	OrganizationName, SendTo, MessageBody string
	// How the delivery came: decrypted or in clear, and its raw body.
	Encrypted bool
	Raw       []byte
}

// trigger is one running Listener with its NotificationService.
type trigger struct {
	t     *testing.T
	cfg   listenerConfig
	http  *http.Client
	token string
	key   string // decryptionKey.key (T listener.bal init → setOrgInfo)
	algo  string

	mu            sync.Mutex
	verifications []url.Values
	denials       []url.Values
	dropped       int // deliveries verifyContent refused (answered 202, never dispatched)
	refused       []string
	events        chan smsOtpEvent
}

// newTrigger runs Listener.init (T listener.bal init): fetchToken, then
// fetchDecryptionKey(keyServiceURL, token, organization, 0); either failing
// fails the listener. srv is the websub:Listener's HTTP listener, whose
// URL is config.callbackURL.
func newTrigger(t *testing.T, cfg listenerConfig) (*trigger, error) {
	tr := &trigger{t: t, cfg: cfg, http: &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // Ballerina's http:Client does not follow redirects by default
	}}, events: make(chan smsOtpEvent, 16)}
	tok, err := tr.fetchToken()
	if err != nil {
		return nil, fmt.Errorf("fetchToken: %w", err)
	}
	tr.token = tok
	kd, err := tr.fetchDecryptionKey(0)
	if err != nil {
		return nil, fmt.Errorf("fetchDecryptionKey: %w", err)
	}
	tr.key, tr.algo = kd["key"], kd["algo"]
	return tr, nil
}

// fetchToken (T utils.bal): POST <tokenEndpointHost>/oauth2/token with
// Authorization: Basic base64("<id>:<secret>"), Content-Type:
// application/json and the JSON body {"grant_type":"client_credentials"};
// the answer binds to json and access_token must be a string.
func (tr *trigger) fetchToken() (string, error) {
	req, _ := http.NewRequest(http.MethodPost, tr.cfg.TokenEndpointHost+"/oauth2/token",
		strings.NewReader(`{"grant_type":"client_credentials"}`))
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(tr.cfg.ClientID+":"+tr.cfg.ClientSecret)))
	req.Header.Set("Content-Type", "application/json")
	var resp map[string]any
	if err := tr.bindJSON(req, &resp); err != nil {
		return "", err
	}
	tok, ok := resp["access_token"].(string)
	if !ok {
		return "", errors.New("access_token is not a string")
	}
	return tok, nil
}

// fetchDecryptionKey (T utils.bal): GET <keyServiceURL>/crypto/<org>/keys/dec/<attempt>
// with Authorization: Bearer <token>, bound to the closed record KeyData
// {| string key; string 'type; string status; string createdAt; string
// expiry; string algo; string size; string reason?; |} (T data_types.bal):
// every field present and a string, reason optional, nothing else.
func (tr *trigger) fetchDecryptionKey(attempt int) (map[string]string, error) {
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/crypto/%s/keys/dec/%d", tr.cfg.KeyServiceURL, tr.cfg.Organization, attempt), nil)
	req.Header.Set("Authorization", "Bearer "+tr.token)
	var raw map[string]any
	if err := tr.bindJSON(req, &raw); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range []string{"key", "type", "status", "createdAt", "expiry", "algo", "size"} {
		v, ok := raw[f].(string)
		if !ok {
			return nil, fmt.Errorf("KeyData.%s is missing or not a string: %v", f, raw[f])
		}
		out[f] = v
	}
	for f, v := range raw {
		if _, known := out[f]; known {
			continue
		}
		if _, isString := v.(string); f != "reason" || !isString {
			return nil, fmt.Errorf("KeyData is a closed record: field %q is not allowed", f)
		}
	}
	return out, nil
}

// bindJSON is Ballerina's http:Client data binding to a non-Response type:
// a status outside 2xx is an error (http:ClientRequestError /
// RemoteServerError), and so is a body that is not JSON.
func (tr *trigger) bindJSON(req *http.Request, out any) error {
	resp, err := tr.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s %s answered %d: %s", req.Method, req.URL.Path, resp.StatusCode, body)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	return dec.Decode(out)
}

// start is Listener.'start (T listener.bal): hubSecret = md5(callbackURL)
// as lower-case hex (crypto:hashMd5, toBase16), then the websub listener
// subscribes with target [hubURL, "<org>-NOTIFICATIONS"], callback
// callbackURL, secret hubSecret, httpConfig {auth: {token}} and no
// leaseSeconds: W subscriber_client.bal subscribe posts the form
// hub.mode, hub.topic, hub.callback, hub.secret (hub.lease_seconds only when
// set) as application/x-www-form-urlencoded, with the bearer token; a 307
// or 308 and any status outside [200, 300) fail the start (W
// processHubResponse, isSuccessStatusCode).
func (tr *trigger) start() error {
	form := url.Values{}
	form.Set("hub.mode", "subscribe")
	form.Set("hub.topic", tr.cfg.Organization+"-NOTIFICATIONS")
	form.Set("hub.callback", tr.cfg.CallbackURL)
	form.Set("hub.secret", tr.hubSecret())
	req, _ := http.NewRequest(http.MethodPost, tr.cfg.HubURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+tr.token)
	resp, err := tr.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusTemporaryRedirect || resp.StatusCode == http.StatusPermanentRedirect {
		return fmt.Errorf("redirection response received for subscription change request")
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return fmt.Errorf("Error in request: Mode[subscribe] at Hub[%s] - %s", tr.cfg.HubURL, body)
	}
	return nil
}

func (tr *trigger) hubSecret() string {
	sum := md5.Sum([]byte(tr.cfg.CallbackURL))
	return hex.EncodeToString(sum[:])
}

// ServeHTTP is the websub HttpService at the callback (W http_service.bal).
// The trigger attaches it with a callback and appendServicePath false and
// no name, so it is served at "/" of the listener's port (W sub_listener.bal
// executeAttach, shouldUseGeneratedServicePath, retrieveCompleteServicePath:
// COMMON_SERVICE_PATH); its resources are `post .` and `get .`, nothing
// below.
func (tr *trigger) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodGet:
		tr.serveGet(w, r)
	case http.MethodPost:
		tr.servePost(w, r)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// serveGet: hub.mode subscribe or unsubscribe needs hub.challenge and
// hub.topic (else 400); the DispatcherService's onSubscriptionVerification
// accepts every verification, so the answer is 200 with the challenge as
// its text body (W request_processor.bal processSubscriptionVerification).
// denied is acknowledged with 200; any other mode is 400.
func (tr *trigger) serveGet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch q.Get("hub.mode") {
	case "subscribe", "unsubscribe":
		if !q.Has("hub.challenge") || !q.Has("hub.topic") {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		tr.mu.Lock()
		tr.verifications = append(tr.verifications, q)
		tr.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, q.Get("hub.challenge"))
	case "denied":
		tr.mu.Lock()
		tr.denials = append(tr.denials, q)
		tr.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	default:
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "The request does not include valid `hub.mode` form param.")
	}
}

// servePost: the answer starts as 202; verifyContent (W utils.bal) with the
// configured secret: X-Hub-Signature must be there, "<method>=<hex>" with
// method sha1|sha256|sha384|sha512 and hex the lower-case HMAC keyed by
// the secret's bytes over the body text, else the delivery is dropped (and
// still answered 202). Then the content type must be application/json
// (W request_processor.bal processEventNotification; others: xml, text,
// octet-stream, form are read too, anything else is 400) and the content
// goes to the DispatcherService's onEventNotification; whatever that
// returns, the answer is 202 (an error is acknowledged too).
func (tr *trigger) servePost(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	if !verifyContent(r.Header.Get("X-Hub-Signature"), tr.hubSecret(), body) {
		tr.mu.Lock()
		tr.dropped++
		tr.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		return
	}
	media, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError) // http:parseHeader failed: `check` returns the error
		return
	}
	if media != "application/json" {
		tr.refuse("Unrecognized content-type [" + media + "] found")
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var content any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&content); err != nil {
		w.WriteHeader(http.StatusInternalServerError) // getJsonPayload failed
		return
	}
	if err := tr.onEventNotification(content, body); err != nil {
		tr.refuse(err.Error())
	}
	w.WriteHeader(http.StatusAccepted)
}

func (tr *trigger) refuse(why string) {
	tr.mu.Lock()
	tr.refused = append(tr.refused, why)
	tr.mu.Unlock()
}

func verifyContent(header, secret string, body []byte) bool {
	if strings.TrimSpace(header) == "" {
		return false
	}
	method := strings.Split(header, "=")[0]
	signature := strings.ReplaceAll(header, method+"=", "")
	var h func() hash.Hash
	switch method {
	case "sha1":
		h = sha1.New
	case "sha256":
		h = sha256.New
	case "sha384":
		h = sha512.New384
	case "sha512":
		h = sha512.New
	default:
		return false // retrieveContentHash errors: `check` fails the request
	}
	m := hmac.New(h, []byte(secret))
	m.Write(body)
	return signature == hex.EncodeToString(m.Sum(nil))
}

// onEventNotification (T dispatcher_service.bal): the content is first
// bound to AsgardeoPayload {*GenericSecurityData; EventDetail event} with
// EventDetail {string payload; string payloadCryptoKey; string
// ivParameterSpec}; if that fails the content is taken as unencrypted,
// otherwise event is decrypted (decryptEvent) and the payload rebuilt as
// {iss, jti, iat, aud, event: <decrypted JSON>}. Then matchRemoteFunc.
func (tr *trigger) onEventNotification(content any, raw []byte) error {
	m, ok := content.(map[string]any)
	if !ok {
		return errors.New("content is not a JSON object")
	}
	if detail, ok := eventDetail(m); ok && securityDataBinds(m) {
		plain, err := tr.decryptEvent(detail)
		if err != nil {
			return err
		}
		var ev any
		dec := json.NewDecoder(bytes.NewReader(plain))
		dec.UseNumber()
		if err := dec.Decode(&ev); err != nil {
			return fmt.Errorf("decrypted event: fromJsonString: %w", err)
		}
		rebuilt := map[string]any{"event": ev}
		for _, k := range []string{"iss", "jti", "iat", "aud"} {
			if v, ok := m[k]; ok {
				rebuilt[k] = v
			}
		}
		return tr.matchRemoteFunc(rebuilt, true, raw)
	}
	return tr.matchRemoteFunc(m, false, raw)
}

// eventDetail binds m.event to EventDetail (an open record of three
// required strings).
func eventDetail(m map[string]any) (event.EncryptedEventDetail, bool) {
	e, ok := m["event"].(map[string]any)
	if !ok {
		return event.EncryptedEventDetail{}, false
	}
	p, ok1 := e["payload"].(string)
	k, ok2 := e["payloadCryptoKey"].(string)
	iv, ok3 := e["ivParameterSpec"].(string)
	return event.EncryptedEventDetail{Payload: p, PayloadCryptoKey: k, IVParameterSpec: iv}, ok1 && ok2 && ok3
}

// securityDataBinds: GenericSecurityData {string aud?; string iss?; int
// iat?; string jti?}: optional, but typed when present.
func securityDataBinds(m map[string]any) bool {
	for _, k := range []string{"aud", "iss", "jti"} {
		if v, ok := m[k]; ok {
			if _, isString := v.(string); !isString {
				return false
			}
		}
	}
	if v, ok := m["iat"]; ok {
		if _, isInt := ballerinaInt(v); !isInt {
			return false
		}
	}
	return true
}

// ballerinaInt: a JSON number Ballerina parses as int (no fraction or
// exponent).
func ballerinaInt(v any) (int64, bool) {
	n, ok := v.(json.Number)
	if !ok || strings.ContainsAny(n.String(), ".eE") {
		return 0, false
	}
	i, err := n.Int64()
	return i, err == nil
}

// decryptEvent (T dispatcher_service.bal, Decryption.java): the symmetric
// key is RSA-decrypted ("RSA" = RSA/ECB/PKCS1Padding) from the base64
// payloadCryptoKey with the base64 PKCS#8 decryptionKey (Utils.java
// getPrivateKey) and base64-encoded; the payload is base64 AES/GCM/NoPadding
// (128-bit tag) under that key with the base64 ivParameterSpec. On failure
// the previous key (keys/dec/1) is tried, then a new token and the current
// key again.
func (tr *trigger) decryptEvent(d event.EncryptedEventDetail) ([]byte, error) {
	plain, err := decryptWith(tr.key, d)
	if err == nil {
		return plain, nil
	}
	prev, err := tr.fetchDecryptionKey(1)
	if err != nil {
		return nil, err
	}
	if plain, err := decryptWith(prev["key"], d); err == nil {
		return plain, nil
	}
	if tr.token, err = tr.fetchToken(); err != nil {
		return nil, err
	}
	cur, err := tr.fetchDecryptionKey(0)
	if err != nil {
		return nil, err
	}
	tr.key = cur["key"]
	return decryptWith(tr.key, d)
}

func decryptWith(key string, d event.EncryptedEventDetail) ([]byte, error) {
	der, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return nil, err
	}
	p, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	priv, ok := p.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("KeyFactory.getInstance(\"RSA\"): not an RSA key")
	}
	return event.DecryptAsgardeoEvent(d, priv)
}

// matchRemoteFunc (T dispatcher_service.bal): payload.event is cast to
// map<json>; for each event URI, GenericSecurityData is bound from the
// payload and, for urn:ietf:params:notifications:smsOtp,
// SmsOtpNotificationData {int organizationId?; string organizationName?;
// string sendTo?; string messageBody?} from its value; then onSmsOtp. Other
// URIs are ignored.
func (tr *trigger) matchRemoteFunc(payload map[string]any, encrypted bool, raw []byte) error {
	events, ok := payload["event"].(map[string]any)
	if !ok {
		return errors.New("payload.event is not a map<json>")
	}
	for uri, data := range events {
		if !securityDataBinds(payload) {
			return errors.New("GenericSecurityData does not bind")
		}
		if uri != "urn:ietf:params:notifications:smsOtp" {
			continue
		}
		d, ok := data.(map[string]any)
		if !ok {
			return errors.New("SmsOtpNotificationData does not bind: not an object")
		}
		ev := smsOtpEvent{Encrypted: encrypted, Raw: raw}
		for k, dst := range map[string]*string{"organizationName": &ev.OrganizationName, "sendTo": &ev.SendTo, "messageBody": &ev.MessageBody,
			"aud": &ev.Aud, "iss": &ev.Iss, "jti": &ev.Jti} {
			src := d
			if k == "aud" || k == "iss" || k == "jti" {
				src = payload
			}
			if v, present := src[k]; present {
				s, isString := v.(string)
				if !isString {
					return fmt.Errorf("%s does not bind to string", k)
				}
				*dst = s
			}
		}
		if v, present := d["organizationId"]; present {
			n, isInt := ballerinaInt(v)
			if !isInt {
				return errors.New("organizationId does not bind to int")
			}
			ev.OrganizationID = n
		}
		if v, present := payload["iat"]; present {
			ev.Iat, _ = ballerinaInt(v)
		}
		tr.events <- ev // onSmsOtp
	}
	return nil
}

func (tr *trigger) next(t *testing.T) smsOtpEvent {
	t.Helper()
	select {
	case ev := <-tr.events:
		return ev
	case <-time.After(30 * time.Second):
		tr.mu.Lock()
		defer tr.mu.Unlock()
		t.Fatalf("onSmsOtp was not called within 30 s (dropped by verifyContent: %d, refused: %v)", tr.dropped, tr.refused)
	}
	return smsOtpEvent{}
}

// TestAsgardeoTriggerUnchanged runs the seed's handler, as the trigger's
// source makes it, against the whole otphub: the listener starts (token,
// key service, subscription), an OTP reaches onSmsOtp in clear, then
// encrypted once the org turns payload encryption on, the subscription
// renews itself (the trigger sends no lease and never renews), and a
// restart of the handler re-subscribes in place.
func TestAsgardeoTriggerUnchanged(t *testing.T) {
	o := start(t)
	const org = "acme"
	orgID, c, admin := o.org(org, "subscribe")

	// The websub listener's HTTP service at the callback URL; the running
	// Listener (the current process of the handler) answers.
	var running atomic.Pointer[trigger]
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tr := running.Load(); tr != nil {
			tr.ServeHTTP(w, r)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer cb.Close()
	cfg := listenerConfig{
		ClientID: c.ClientID, ClientSecret: c.ClientSecret, Organization: org,
		TokenEndpointHost: o.srv.URL, CallbackURL: cb.URL + "/",
		HubURL: o.srv.URL + "/hub", KeyServiceURL: o.srv.URL,
	}
	tr, err := newTrigger(t, cfg)
	if err != nil {
		t.Fatalf("Listener.init failed: %v", err)
	}
	if tr.algo != "RSA" {
		t.Errorf("KeyData.algo = %q", tr.algo)
	}
	running.Store(tr)
	if err := tr.start(); err != nil {
		t.Fatalf("Listener.start failed: %v", err)
	}

	// The subscription is verified; the trigger asked for no lease, so it
	// is auto-renewing with the default lease.
	var subs struct {
		Subscriptions []struct {
			ID, Callback, State string
			LeaseSeconds        int
			AutoRenew           bool
			HasSecret           bool
		}
	}
	eventually(t, "the subscription to be verified", func() bool {
		o.call(http.MethodGet, "/api/v1/orgs/"+org+"/subscriptions", admin, nil, &subs, http.StatusOK)
		return len(subs.Subscriptions) == 1 && subs.Subscriptions[0].State == "active"
	})
	if s := subs.Subscriptions[0]; s.Callback != cfg.CallbackURL || !s.AutoRenew || !s.HasSecret || s.LeaseSeconds != 864000 {
		t.Fatalf("subscription %+v: want the callback, a secret, the default lease and auto-renew", s)
	}
	tr.mu.Lock()
	v := tr.verifications[0]
	tr.mu.Unlock()
	if v.Get("hub.topic") != org+"-NOTIFICATIONS" || v.Get("hub.lease_seconds") != "864000" {
		t.Errorf("verification %v", v)
	}

	// An OTP, in clear.
	o.challenge(org, admin, "+94771234567")
	ev := tr.next(t)
	if ev.Encrypted || ev.SendTo != "+94771234567" || ev.OrganizationName != org || ev.OrganizationID != orgID ||
		!strings.Contains(ev.MessageBody, "one-time password") || ev.Jti == "" || ev.Iss == "" || ev.Iat < 1e12 ||
		ev.Aud != o.srv.URL+"/topics/"+org+"/NOTIFICATIONS" {
		t.Fatalf("onSmsOtp got %+v", ev)
	}

	// Payload encryption on: the same handler decrypts with the key it
	// fetched at init; the body carries neither the number nor the OTP.
	o.call(http.MethodPut, "/api/v1/orgs/"+org+"/payload-encryption", admin, map[string]bool{"enabled": true}, nil, http.StatusOK)
	o.challenge(org, admin, "+94771234568")
	ev = tr.next(t)
	if !ev.Encrypted || ev.SendTo != "+94771234568" || ev.OrganizationID != orgID || !strings.Contains(ev.MessageBody, "one-time password") {
		t.Fatalf("onSmsOtp got %+v", ev)
	}
	if bytes.Contains(ev.Raw, []byte("94771234568")) || bytes.Contains(ev.Raw, []byte("one-time password")) {
		t.Fatalf("an encrypted delivery shows the OTP message in clear: %s", ev.Raw)
	}

	// The org rotates its key: the running handler still holds the old one,
	// fails with it, tries the previous key (its own), then fetches a new
	// token and the current key, as decryptEvent does — and decrypts.
	oldKey := tr.key
	var settings struct {
		Enabled       bool
		KeyGeneration int64
	}
	o.call(http.MethodPost, "/api/v1/orgs/"+org+"/payload-encryption/rotate", admin, nil, &settings, http.StatusOK)
	if !settings.Enabled || settings.KeyGeneration != 1 {
		t.Fatalf("after a rotation: %+v", settings)
	}
	o.challenge(org, admin, "+94771234560")
	ev = tr.next(t)
	if !ev.Encrypted || ev.SendTo != "+94771234560" {
		t.Fatalf("after a rotation onSmsOtp got %+v", ev)
	}
	if tr.key == oldKey {
		t.Error("the handler decrypted a delivery under the new key with the old one")
	}
	o.call(http.MethodPut, "/api/v1/orgs/"+org+"/payload-encryption", admin, map[string]bool{"enabled": false}, nil, http.StatusOK)

	// The handler restarts: Listener.init and start again, same callback.
	tr2, err := newTrigger(t, cfg)
	if err != nil {
		t.Fatalf("Listener.init after a restart: %v", err)
	}
	if tr2.key != tr.key {
		t.Error("the key service returned another key after a restart")
	}
	running.Store(tr2)
	if err := tr2.start(); err != nil {
		t.Fatalf("Listener.start after a restart: %v", err)
	}
	eventually(t, "the re-subscription to be verified", func() bool {
		tr2.mu.Lock()
		defer tr2.mu.Unlock()
		return len(tr2.verifications) == 1
	})
	o.challenge(org, admin, "+94771234569")
	if ev := tr2.next(t); ev.SendTo != "+94771234569" || ev.Encrypted {
		t.Fatalf("after a restart onSmsOtp got %+v", ev)
	}
	o.call(http.MethodGet, "/api/v1/orgs/"+org+"/subscriptions", admin, nil, &subs, http.StatusOK)
	if len(subs.Subscriptions) != 1 {
		t.Fatalf("%d subscriptions after a restart, want the one renewed in place", len(subs.Subscriptions))
	}

	for _, x := range []*trigger{tr, tr2} {
		x.mu.Lock()
		if x.dropped != 0 || len(x.refused) != 0 || len(x.denials) != 0 {
			t.Errorf("dropped %d (signature), refused %v, denied %v", x.dropped, x.refused, x.denials)
		}
		x.mu.Unlock()
	}
}

// TestAsgardeoTriggerKeyService: what the key service answers besides the
// happy path: the previous key (1) is the current one, other indexes 404,
// another org's client 403, no token 401, and the key decrypts what the
// hub encrypts for that org only.
func TestAsgardeoTriggerKeyService(t *testing.T) {
	o := start(t)
	_, a, _ := o.org("org-a", "subscribe")
	_, b, _ := o.org("org-b", "subscribe")
	get := func(token, path string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, o.srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	ta, tb := o.token(a.ClientID, a.ClientSecret), o.token(b.ClientID, b.ClientSecret)
	code, cur := get(ta, "/crypto/org-a/keys/dec/0")
	if code != 200 {
		t.Fatalf("keys/dec/0: %d %v", code, cur)
	}
	if code, prev := get(ta, "/crypto/org-a/keys/dec/1"); code != 200 || prev["key"] != cur["key"] {
		t.Errorf("keys/dec/1 before any rotation: %d, the current key %v", code, prev["key"] == cur["key"])
	}
	if code, _ := get(ta, "/crypto/org-a/keys/dec/2"); code != 404 {
		t.Errorf("keys/dec/2: %d, want 404", code)
	}
	if code, m := get(tb, "/crypto/org-a/keys/dec/0"); code != 403 {
		t.Errorf("another org's token: %d %v, want 403", code, m)
	}
	if code, _ := get("", "/crypto/org-a/keys/dec/0"); code != 401 {
		t.Errorf("no token: %d, want 401", code)
	}
	if _, other := get(tb, "/crypto/org-b/keys/dec/0"); other["key"] == cur["key"] {
		t.Error("two orgs share a key")
	}
	if cur["size"] != "2048" || cur["type"] != "decryptionKey" || cur["status"] != "active" {
		t.Errorf("KeyData %v", cur)
	}
	if _, err := time.Parse(time.RFC3339, cur["createdAt"].(string)); err != nil {
		t.Errorf("createdAt %v: %v", cur["createdAt"], err)
	}

	// A rotation: 0 is a new key, 1 the one before, marked expired.
	admin := o.token(o.srv.AdminClientID, o.srv.AdminClientSecret)
	o.call(http.MethodPost, "/api/v1/orgs/org-a/payload-encryption/rotate", admin, nil, nil, http.StatusOK)
	_, now := get(ta, "/crypto/org-a/keys/dec/0")
	_, prev := get(ta, "/crypto/org-a/keys/dec/1")
	if now["key"] == cur["key"] || prev["key"] != cur["key"] || now["status"] != "active" || prev["status"] != "expired" {
		t.Errorf("after a rotation: current changed %v, previous is the old %v, statuses %v/%v",
			now["key"] != cur["key"], prev["key"] == cur["key"], now["status"], prev["status"])
	}
	if code, _ := get(tb, "/api/v1/orgs/org-a/payload-encryption/rotate"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET rotate: %d", code)
	}

	// The settings API: admin only, and a body without enabled is refused
	// naming the field.
	put := func(token, body string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPut, o.srv.URL+"/api/v1/orgs/org-a/payload-encryption", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	if code, m := put(ta, `{"enabled":true}`); code != http.StatusForbidden {
		t.Errorf("a subscribe-only client turned encryption on: %d %v", code, m)
	}
	if code, m := put(admin, `{}`); code != http.StatusBadRequest || m["error"] != "invalid_field" || m["field"] != "enabled" {
		t.Errorf("PUT {}: %d %v", code, m)
	}
	if code, m := put(admin, `{"enabled":"yes"}`); code != http.StatusBadRequest || m["error"] != "invalid_json" {
		t.Errorf(`PUT {"enabled":"yes"}: %d %v`, code, m)
	}
	if code, m := put(admin, `{"enabled":true}`); code != http.StatusOK || m["enabled"] != true || m["keyGeneration"] != float64(1) || m["keyCreatedAt"] == nil {
		t.Errorf("PUT enabled: %d %v", code, m)
	}
}

// eventually polls cond until it holds or 30 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
