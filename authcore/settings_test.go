package authcore_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/otphub/otphub/authcore"
)

const settingsPath = "/api/v1/orgs/acme/sms-otp/settings"

func TestSettings(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	// Defaults until saved; readable with the otp scope.
	_, _, b := e.mustDo("GET", settingsPath, e.otp, "", 200)
	want := map[string]any{"expirySeconds": 300.0, "numericOnly": true, "length": 6.0, "maxResends": 3.0,
		"resendIntervalSeconds": 30.0, "maxFailedAttempts": 5.0, "backupCodesEnabled": false}
	for k, v := range want {
		if b[k] != v {
			t.Fatalf("default %s = %v, want %v", k, b[k], v)
		}
	}
	if cc, ok := b["allowedCountryCodes"].([]any); !ok || len(cc) != 0 {
		t.Fatalf("allowedCountryCodes %v", b["allowedCountryCodes"])
	}
	// A partial PUT keeps the other fields.
	_, _, b = e.mustDo("PUT", settingsPath, e.orgAdmin, `{"length":8,"allowedCountryCodes":[94,1,94]}`, 200)
	if b["length"] != 8.0 || b["expirySeconds"] != 300.0 {
		t.Fatalf("after PUT %v", b)
	}
	_, _, b = e.mustDo("GET", settingsPath, e.otp, "", 200)
	if b["length"] != 8.0 || len(b["allowedCountryCodes"].([]any)) != 2 {
		t.Fatalf("GET after PUT %v", b)
	}
	// The platform admin may too.
	e.mustDo("PUT", settingsPath, e.admin, `{"expirySeconds":600}`, 200)

	bad := []struct{ body, field string }{
		{`{"length":3}`, "length"},
		{`{"length":11}`, "length"},
		{`{"expirySeconds":0}`, "expirySeconds"},
		{`{"expirySeconds":601}`, "expirySeconds"},
		{`{"maxResends":-1}`, "maxResends"},
		{`{"maxResends":11}`, "maxResends"},
		{`{"resendIntervalSeconds":3601}`, "resendIntervalSeconds"},
		{`{"maxFailedAttempts":0}`, "maxFailedAttempts"},
		{`{"maxFailedAttempts":101}`, "maxFailedAttempts"},
		{`{"allowedCountryCodes":[999]}`, "allowedCountryCodes"},
		{`{"allowedCountryCodes":[0]}`, "allowedCountryCodes"},
	}
	for _, c := range bad {
		r := e.do("PUT", settingsPath, e.orgAdmin, c.body)
		wantError(t, r, 400, "invalid_field")
		if !strings.HasPrefix(r.body["message"].(string), c.field+":") {
			t.Fatalf("%s: message %q does not name %s", c.body, r.body["message"], c.field)
		}
	}
	for name, body := range map[string]string{
		"unknown field": `{"length":6,"colour":"red"}`,
		"wrong type":    `{"length":"6"}`,
		"malformed":     `{"length":`,
		"oversized":     `{"allowedCountryCodes":[` + strings.Repeat("1,", 9000) + `1]}`,
	} {
		r := e.do("PUT", settingsPath, e.orgAdmin, body)
		if r.status != 400 && r.status != 413 {
			t.Fatalf("%s: %d %v", name, r.status, r.body)
		}
	}
	// Nothing half-written by the refused PUTs.
	_, _, b = e.mustDo("GET", settingsPath, e.otp, "", 200)
	if b["length"] != 8.0 || b["expirySeconds"] != 600.0 {
		t.Fatalf("settings changed by refused PUTs: %v", b)
	}
	// The settings drive new challenges: 8 digits, 10 minutes.
	e.start(lkMobile, "alice")
	ev, _ := e.nextEvent()
	if !regexp.MustCompile(`is [0-9]{8}\. This expires in 10 minutes`).MatchString(ev.MessageBody) {
		t.Fatalf("message %q", ev.MessageBody)
	}
}

func TestConfiguredMaxExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authcore.Config) { c.MaxExpiry = 30 * time.Minute })
	e.mustDo("PUT", settingsPath, e.orgAdmin, `{"expirySeconds":1800}`, 200)
	wantError(t, e.do("PUT", settingsPath, e.orgAdmin, `{"expirySeconds":1801}`), 400, "invalid_field")
}

func TestTemplates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	tp := "/api/v1/orgs/acme/sms-otp/templates"
	wantError(t, e.do("GET", tp+"/fr", e.orgAdmin, ""), 404, "template_not_found")
	wantError(t, e.do("DELETE", tp+"/fr", e.orgAdmin, ""), 404, "template_not_found")
	_, _, b := e.mustDo("PUT", tp+"/FR", e.orgAdmin, `{"body":"{{org}}: code {{ otp }} pour {{application}} ({{expiryMinutes}} min)"}`, 200)
	if b["locale"] != "fr" {
		t.Fatalf("canonical locale %v", b["locale"])
	}
	e.mustDo("PUT", tp+"/default", e.orgAdmin, `{"body":"Code {{otp}}."}`, 200)
	_, _, b = e.mustDo("GET", tp+"/fr", e.orgAdmin, "", 200)
	if !strings.Contains(b["body"].(string), "pour") {
		t.Fatalf("GET %v", b)
	}
	_, _, b = e.mustDo("GET", tp, e.orgAdmin, "", 200)
	if len(b["templates"].([]any)) != 2 {
		t.Fatalf("list %v", b)
	}
	for name, body := range map[string]string{
		"no otp":              `{"body":"hello {{application}}"}`,
		"unknown placeholder": `{"body":"{{otp}} {{password}}"}`,
		"unclosed":            `{"body":"{{otp"}`,
		"empty":               `{"body":""}`,
		"missing":             `{}`,
		"too long":            `{"body":"{{otp}}` + strings.Repeat("x", 5000) + `"}`,
		"unknown field":       `{"body":"{{otp}}","x":1}`,
	} {
		r := e.do("PUT", tp+"/de", e.orgAdmin, body)
		if r.status != 400 && r.status != 413 {
			t.Fatalf("%s: %d %v", name, r.status, r.body)
		}
	}
	wantError(t, e.do("PUT", tp+"/not_a_locale!", e.orgAdmin, `{"body":"{{otp}}"}`), 400, "invalid_field")
	wantError(t, e.do("GET", tp+"/x", e.orgAdmin, ""), 400, "invalid_field")

	start := func(locale string) string {
		body := `{"mobile":"` + lkMobile + `","userId":"alice","application":"myapp","locale":"` + locale + `"}`
		e.mustDo("POST", challenges, e.otp, body, 201)
		ev, _ := e.nextEvent()
		return ev.MessageBody
	}
	if m := start("fr-CA"); !regexp.MustCompile(`^acme: code [0-9]{6} pour myapp \(5 min\)$`).MatchString(m) {
		t.Fatalf("fr-CA falls back to the fr override: %q", m)
	}
	if m := start("de"); !regexp.MustCompile(`^Code [0-9]{6}\.$`).MatchString(m) {
		t.Fatalf("de uses the org default: %q", m)
	}
	e.mustDo("DELETE", tp+"/default", e.orgAdmin, "", 204)
	if m := start("en"); !strings.HasPrefix(m, "Your one-time password for the myapp is ") {
		t.Fatalf("built-in default: %q", m)
	}
	if m := start("de"); strings.HasPrefix(m, "Code ") || !strings.Contains(m, "myapp") {
		t.Fatalf("built-in de: %q", m)
	}
	// Resend may name a locale too.
	id := e.start(lkMobile, "bob")
	e.nextEvent()
	e.clk.Add(30 * time.Second)
	e.mustDo("POST", challenges+"/"+id+"/resend", e.otp, `{"locale":"fr"}`, 200)
	if ev, _ := e.nextEvent(); !strings.HasPrefix(ev.MessageBody, "acme: code ") {
		t.Fatalf("resend in fr: %q", ev.MessageBody)
	}
	// An application name cannot inject placeholders or lines.
	e.mustDo("POST", challenges, e.otp, `{"mobile":"`+lkMobile+`","userId":"alice","application":"{{otp}} app","locale":"fr"}`, 201)
	if ev, _ := e.nextEvent(); strings.Count(ev.MessageBody, "{{") != 0 {
		t.Fatalf("placeholder injected: %q", ev.MessageBody)
	}
}

func TestBackupCodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	bc := "/api/v1/orgs/acme/users/alice/backup-codes"
	id := e.start(lkMobile, "alice")
	e.nextOTP()
	wantError(t, e.do("POST", bc, e.otp, ""), 403, "backup_codes_disabled")
	wantError(t, e.do("POST", challenges+"/"+id+"/verify", e.otp, `{"backupCode":"AAAAA-AAAAA"}`), 403, "backup_codes_disabled")

	e.mustDo("PUT", settingsPath, e.orgAdmin, `{"backupCodesEnabled":true}`, 200)
	_, _, b := e.mustDo("POST", bc, e.otp, "", 201)
	codes := b["codes"].([]any)
	if len(codes) != 10 {
		t.Fatalf("codes %v", codes)
	}
	seen := map[string]bool{}
	for _, c := range codes {
		s := c.(string)
		if !regexp.MustCompile(`^[A-HJ-NP-Z2-9]{5}-[A-HJ-NP-Z2-9]{5}$`).MatchString(s) || seen[s] {
			t.Fatalf("code %q", s)
		}
		seen[s] = true
	}
	first := codes[0].(string)
	verifyBackup := func(id, code string) resp {
		return e.do("POST", challenges+"/"+id+"/verify", e.otp, `{"backupCode":"`+code+`"}`)
	}
	// Lower case, no dash: accepted.
	if r := verifyBackup(id, strings.ToLower(strings.ReplaceAll(first, "-", ""))); r.status != 200 {
		t.Fatalf("backup code: %d %v", r.status, r.body)
	}
	wantError(t, verifyBackup(id, codes[1].(string)), 409, "already_verified")
	// Single use.
	id = e.start(lkMobile, "alice")
	e.nextOTP()
	if r := verifyBackup(id, first); r.status != 400 || r.body["error"] != "invalid_code" || r.body["attemptsRemaining"].(float64) != 4 {
		t.Fatalf("reused backup code: %d %v", r.status, r.body)
	}
	// Another user's codes do not work.
	_, _, ob := e.mustDo("POST", "/api/v1/orgs/acme/users/bob/backup-codes", e.otp, "", 201)
	wantError(t, verifyBackup(id, ob["codes"].([]any)[0].(string)), 400, "invalid_code")
	// Regenerating replaces the old codes.
	e.mustDo("POST", bc, e.otp, "", 201)
	wantError(t, verifyBackup(id, codes[2].(string)), 400, "invalid_code")
	if v := e.metric("otphub_otp_verifications_total", "result", "backup_code"); v != 1 {
		t.Fatalf("backup_code metric %v", v)
	}
	wantError(t, e.do("POST", "/api/v1/orgs/acme/users/"+strings.Repeat("u", 129)+"/backup-codes", e.otp, ""), 400, "invalid_field")
}

func TestConcurrentBackupCodeSingleUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.mustDo("PUT", settingsPath, e.orgAdmin, `{"backupCodesEnabled":true,"maxFailedAttempts":100}`, 200)
	_, _, b := e.mustDo("POST", "/api/v1/orgs/acme/users/alice/backup-codes", e.otp, "", 201)
	code := b["codes"].([]any)[0].(string)
	ids := make([]string, 10)
	for i := range ids {
		ids[i] = e.start(lkMobile, "alice")
	}
	results := make(chan int, len(ids))
	for _, id := range ids {
		go func() {
			results <- e.do("POST", challenges+"/"+id+"/verify", e.otp, `{"backupCode":"`+code+`"}`).status
		}()
	}
	ok := 0
	for range ids {
		if <-results == 200 {
			ok++
		}
	}
	if ok != 1 {
		t.Fatalf("one backup code verified %d challenges", ok)
	}
}

// TestBackupCodeWithoutSMS: a backup code verifies with no challenge (so
// with no SMS sent), even when the user's number is out of its send
// budget; the count and revoke endpoints manage the list.
func TestBackupCodeWithoutSMS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authcore.Config) { c.Limits.PerNumber = authcore.Limit{Max: 1, Window: time.Hour} })
	bc := "/api/v1/orgs/acme/users/alice/backup-codes"
	wantError(t, e.do("POST", bc+"/verify", e.otp, `{"backupCode":"AAAAA-AAAAA"}`), 403, "backup_codes_disabled")
	e.mustDo("PUT", settingsPath, e.orgAdmin, `{"backupCodesEnabled":true,"maxFailedAttempts":3}`, 200)
	if _, _, b := e.mustDo("GET", bc, e.otp, "", 200); b["remaining"].(float64) != 0 {
		t.Fatalf("remaining before any generation: %v", b)
	}
	_, _, b := e.mustDo("POST", bc, e.otp, "", 201)
	codes := b["codes"].([]any)
	// The number's budget is spent: no SMS can be sent.
	e.start(lkMobile, "alice")
	e.nextOTP()
	wantError(t, e.do("POST", challenges, e.otp, `{"mobile":"`+lkMobile+`","userId":"alice","application":"myapp"}`), 429, "rate_limited")

	r := e.do("POST", bc+"/verify", e.otp, `{"backupCode":"`+codes[0].(string)+`"}`)
	if r.status != 200 || r.body["verified"] != true || r.body["remaining"].(float64) != 9 {
		t.Fatalf("backup code without a challenge: %d %v", r.status, r.body)
	}
	if r := e.do("POST", bc+"/verify", e.otp, `{"backupCode":"`+codes[0].(string)+`"}`); r.status != 400 || r.body["attemptsRemaining"].(float64) != 2 {
		t.Fatalf("reused: %d %v", r.status, r.body)
	}
	if _, _, b := e.mustDo("GET", bc, e.otp, "", 200); b["remaining"].(float64) != 9 {
		t.Fatalf("remaining: %v", b)
	}
	// Wrong codes lock the user out, like wrong SMS codes.
	wantError(t, e.do("POST", bc+"/verify", e.otp, `{"backupCode":"AAAAA-AAAAA"}`), 400, "invalid_code")
	wantError(t, e.do("POST", bc+"/verify", e.otp, `{"backupCode":"AAAAA-AAAAA"}`), 400, "invalid_code")
	wantError(t, e.do("POST", bc+"/verify", e.otp, `{"backupCode":"`+codes[1].(string)+`"}`), 429, "too_many_attempts")
	e.clk.Add(16 * time.Minute)
	if r := e.do("POST", bc+"/verify", e.otp, `{"backupCode":"`+codes[1].(string)+`"}`); r.status != 200 || r.body["remaining"].(float64) != 8 {
		t.Fatalf("after the lockout: %d %v", r.status, r.body)
	}

	e.mustDo("DELETE", bc, e.otp, "", 204)
	if _, _, b := e.mustDo("GET", bc, e.otp, "", 200); b["remaining"].(float64) != 0 {
		t.Fatalf("remaining after revoke: %v", b)
	}
	wantError(t, e.do("POST", bc+"/verify", e.otp, `{"backupCode":"`+codes[2].(string)+`"}`), 400, "invalid_code")
	wantError(t, e.do("POST", bc+"/verify", e.otp, `{"backupCode":""}`), 400, "invalid_field")
	wantError(t, e.do("GET", "/api/v1/orgs/acme/users/"+strings.Repeat("u", 129)+"/backup-codes", e.otp, ""), 400, "invalid_field")
}

func TestWebOTPLine(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	_, _, b := e.mustDo("PUT", settingsPath, e.orgAdmin, `{"webOtp":true}`, 200)
	if b["webOtp"] != true {
		t.Fatalf("settings %v", b)
	}
	// API challenges are not on otphub's origin: no WebOTP line.
	e.start(lkMobile, "alice")
	ev, _ := e.nextEvent()
	if strings.Contains(ev.MessageBody, "@") {
		t.Fatalf("API challenge message %q has a WebOTP line", ev.MessageBody)
	}
}
