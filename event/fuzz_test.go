package event

import (
	"os"
	"path/filepath"
	"testing"
)

func goldenSeeds(f *testing.F, pattern string) {
	f.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", pattern))
	if err != nil || len(files) == 0 {
		f.Fatalf("no golden files match %s", pattern)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzUnmarshalAsgardeo: malformed input is an error, never a panic, and
// whatever decodes re-encodes to a body that decodes to the same event.
func FuzzUnmarshalAsgardeo(f *testing.F) {
	goldenSeeds(f, "*asgardeo.golden.json")
	f.Add([]byte(`{"iss":"a","jti":"3b69b103-fa6c-424a-bbf4-a974d0c2d2a3","iat":1659732032884,"event":{"urn:ietf:params:notifications:smsOtp":{"organizationId":1e2}}}`))
	f.Add([]byte(`{"event":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := UnmarshalAsgardeo(b)
		if err != nil {
			return
		}
		again, err := MarshalAsgardeo(ev)
		if err != nil {
			t.Fatal(err)
		}
		back, err := UnmarshalAsgardeo(again)
		if err != nil {
			t.Fatalf("re-encoded body refused: %v\n%s", err, again)
		}
		if *back != *ev {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", *ev, *back)
		}
	})
}

// FuzzUnmarshalCloudEvent: as FuzzUnmarshalAsgardeo, for structured
// CloudEvents.
func FuzzUnmarshalCloudEvent(f *testing.F) {
	goldenSeeds(f, "*cloudevents.golden.json")
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"y","type":"urn:ietf:params:notifications:smsOtp","data_base64":"e30="}`))
	f.Add([]byte(`{"specversion":"1.0","expirytime":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := UnmarshalCloudEvent(b)
		if err != nil {
			return
		}
		again, err := MarshalCloudEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		back, err := UnmarshalCloudEvent(again)
		if err != nil {
			t.Fatalf("re-encoded CloudEvent refused: %v\n%s", err, again)
		}
		if !back.IssuedAt.Equal(ev.IssuedAt) || back.ID != ev.ID || back.MessageBody != ev.MessageBody {
			t.Fatalf("round trip changed the event:\n%+v\n%+v", *ev, *back)
		}
	})
}

// FuzzDecodeBinary: any Kafka record is an error or a valid event.
func FuzzDecodeBinary(f *testing.F) {
	key, h, value, err := EncodeBinary(otphubEvent())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(key, h[HeaderSpecVersion], h[HeaderID], h[HeaderSource], h[HeaderType], h[HeaderTime], h[HeaderExpiryTime], h[HeaderContentType], value)
	f.Add([]byte{}, "1.0", "x", "y", SmsOtpEventURI, "2026-01-01T00:00:00Z", "", "", []byte(`{}`))
	f.Add([]byte("k"), "1.0", "", "", SmsOtpEventURI, "0000-00-00", "9999-99-99T99:99:99Z", "application/json; x", []byte(`null`))
	f.Fuzz(func(t *testing.T, key []byte, spec, id, source, typ, tm, exp, ct string, value []byte) {
		headers := map[string]string{HeaderSpecVersion: spec, HeaderID: id, HeaderSource: source,
			HeaderType: typ, HeaderTime: tm, HeaderContentType: ct}
		if exp != "" {
			headers[HeaderExpiryTime] = exp
		}
		ev, err := DecodeBinary(key, headers, value)
		if err != nil {
			return
		}
		if err := ev.Validate(); err != nil {
			t.Fatalf("decoded an invalid event: %v", err)
		}
		k, h, v, err := EncodeBinary(ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeBinary(k, h, v); err != nil {
			t.Fatalf("re-encoded record refused: %v", err)
		}
	})
}

// FuzzVerifySET: any token string is an error or an event signed by the
// test key; never a panic.
func FuzzVerifySET(f *testing.F) {
	goldenSeeds(f, "*set-jwt.golden.txt")
	key := loadKey(f, "ec-test-key.pem")
	tok, err := SignSET(otphubEvent(), key, "ec")
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(tok))
	f.Add([]byte("eyJhbGciOiJub25lIiwidHlwIjoic2VjZXZlbnQrand0In0.e30."))
	f.Add([]byte(".."))
	kf := keyfuncFor(f, "ec", key)
	rsaKf := keyfuncFor(f, "test-rsa", loadKey(f, "rsa-test-key.pem"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if ev, err := VerifySET(string(b), kf); err == nil {
			if err := ev.Validate(); err != nil {
				t.Fatalf("verified an invalid event: %v", err)
			}
		}
		if ev, err := VerifySET(string(b), rsaKf); err == nil {
			if err := ev.Validate(); err != nil {
				t.Fatalf("verified an invalid event: %v", err)
			}
		}
	})
}

func BenchmarkMarshalAsgardeo(b *testing.B) {
	ev := otphubEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MarshalAsgardeo(ev); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalAsgardeo(b *testing.B) {
	body, _ := MarshalAsgardeo(otphubEvent())
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := UnmarshalAsgardeo(body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignSET(b *testing.B) {
	ev := otphubEvent()
	for _, k := range []struct{ name, file string }{{"ES256", "ec-test-key.pem"}, {"RS256", "rsa-test-key.pem"}} {
		key := loadKey(b, k.file)
		b.Run(k.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := SignSET(ev, key, "k"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncodeBinary(b *testing.B) {
	ev := otphubEvent()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := EncodeBinary(ev); err != nil {
			b.Fatal(err)
		}
	}
}
