package event

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// seedBlocks returns the seed's two sample objects (security data, event
// data) as printed in testdata/seed-sample.txt, a verbatim excerpt of
// seed/add-mfa-with-sms-otp.txt, with the page's 6-space margin removed.
func seedBlocks(t testing.TB) (security, data string) {
	t.Helper()
	raw, err := os.ReadFile("testdata/seed-sample.txt")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	var cur []string
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimPrefix(line, "      ")
		switch {
		case line == "{":
			cur = []string{line}
		case line == "}" && cur != nil:
			blocks = append(blocks, strings.Join(append(cur, line), "\n"))
			cur = nil
		case cur != nil:
			cur = append(cur, line)
		}
	}
	if len(blocks) != 2 {
		t.Fatalf("found %d JSON blocks in the seed excerpt, want 2", len(blocks))
	}
	return blocks[0], blocks[1]
}

// normaliseSeedData repairs the only two defects of the seed's event data
// sample, which is not valid JSON as printed: the comma missing after
// "sendTo" and the trailing comma after "messageBody". Nothing else is
// touched.
func normaliseSeedData(s string) string {
	s = strings.Replace(s, `"sendTo": "+1234567890"`+"\n", `"sendTo": "+1234567890",`+"\n", 1)
	s = strings.Replace(s, "minutes.\",\n}", "minutes.\"\n}", 1)
	return s
}

// seedEvent builds the seed's sample event from its security data and
// event data objects.
func seedEvent(t testing.TB) *SmsOtpNotificationEvent {
	t.Helper()
	security, data := seedBlocks(t)
	var sec struct {
		Iss, Jti, Aud string
		Iat           int64
	}
	if err := json.Unmarshal([]byte(security), &sec); err != nil {
		t.Fatalf("seed security data: %v", err)
	}
	var d eventData
	if err := json.Unmarshal([]byte(normaliseSeedData(data)), &d); err != nil {
		t.Fatalf("seed event data (normalised): %v", err)
	}
	return &SmsOtpNotificationEvent{
		Issuer: sec.Iss, ID: sec.Jti, IssuedAt: time.UnixMilli(sec.Iat).UTC(), Audience: sec.Aud,
		OrganizationID: d.OrganizationID, OrganizationName: d.OrganizationName,
		SendTo: d.SendTo, MessageBody: d.MessageBody,
	}
}

// otphubEvent is an event as otphub's auth core emits it: an issuer URL,
// a known expiry, and a message with characters JSON encoders like to
// escape.
func otphubEvent() *SmsOtpNotificationEvent {
	iat := time.Date(2026, 11, 29, 1, 2, 3, 456_000_000, time.UTC)
	return &SmsOtpNotificationEvent{
		Issuer:           "https://otphub.example.com",
		ID:               "9f1c2f4e-7d3a-4b8e-9a61-0c5d2e7f8a90",
		IssuedAt:         iat,
		Audience:         "https://otphub.example.com/topics/acme-corp/NOTIFICATIONS",
		OrganizationID:   42,
		OrganizationName: "acme-corp",
		SendTo:           "+94771234567",
		MessageBody:      "Your one-time password for the <Shop & Co> is 123456. This expires in 5 minutes. Ünïcødé ✓",
		ExpiresAt:        iat.Add(5 * time.Minute),
	}
}

func loadKey(t testing.TB, name string) crypto.Signer {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		t.Fatalf("%s: no PEM block", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(crypto.Signer)
}

// checkGolden compares got with testdata/name byte for byte, or rewrites
// the file with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./event -run Golden -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file\n got: %s\nwant: %s", name, got, want)
	}
}

// TestAsgardeoReproducesSeed shows that MarshalAsgardeo of the seed's
// sample event is byte for byte the documented body (docs/event-formats.md) made of the seed's
// two sample objects, and that indenting our output with two spaces
// reproduces the seed's printed layout of each object.
func TestAsgardeoReproducesSeed(t *testing.T) {
	ev := seedEvent(t)
	got, err := MarshalAsgardeo(ev)
	if err != nil {
		t.Fatal(err)
	}
	security, data := seedBlocks(t)
	data = normaliseSeedData(data)

	// The wire form: compact, the security data members, then "event".
	var sec, dat bytes.Buffer
	if err := json.Compact(&sec, []byte(security)); err != nil {
		t.Fatal(err)
	}
	if err := json.Compact(&dat, []byte(data)); err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSuffix(sec.String(), "}") +
		`,"event":{"urn:ietf:params:notifications:smsOtp":` + dat.String() + `}}`
	if string(got) != want {
		t.Fatalf("MarshalAsgardeo(seed event)\n got: %s\nwant: %s", got, want)
	}
	checkGolden(t, "asgardeo.golden.json", got)

	// The seed's layout: each object indented by two spaces, "key": value.
	i := bytes.Index(got, []byte(`,"event":`))
	var secIndented bytes.Buffer
	if err := json.Indent(&secIndented, append(slices.Clone(got[:i]), '}'), "", "  "); err != nil {
		t.Fatal(err)
	}
	if secIndented.String() != security {
		t.Errorf("security data layout\n got: %s\nwant: %s", secIndented.String(), security)
	}
	inner := got[bytes.Index(got, []byte(SmsOtpEventURI))+len(SmsOtpEventURI)+2 : len(got)-2]
	var dataIndented bytes.Buffer
	if err := json.Indent(&dataIndented, inner, "", "  "); err != nil {
		t.Fatal(err)
	}
	if dataIndented.String() != data {
		t.Errorf("event data layout\n got: %s\nwant: %s", dataIndented.String(), data)
	}

	back, err := UnmarshalAsgardeo(got)
	if err != nil {
		t.Fatal(err)
	}
	if *back != *ev {
		t.Errorf("round trip: got %+v, want %+v", back, ev)
	}
}

func TestGoldenFormats(t *testing.T) {
	rsaKey := loadKey(t, "rsa-test-key.pem")
	for _, fx := range []struct {
		name string
		ev   *SmsOtpNotificationEvent
	}{{"seed", seedEvent(t)}, {"otphub", otphubEvent()}} {
		t.Run(fx.name, func(t *testing.T) {
			a, err := MarshalAsgardeo(fx.ev)
			if err != nil {
				t.Fatal(err)
			}
			if fx.name != "seed" { // the seed's is checked by TestAsgardeoReproducesSeed
				checkGolden(t, fx.name+".asgardeo.golden.json", a)
			}
			s, err := MarshalSET(fx.ev)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, fx.name+".set.golden.json", s)
			// RS256 (PKCS #1 v1.5) is deterministic, so the whole token is golden.
			tok, err := SignSET(fx.ev, rsaKey, "test-rsa")
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, fx.name+".set-jwt.golden.txt", []byte(tok))
			c, err := MarshalCloudEvent(fx.ev)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, fx.name+".cloudevents.golden.json", c)
			key, headers, value, err := EncodeBinary(fx.ev)
			if err != nil {
				t.Fatal(err)
			}
			// The record as text: the key, the headers in name order, a blank
			// line, then the value's exact bytes.
			var rec bytes.Buffer
			fmt.Fprintf(&rec, "key: %s\n", key)
			for _, name := range slices.Sorted(maps.Keys(headers)) {
				fmt.Fprintf(&rec, "%s: %s\n", name, headers[name])
			}
			rec.WriteString("\n")
			rec.Write(value)
			checkGolden(t, fx.name+".kafka.golden.txt", rec.Bytes())
		})
	}
}
