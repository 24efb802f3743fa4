package event

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func keyfuncFor(t testing.TB, kid string, key crypto.Signer) jwt.Keyfunc {
	t.Helper()
	jwk, err := NewJWK(kid, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := MarshalJWKS(&JWKS{Keys: []JWK{jwk}})
	if err != nil {
		t.Fatal(err)
	}
	set, err := ParseJWKS(raw)
	if err != nil {
		t.Fatal(err)
	}
	return set.Keyfunc()
}

func TestRoundTripEveryFormat(t *testing.T) {
	ecKey := loadKey(t, "ec-test-key.pem")
	rsaKey := loadKey(t, "rsa-test-key.pem")
	keys := map[string]jwt.Keyfunc{}
	ecSet, _ := NewJWK("ec", ecKey.Public())
	rsaSet, _ := NewJWK("rsa", rsaKey.Public())
	both := &JWKS{Keys: []JWK{ecSet, rsaSet}}
	keys["both"] = both.Keyfunc()

	for _, ev := range []*SmsOtpNotificationEvent{seedEvent(t), otphubEvent()} {
		// The SET forms carry whole seconds.
		inSeconds := *ev
		inSeconds.IssuedAt = ev.IssuedAt.Truncate(time.Second)
		inSeconds.ExpiresAt = ev.ExpiresAt.Truncate(time.Second)
		for _, tc := range []struct {
			f      Format
			signer *Signer
			want   SmsOtpNotificationEvent
		}{
			{FormatAsgardeo, nil, *ev},
			{FormatSET, nil, inSeconds},
			{FormatSETJWT, &Signer{Key: ecKey, KeyID: "ec"}, inSeconds},
			{FormatSETJWT, &Signer{Key: rsaKey, KeyID: "rsa"}, inSeconds},
			{FormatCloudEvents, nil, *ev},
		} {
			body, ct, err := Encode(tc.f, ev, tc.signer)
			if err != nil {
				t.Fatalf("%s: %v", tc.f, err)
			}
			if ct != ContentType(tc.f) {
				t.Errorf("%s: content type %q", tc.f, ct)
			}
			got, err := Decode(ct+"; charset=utf-8", body, keys["both"])
			if err != nil {
				t.Fatalf("%s: Decode: %v", tc.f, err)
			}
			if *got != tc.want {
				t.Errorf("%s round trip:\n got %+v\nwant %+v", tc.f, *got, tc.want)
			}
		}
		key, headers, value, err := EncodeBinary(ev)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeBinary(key, headers, value)
		if err != nil {
			t.Fatal(err)
		}
		if *got != *ev {
			t.Errorf("binary round trip:\n got %+v\nwant %+v", *got, *ev)
		}
	}
}

func TestCloudEventsSentAsPlainJSON(t *testing.T) {
	b, _ := MarshalCloudEvent(otphubEvent())
	if _, err := Decode("application/json", b, nil); err != nil {
		t.Fatal(err)
	}
}

func TestBinaryWithoutOptionalHeaders(t *testing.T) {
	ev := otphubEvent()
	key, headers, value, _ := EncodeBinary(ev)
	delete(headers, HeaderExpiryTime)
	delete(headers, HeaderAudience)
	delete(headers, HeaderContentType)
	got, err := DecodeBinary(nil, headers, value)
	if err != nil {
		t.Fatal(err)
	}
	if got.Audience != "" || !got.ExpiresAt.IsZero() {
		t.Errorf("derived aud %q / expiry %v from nothing", got.Audience, got.ExpiresAt)
	}
	if got.Expiry() != ev.IssuedAt.Add(DefaultOTPValidity) {
		t.Errorf("Expiry() = %v", got.Expiry())
	}
	_ = key
	// Header names are case-insensitive.
	upper := map[string]string{}
	for k, v := range headers {
		upper[strings.ToUpper(k)] = v
	}
	if _, err := DecodeBinary([]byte("acme-corp"), upper, value); err != nil {
		t.Fatal(err)
	}
}

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]Format{"": FormatAsgardeo, "asgardeo": FormatAsgardeo, "set": FormatSET,
		"set-jwt": FormatSETJWT, "cloudevents": FormatCloudEvents} {
		got, err := ParseFormat(in)
		if err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"json", "SET", "jwt", "cloudevent"} {
		if _, err := ParseFormat(bad); !errors.Is(err, ErrUnknownFormat) {
			t.Errorf("ParseFormat(%q): %v", bad, err)
		}
	}
	if _, _, err := Encode("xml", otphubEvent(), nil); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("Encode(xml): %v", err)
	}
	if _, _, err := Encode(FormatSETJWT, otphubEvent(), nil); err == nil {
		t.Error("Encode(set-jwt) without a signer succeeded")
	}
	if ContentType("nope") != "" {
		t.Error("ContentType of an unknown format")
	}
}

func TestDecodeRefusals(t *testing.T) {
	a, _ := MarshalAsgardeo(otphubEvent())
	tok, _ := SignSET(otphubEvent(), loadKey(t, "ec-test-key.pem"), "ec")
	for name, tc := range map[string]struct {
		ct   string
		body string
	}{
		"text/plain":        {"text/plain", string(a)},
		"bad media type":    {"application/json; ;;", string(a)},
		"jwt without keys":  {SETContentType, tok},
		"ambiguous JSON":    {"application/json", `{"event":{},"events":{}}`},
		"neither":           {"application/json", `{"iss":"x"}`},
		"array":             {"application/json", `[1]`},
		"empty":             {"", ``},
		"null":              {"application/json", `null`},
		"oversized":         {"application/json", `{"event":"` + strings.Repeat("a", MaxEventBytes) + `"}`},
		"cloudevents empty": {CloudEventsContentType, `{}`},
	} {
		if _, err := Decode(tc.ct, []byte(tc.body), nil); err == nil {
			t.Errorf("%s: Decode accepted it", name)
		}
	}
}

// mutate returns the seed's Asgardeo body with one top-level edit.
func mutateAsgardeo(t *testing.T, edit func(m map[string]any)) []byte {
	t.Helper()
	b, _ := MarshalAsgardeo(otphubEvent())
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func data(m map[string]any) map[string]any {
	return m["event"].(map[string]any)[SmsOtpEventURI].(map[string]any)
}

func TestUnmarshalAsgardeoStrict(t *testing.T) {
	cases := map[string]func(m map[string]any){
		"no iss":                 func(m map[string]any) { delete(m, "iss") },
		"no jti":                 func(m map[string]any) { delete(m, "jti") },
		"no iat":                 func(m map[string]any) { delete(m, "iat") },
		"iat string":             func(m map[string]any) { m["iat"] = "1659732032884" },
		"iat float":              func(m map[string]any) { m["iat"] = 1659732032884.5 },
		"iat in seconds":         func(m map[string]any) { m["iat"] = 1659732032 },
		"iat negative":           func(m map[string]any) { m["iat"] = -1 },
		"jti empty":              func(m map[string]any) { m["jti"] = "" },
		"jti control char":       func(m map[string]any) { m["jti"] = "ext-0001\n" },
		"jti too long":           func(m map[string]any) { m["jti"] = strings.Repeat("x", MaxIDBytes+1) },
		"jti number":             func(m map[string]any) { m["jti"] = 1 },
		"iss number":             func(m map[string]any) { m["iss"] = 3 },
		"aud array":              func(m map[string]any) { m["aud"] = []string{"a"} },
		"no event":               func(m map[string]any) { delete(m, "event") },
		"event null":             func(m map[string]any) { m["event"] = nil },
		"event string":           func(m map[string]any) { m["event"] = "x" },
		"wrong URI":              func(m map[string]any) { m["event"] = map[string]any{"urn:ietf:params:notifications:emailOtp": data(m)} },
		"two events":             func(m map[string]any) { m["event"].(map[string]any)["urn:x"] = map[string]any{} },
		"no events":              func(m map[string]any) { m["event"] = map[string]any{} },
		"orgId string":           func(m map[string]any) { data(m)["organizationId"] = "3" },
		"orgId float":            func(m map[string]any) { data(m)["organizationId"] = 3.5 },
		"orgId negative":         func(m map[string]any) { data(m)["organizationId"] = -3 },
		"no orgId":               func(m map[string]any) { delete(data(m), "organizationId") },
		"no orgName":             func(m map[string]any) { delete(data(m), "organizationName") },
		"bad orgName":            func(m map[string]any) { data(m)["organizationName"] = "My Org" },
		"no sendTo":              func(m map[string]any) { delete(data(m), "sendTo") },
		"sendTo local":           func(m map[string]any) { data(m)["sendTo"] = "0771234567" },
		"sendTo number":          func(m map[string]any) { data(m)["sendTo"] = 94771234567 },
		"no messageBody":         func(m map[string]any) { delete(data(m), "messageBody") },
		"empty messageBody":      func(m map[string]any) { data(m)["messageBody"] = "" },
		"long messageBody":       func(m map[string]any) { data(m)["messageBody"] = strings.Repeat("x", 1601) },
		"expiry before iat":      func(m map[string]any) { m["otphub_expiry"] = 1659732032884 },
		"expiry string":          func(m map[string]any) { m["otphub_expiry"] = "soon" },
		"long iss":               func(m map[string]any) { m["iss"] = strings.Repeat("i", MaxURLChars+1) },
		"event data null fields": func(m map[string]any) { data(m)["sendTo"] = nil },
	}
	for name, edit := range cases {
		b := mutateAsgardeo(t, edit)
		_, err := UnmarshalAsgardeo(b)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed (%s)", name, err, b)
		}
	}
	// 1600 characters (runes) are fine, even multi-byte ones.
	b := mutateAsgardeo(t, func(m map[string]any) { data(m)["messageBody"] = strings.Repeat("✓", 1600) })
	if _, err := UnmarshalAsgardeo(b); err != nil {
		t.Errorf("1600-character body: %v", err)
	}
	// Unknown members are ignored.
	b = mutateAsgardeo(t, func(m map[string]any) { m["extra"] = true; data(m)["more"] = 1 })
	if _, err := UnmarshalAsgardeo(b); err != nil {
		t.Errorf("unknown members: %v", err)
	}
	for _, raw := range []string{"", "null", "[]", "{", `{"iss":"a"} x`, "\xff"} {
		if _, err := UnmarshalAsgardeo([]byte(raw)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: %v", raw, err)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := otphubEvent().Validate(); err != nil {
		t.Fatal(err)
	}
	// Any printable string is an ID (RFC 7519 §4.1.7, CloudEvents id).
	for _, id := range []string{"ext-0001", "urn:uuid:9f1c2f4e-7d3a-4b8e-9a61-0c5d2e7f8a90",
		"9f1c2f4e7d3a4b8e9a610c5d2e7f8a90", "{9f1c2f4e-7d3a-4b8e-9a61-0c5d2e7f8a90}", "a b", "otp/é/1", "1",
		strings.Repeat("x", MaxIDBytes)} {
		ev := otphubEvent()
		ev.ID = id
		if err := ev.Validate(); err != nil {
			t.Errorf("ID %q refused: %v", id, err)
		}
	}
	for name, edit := range map[string]func(e *SmsOtpNotificationEvent){
		"iss":         func(e *SmsOtpNotificationEvent) { e.Issuer = "" },
		"jti":         func(e *SmsOtpNotificationEvent) { e.ID = "" },
		"jti nul":     func(e *SmsOtpNotificationEvent) { e.ID = "a\x00b" },
		"jti utf8":    func(e *SmsOtpNotificationEvent) { e.ID = "\xff" },
		"jti long":    func(e *SmsOtpNotificationEvent) { e.ID = strings.Repeat("é", MaxIDBytes/2+1) },
		"iat":         func(e *SmsOtpNotificationEvent) { e.IssuedAt = time.Time{} },
		"aud":         func(e *SmsOtpNotificationEvent) { e.Audience = strings.Repeat("a", MaxURLChars+1) },
		"org id":      func(e *SmsOtpNotificationEvent) { e.OrganizationID = -1 },
		"org name":    func(e *SmsOtpNotificationEvent) { e.OrganizationName = "-x" },
		"org long":    func(e *SmsOtpNotificationEvent) { e.OrganizationName = strings.Repeat("a", 64) },
		"send to":     func(e *SmsOtpNotificationEvent) { e.SendTo = "+0123456789" },
		"send to len": func(e *SmsOtpNotificationEvent) { e.SendTo = "+1234567890123456" },
		"body":        func(e *SmsOtpNotificationEvent) { e.MessageBody = "" },
		"body utf8":   func(e *SmsOtpNotificationEvent) { e.MessageBody = "\xff" },
		"expiry":      func(e *SmsOtpNotificationEvent) { e.ExpiresAt = e.IssuedAt.Add(-time.Second) },
	} {
		ev := otphubEvent()
		edit(ev)
		err := ev.Validate()
		var ve *ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate() = %v", name, err)
		}
	}
}

func TestUnmarshalSET(t *testing.T) {
	ev := otphubEvent()
	b, _ := MarshalSET(ev)
	// aud as an array, fractional iat.
	s := strings.Replace(string(b), `"aud":"`+ev.Audience+`"`, `"aud":["`+ev.Audience+`","other"]`, 1)
	s = strings.Replace(s, `"iat":1795914123`, `"iat":1795914123.5`, 1)
	got, err := UnmarshalSET([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	if got.Audience != ev.Audience || got.IssuedAt.UnixMilli() != 1795914123500 {
		t.Errorf("got aud %q iat %v", got.Audience, got.IssuedAt)
	}
	for name, bad := range map[string]string{
		"iat in ms":  strings.Replace(string(b), `"iat":1795914123`, `"iat":1795914123456`, 1),
		"iat string": strings.Replace(string(b), `"iat":1795914123`, `"iat":"1795914123"`, 1),
		"aud empty":  strings.Replace(string(b), `"aud":"`+ev.Audience+`"`, `"aud":[]`, 1),
		"aud number": strings.Replace(string(b), `"aud":"`+ev.Audience+`"`, `"aud":1`, 1),
		"exp bad":    strings.Replace(string(b), `"otphub_expiry":1795914423`, `"otphub_expiry":"x"`, 1),
		"events":     strings.Replace(string(b), `"events"`, `"event"`, 1),
		"trailing":   string(b) + "{}",
	} {
		if _, err := UnmarshalSET([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestVerifySETRefusals(t *testing.T) {
	ecKey := loadKey(t, "ec-test-key.pem")
	rsaKey := loadKey(t, "rsa-test-key.pem")
	kf := keyfuncFor(t, "ec", ecKey)
	ev := otphubEvent()
	good, err := SignSET(ev, ecKey, "ec")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifySET(good, kf); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	enc := base64.RawURLEncoding.EncodeToString
	claims, _ := MarshalSET(ev)

	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	byOther, _ := SignSET(ev, other, "ec")
	rsaTok, _ := SignSET(ev, rsaKey, "ec") // right kid, wrong key type

	// A token whose typ is plain JWT.
	var mc jwt.MapClaims
	if err := json.Unmarshal(claims, &mc); err != nil {
		t.Fatal(err)
	}
	plain := jwt.NewWithClaims(jwt.SigningMethodES256, mc)
	plain.Header["kid"] = "ec"
	plainTok, _ := plain.SignedString(ecKey)
	// HMAC keyed with the public key's bytes (the classic confusion attack).
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, mc)
	hs.Header["typ"] = SETType
	hs.Header["kid"] = "ec"
	hsTok, _ := hs.SignedString([]byte("whatever"))

	for name, tc := range map[string]struct {
		tok  string
		want error
	}{
		"alg none":        {enc([]byte(`{"alg":"none","typ":"secevent+jwt"}`)) + "." + enc(claims) + ".", ErrBadSignature},
		"alg none no sig": {enc([]byte(`{"alg":"none","typ":"secevent+jwt"}`)) + "." + enc(claims), ErrMalformed},
		"HS256":           {hsTok, ErrBadSignature},
		"wrong key":       {byOther, ErrBadSignature},
		"rsa for ec kid":  {rsaTok, ErrBadSignature},
		"typ JWT":         {plainTok, ErrMalformed},
		"tampered claims": {parts[0] + "." + enc([]byte(strings.Replace(string(claims), "123456", "000000", 1))) + "." + parts[2], ErrBadSignature},
		"no signature":    {parts[0] + "." + parts[1] + ".", ErrBadSignature},
		"garbage":         {"a.b.c", ErrMalformed},
		"two parts":       {"a.b", ErrMalformed},
		"huge":            {strings.Repeat("a", maxTokenBytes+1), ErrMalformed},
	} {
		_, err := VerifySET(tc.tok, kf)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", name, err, tc.want)
		}
	}
	// An unknown kid, with several keys in the set.
	jwkA, _ := NewJWK("a", other.Public())
	jwkB, _ := NewJWK("b", rsaKey.Public())
	set := &JWKS{Keys: []JWK{jwkA, jwkB}}
	if _, err := VerifySET(good, set.Keyfunc()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("unknown kid: %v", err)
	}
}

func TestJWKRefusals(t *testing.T) {
	for name, k := range map[string]JWK{
		"kty":       {Kty: "oct"},
		"curve":     {Kty: "EC", Crv: "P-384", X: "AA", Y: "AA"},
		"ec coords": {Kty: "EC", Crv: "P-256", X: "!!", Y: "AA"},
		"off curve": {Kty: "EC", Crv: "P-256", X: strings.Repeat("A", 43), Y: strings.Repeat("A", 43)},
		"rsa empty": {Kty: "RSA"},
		"rsa weak":  {Kty: "RSA", N: "AQAB", E: "AQAB"},
	} {
		if _, err := k.PublicKey(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseJWKS([]byte("[]")); err == nil {
		t.Error("ParseJWKS([]) accepted")
	}
	if _, err := SignSET(otphubEvent(), nil, ""); err == nil {
		t.Error("SignSET without a key")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := SignSET(otphubEvent(), p384, ""); err == nil {
		t.Error("SignSET with P-384")
	}
}

func TestCloudEventRefusals(t *testing.T) {
	good, _ := MarshalCloudEvent(otphubEvent())
	for name, edit := range map[string]func(m map[string]any){
		"specversion":  func(m map[string]any) { m["specversion"] = "0.3" },
		"type":         func(m map[string]any) { m["type"] = "com.example" },
		"no id":        func(m map[string]any) { delete(m, "id") },
		"no source":    func(m map[string]any) { delete(m, "source") },
		"no time":      func(m map[string]any) { delete(m, "time") },
		"bad time":     func(m map[string]any) { m["time"] = "yesterday" },
		"content type": func(m map[string]any) { m["datacontenttype"] = "text/plain" },
		"no data":      func(m map[string]any) { delete(m, "data") },
		"data string":  func(m map[string]any) { m["data"] = "x" },
		"expirytime":   func(m map[string]any) { m["expirytime"] = "soon" },
		"aud number":   func(m map[string]any) { m["otphubaud"] = 3 },
		"bad sendTo":   func(m map[string]any) { m["data"].(map[string]any)["sendTo"] = "x" },
	} {
		var m map[string]any
		_ = json.Unmarshal(good, &m)
		edit(m)
		b, _ := json.Marshal(m)
		if _, err := UnmarshalCloudEvent(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestDecodeBinaryRefusals(t *testing.T) {
	key, headers, value, _ := EncodeBinary(otphubEvent())
	for name, edit := range map[string]func(h map[string]string) ([]byte, []byte){
		"specversion":  func(h map[string]string) ([]byte, []byte) { h[HeaderSpecVersion] = "0.3"; return key, value },
		"type":         func(h map[string]string) ([]byte, []byte) { h[HeaderType] = "x"; return key, value },
		"no id":        func(h map[string]string) ([]byte, []byte) { delete(h, HeaderID); return key, value },
		"no source":    func(h map[string]string) ([]byte, []byte) { delete(h, HeaderSource); return key, value },
		"no time":      func(h map[string]string) ([]byte, []byte) { delete(h, HeaderTime); return key, value },
		"bad time":     func(h map[string]string) ([]byte, []byte) { h[HeaderTime] = "x"; return key, value },
		"bad expiry":   func(h map[string]string) ([]byte, []byte) { h[HeaderExpiryTime] = ""; return key, value },
		"content type": func(h map[string]string) ([]byte, []byte) { h[HeaderContentType] = "text/plain"; return key, value },
		"key mismatch": func(h map[string]string) ([]byte, []byte) { return []byte("other"), value },
		"value":        func(h map[string]string) ([]byte, []byte) { return key, []byte("[]") },
		"big value":    func(h map[string]string) ([]byte, []byte) { return key, make([]byte, MaxEventBytes+1) },
		"big headers": func(h map[string]string) ([]byte, []byte) {
			h["x"] = strings.Repeat("a", MaxEventBytes)
			return key, value
		},
	} {
		h := map[string]string{}
		for k, v := range headers {
			h[k] = v
		}
		k, v := edit(h)
		if _, err := DecodeBinary(k, h, v); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestOutsideProducersRecords: records from other producers with ids that
// are not UUIDs and without ce_time are accepted by DecodeBinaryAt (the
// router's decoder), issued at the time of receipt; the strict
// DecodeBinary still requires ce_time.
func TestOutsideProducersRecords(t *testing.T) {
	received := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	key, headers, value, _ := EncodeBinary(otphubEvent())
	for _, id := range []string{"ext-0001", "urn:uuid:9f1c2f4e-7d3a-4b8e-9a61-0c5d2e7f8a90", "9f1c2f4e7d3a4b8e9a610c5d2e7f8a90"} {
		h := map[string]string{}
		for k, v := range headers {
			h[k] = v
		}
		h[HeaderID] = id
		delete(h, HeaderTime)
		delete(h, HeaderExpiryTime)
		ev, err := DecodeBinaryAt(key, h, value, received)
		if err != nil {
			t.Fatalf("id %q without ce_time: %v", id, err)
		}
		if ev.ID != id || !ev.IssuedAt.Equal(received) || !ev.Expiry().Equal(received.Add(DefaultOTPValidity)) {
			t.Errorf("decoded %+v", ev)
		}
		if _, err := DecodeBinary(key, h, value); !errors.Is(err, ErrMalformed) {
			t.Errorf("DecodeBinary without ce_time: %v", err)
		}
	}
	// A record that has ce_time keeps it.
	ev, err := DecodeBinaryAt(key, headers, value, received)
	if err != nil || ev.IssuedAt.Equal(received) {
		t.Fatalf("with ce_time: %+v %v", ev, err)
	}
}
