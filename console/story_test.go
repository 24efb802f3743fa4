package console_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/otphub/otphub/app/apptest"
)

const password = "correct violet staple horizon 42"

// TestConsole drives the console in chromium from the first admin's setup
// link through every page, checking each change through the API, and
// scans every page with axe-core.
func TestConsole(t *testing.T) {
	browser(t) // skip early without chromium
	srv := apptest.Start(t, "--delivery-max-attempts", "1")
	if srv.ConsoleSetupLink == "" || !strings.Contains(srv.Stdout.String(), srv.ConsoleSetupLink) {
		t.Fatalf("the first start printed no setup link; stdout:\n%s", srv.Stdout.String())
	}
	admin := adminAPI(t, srv.URL, srv.AdminClientID, srv.AdminClientSecret)
	b := newTab(t, srv.URL, true)

	t.Run("SetupLink", func(t *testing.T) {
		b.t = t
		b.open(srv.ConsoleSetupLink)
		b.wantText("This link creates the first platform admin")
		b.axe()
		b.shot("setup")
		b.fill("Email", "root@example.com")
		b.fill("Your name", "Root <b>Admin</b>")
		b.fill("Mobile number", "+94771234567")
		b.fill("Password", "short")
		b.fill("Password again", "short")
		b.press("Create account")
		b.wantFieldError("Password", "at least 15 characters")
		b.fill("Password", "passwordpassword")
		b.fill("Password again", "passwordpassword")
		b.press("Create account")
		b.wantFieldError("Password", "breached")
		b.fill("Password", password)
		b.fill("Password again", password+"x")
		b.press("Create account")
		b.wantFieldError("Password again", "differ")
		b.fill("Password", password)
		b.fill("Password again", password)
		b.press("Create account")
		if !strings.HasSuffix(b.url(), "/console/platform/orgs") {
			t.Fatalf("after setup at %s", b.url())
		}
		// The link works once.
		b.open(srv.ConsoleSetupLink)
		b.wantText("used already")
		for _, c := range b.cookies() {
			if c.Name == "otphub_console" && (!c.HTTPOnly || c.SameSite != "Strict") {
				t.Fatalf("session cookie %+v: want HttpOnly and SameSite=Strict", c)
			}
		}
	})

	t.Run("Organizations", func(t *testing.T) {
		b.t = t
		b.open("/console/platform/orgs")
		b.fill("Name", "Bad Name!")
		b.press("Create organization")
		b.wantFieldError("Name", "must match")
		b.fill("Name", "acme")
		b.press("Create organization")
		b.wantText("Organization acme created.")
		b.fill("Name", "globex")
		b.press("Create organization")
		b.axe()
		b.shot("orgs")
		if code, body := admin.do("GET", "/api/v1/orgs/acme", nil); code != 200 || body["name"] != "acme" {
			t.Fatalf("GET org: %d %v", code, body)
		}
	})

	t.Run("SMSOTPSettings", func(t *testing.T) {
		b.t = t
		b.open("/console/orgs/acme/")
		b.wantSkipLinkFirst()
		b.follow("SMS OTP")
		b.axe()
		b.fill("SMS OTP length", "abc")
		b.press("Update")
		b.wantFieldError("SMS OTP length", "whole number")
		b.fill("SMS OTP length", "99")
		b.press("Update")
		if msg := b.fieldError("SMS OTP length"); msg == "" {
			t.Fatalf("no error next to the length: %s", b.text())
		}
		b.fill("SMS OTP length", "8")
		b.fill("SMS OTP expiry time (seconds)", "240")
		b.check("Use only numeric characters for OTP", false)
		b.fill("Resends allowed", "2")
		b.fill("Allowed countries (calling codes)", "94,")
		// By keyboard only: focus the last field, change it, Enter submits.
		b.run(chromedp.Focus(byLabel("Allowed countries (calling codes)")))
		b.navigate(chromedp.Steps(chromedp.KeyEvent(" 1"), chromedp.KeyEvent(kb.Enter)))
		b.wantText("SMS OTP settings updated.")
		b.shot("sms-otp")
		code, body := admin.do("GET", "/api/v1/orgs/acme/sms-otp/settings", nil)
		if code != 200 || body["length"] != 8.0 || body["expirySeconds"] != 240.0 || body["numericOnly"] != false ||
			body["maxResends"] != 2.0 || fmt.Sprint(body["allowedCountryCodes"]) != "[1 94]" {
			t.Fatalf("the API returns %d %v", code, body)
		}
	})

	t.Run("SMSProviderTabs", func(t *testing.T) {
		b.t = t
		tw, twGot := fakeTwilio(t)
		vo, voGot := fakeVonage(t)
		gw, gwGot := gateway(t)
		b.open("/console/orgs/acme/sms-provider")
		b.follow("Twilio")
		b.fill("Twilio Account SID", "nope")
		b.press("Save Twilio")
		b.wantFieldError("Twilio Account SID", "AC followed by 32")
		b.fill("Twilio Account SID", twSID)
		b.fill("Twilio Auth Token", twToken)
		b.fill("Sender", "+14155550100")
		b.fill("API base URL (optional)", tw.URL)
		b.press("Save Twilio")
		b.wantText("Twilio saved as the primary SMS provider.")
		if strings.Contains(get(b, chromedpHTML()), twToken) {
			t.Fatal("the page shows the saved auth token")
		}
		b.axe()
		b.fill("Mobile number", "+94771234567")
		b.press("Send test SMS")
		b.wantText("Sent.", "SM0123456789abcdef0123456789abcdef")
		b.shot("sms-provider-twilio")
		if twGot.count() != 1 || twGot.forms[0].Get("To") != "+94771234567" {
			t.Fatalf("twilio got %v", twGot.forms)
		}
		// Saving again with the token left empty keeps it.
		b.fill("Sender", "+14155550111")
		b.press("Save Twilio")
		b.wantText("Twilio saved")
		if code, body := admin.do("GET", "/api/v1/orgs/acme/sms-provider", nil); code != 200 || body["sender"] != "+14155550111" || body["authToken"] != "****"+twToken[len(twToken)-4:] {
			t.Fatalf("provider: %d %v", code, body)
		}

		b.follow("Fallback provider")
		b.follow("Vonage")
		b.fill("Vonage API Key", "abcd1234")
		b.fill("Vonage API Secret", "Vonage-Secret-1")
		b.fill("Sender", "MyApp")
		b.fill("API base URL (optional)", vo.URL)
		b.press("Save Vonage")
		b.wantText("Vonage saved as the fallback SMS provider.")
		b.fill("Mobile number", "+94771234567")
		b.press("Send test SMS")
		b.wantText("Sent.", "0A0000000123ABCD1")
		b.shot("sms-provider-vonage")
		if voGot.count() != 1 {
			t.Fatal("vonage got no request")
		}

		b.follow("Custom")
		b.fill("SMS Provider URL", gw.URL+"/send")
		b.fill("Payload Template", `{"content": {{body}, "to": {{mobile}}}`)
		b.fill("Headers (optional)", "authorisation: qwer1234asdfzxcv")
		b.press("Save custom provider")
		if msg := b.fieldError("Payload Template"); !regexp.MustCompile(`\d`).MatchString(msg) {
			t.Fatalf("the template error names no position: %q", msg)
		}
		b.fill("Payload Template", `{"content": {{body}}, "to": {{mobile}}}`)
		b.fill("Headers (optional)", "authorisation: qwer1234asdfzxcv")
		b.press("Save custom provider")
		b.wantText("Custom provider saved as the fallback SMS provider.")
		b.axe()
		b.shot("sms-provider-custom")
		b.fill("Mobile number", "+94771234567")
		b.press("Send test SMS")
		b.wantText("Sent.")
		if gwGot.count() != 1 || gwGot.forms[0].Get("authorisation") != "qwer1234asdfzxcv" || !strings.Contains(gwGot.body[0], `"to":"+94771234567"`) && !strings.Contains(gwGot.body[0], `"to": "+94771234567"`) {
			t.Fatalf("gateway got %v %v", gwGot.forms, gwGot.body)
		}
	})

	t.Run("Templates", func(t *testing.T) {
		b.t = t
		b.open("/console/orgs/acme/")
		b.follow("SMS Templates")
		b.wantText("Preview", "K7Q2M9XA") // the settings above: 8 alphanumeric characters
		b.axe()
		// The live preview follows typing.
		b.run(chromedp.Clear(byLabel("Message template")), chromedp.SendKeys(byLabel("Message template"), "<b>{{org}}</b> code {{otp}} {{nope}}"))
		eventually(t, "the live preview to show the template error", func() bool {
			return strings.Contains(get(b, chromedpEval[string](`document.getElementById("preview").textContent`)), "unknown placeholder")
		})
		b.press("Save template")
		b.wantFieldError("Message template", "at character")
		b.fill("Message template", "<b>{{org}}</b>: {{otp}} is your {{application}} code")
		b.press("Preview")
		b.wantText("<b>acme</b>: K7Q2M9XA is your Shop code")
		b.fill("Language", "fr-CA")
		b.press("Save template")
		b.wantText("Template for fr-CA saved.")
		b.shot("templates")
		if code, body := admin.do("GET", "/api/v1/orgs/acme/sms-otp/templates/fr-CA", nil); code != 200 || body["body"] != "<b>{{org}}</b>: {{otp}} is your {{application}} code" {
			t.Fatalf("template: %d %v", code, body)
		}
		if n := get(b, chromedpEval[int](`document.querySelectorAll("main b").length`)); n != 0 {
			t.Fatal("template text rendered as markup")
		}
	})

	rv := newReceiver(t, http.StatusInternalServerError)
	t.Run("Webhooks", func(t *testing.T) {
		b.t = t
		b.open("/console/orgs/acme/webhooks")
		b.fill("Callback URL", "ftp://example.com/x")
		b.press("Add webhook")
		b.wantFieldError("Callback URL", "http")
		// A callback that does not echo the challenge is not verified.
		silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(404) }))
		defer silent.Close()
		b.fill("Callback URL", silent.URL+"/hook")
		b.press("Add webhook")
		b.wantText("Not verified yet")
		b.fill("Callback URL", rv.URL+"/hook")
		b.press("Add webhook")
		b.wantText("Verified: "+rv.URL+"/hook answered the WebSub challenge", "active")
		b.axe()
		b.shot("webhooks")
		// A test event to this endpoint only, linked to its delivery.
		rv.set(http.StatusNoContent)
		b.press("Send test event")
		b.wantText("Test event delivered to " + rv.URL + "/hook.")
		b.follow("View the test event's delivery and its attempt log")
		b.wantText("Attempt log", "204")
		rv.set(http.StatusInternalServerError)
		// Secret rotation: the generated secret is shown once.
		b.open("/console/orgs/acme/webhooks")
		b.press("Rotate secret")
		b.wantText("Verified: "+rv.URL+"/hook", "Deliveries are signed with the new secret from now on.", "Copy the new secret now", "whsec_")
		b.axe()
		b.shot("webhooks-rotated")
		b.open("/console/orgs/acme/webhooks")
		if strings.Contains(b.text(), "whsec_") {
			t.Fatal("the rotated secret is shown again")
		}
		b.wantText("signed (sha256)")
	})

	var deliveryID string
	t.Run("Deliveries", func(t *testing.T) {
		b.t = t
		if code, body := admin.do("POST", "/api/v1/orgs/acme/sms-otp/challenges", map[string]any{"mobile": "+94771234567", "userId": "u1", "application": "shop"}); code != 201 {
			t.Fatalf("start challenge: %d %v", code, body)
		}
		// The webhook answers 500 and one attempt is allowed: dead.
		// (The destination filter lists the subscription from the start:
		// wait for the delivery itself, then look for its row.)
		eventually(t, "a dead webhook delivery", func() bool {
			code, body := admin.do("GET", "/api/v1/orgs/acme/deliveries?status=dead&destinationType=webhook", nil)
			ds, _ := body["deliveries"].([]any)
			return code == 200 && len(ds) > 0
		})
		b.open("/console/orgs/acme/deliveries?status=dead")
		b.axe()
		b.shot("deliveries")
		b.navigate(chromedpClickFirst(`//tr[td[contains(., "webhook")]]//a[contains(@href, "/deliveries/")]`))
		deliveryID = b.url()[strings.LastIndex(b.url(), "/")+1:]
		b.wantText("Attempt log", "500")
		b.axe()
		b.shot("delivery")
		rv.set(http.StatusNoContent)
		b.press("Retry delivery")
		b.wantText("Retry queued")
		eventually(t, "the retried delivery to be delivered", func() bool {
			code, body := admin.do("GET", "/api/v1/orgs/acme/deliveries/"+deliveryID, nil)
			return code == 200 && body["status"] == "delivered"
		})
		// Bulk replay: counted first, then confirmed.
		b.open("/console/orgs/acme/deliveries")
		b.press("Count deliveries to replay")
		b.wantFieldError("Replay status", "Choose a status or a time")
		b.selectOption("Replay status", "dead")
		b.press("Count deliveries to replay")
		b.wantText("Replay")
		count := regexp.MustCompile(`Replay (\d+) deliver(?:y|ies)\?`).FindStringSubmatch(b.text())
		if count == nil || count[1] == "0" {
			t.Fatalf("no count before the replay: %s", b.text())
		}
		b.shot("deliveries-replay")
		noun := map[bool]string{true: "delivery", false: "deliveries"}[count[1] == "1"]
		b.press("Replay " + count[1] + " " + noun)
		b.wantText(count[1] + " " + noun + " requeued.")
	})

	t.Run("HandsetState", func(t *testing.T) {
		b.t = t
		// The primary provider becomes a custom gateway that posts delivery
		// receipts, signed the Standard Webhooks way with its receipt secret.
		gw, gwGot := gateway(t)
		const receiptSecret = "receipt-secret-0123456789"
		if code, body := admin.do("PUT", "/api/v1/orgs/acme/sms-provider", map[string]any{"type": "custom", "url": gw.URL + "/send",
			"payloadTemplate": `{"content": {{body}}, "to": {{mobile}}}`, "receiptSecret": receiptSecret}); code != 200 {
			t.Fatalf("custom provider with receipts: %d %v", code, body)
		}
		if code, body := admin.do("POST", "/api/v1/orgs/acme/sms-otp/challenges", map[string]any{"mobile": "+94771234568", "userId": "u2", "application": "shop"}); code != 201 {
			t.Fatalf("start challenge: %d %v", code, body)
		}
		// This challenge's SMS, not the first the gateway gets: the replay
		// above requeued the story's dead SMS too (its provider is gone),
		// and the retry worker may send it here first.
		var jti string
		eventually(t, "the gateway to get the SMS", func() bool {
			f, ok := gwGot.formWith("+94771234568")
			jti = f.Get("idempotency-key")
			return ok
		})
		receipt := func(status, errorCode string) {
			body := fmt.Sprintf(`{"id":%q,"status":%q,"messageId":"gw-77","errorCode":%q,"to":"+94771234568"}`, jti, status, errorCode)
			id, ts := "msg_"+status, strconv.FormatInt(time.Now().Unix(), 10)
			mac := hmac.New(sha256.New, []byte(receiptSecret))
			mac.Write([]byte(id + "." + ts + "." + body))
			req, _ := http.NewRequest("POST", srv.URL+"/receipts/custom/acme/primary", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("webhook-id", id)
			req.Header.Set("webhook-timestamp", ts)
			req.Header.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("receipt %s: %d", status, resp.StatusCode)
			}
		}
		// Receipts after this SMS's acceptance is recorded (an earlier one
		// would be merged too, but then dropped if the answer named another
		// message). Its own delivery: earlier SMS of the story are accepted
		// and without a state too, and waiting for one of them sent the
		// receipts too early now and then.
		eventually(t, "the accepted SMS in the deliveries API", func() bool {
			_, body := admin.do("GET", "/api/v1/orgs/acme/deliveries?status=delivered", nil)
			ds, _ := body["deliveries"].([]any)
			for _, d := range ds {
				dm, _ := d.(map[string]any)
				h, _ := dm["handset"].(map[string]any)
				if dm["eventId"] == jti && h != nil && h["acceptedAt"] != nil && h["state"] == nil {
					return true
				}
			}
			return false
		})
		receipt("sent", "")
		receipt("undelivered", "E30")
		eventually(t, "the SMS delivery with its handset state", func() bool {
			b.open("/console/orgs/acme/deliveries")
			return strings.Contains(b.text(), "undelivered (error E30)")
		})
		b.navigate(chromedpClickFirst(`//tr[td[contains(., "undelivered")]]//a[contains(@href, "/deliveries/")]`))
		b.wantText("Handset (delivery receipts)", "Handset state", "undelivered", "gw-77", "Provider error code", "E30", "Sent", "Failed", "Failover", "sent through the fallback provider (undelivered)")
		b.axe()
		b.shot("delivery-handset")
	})

	t.Run("OAuthClients", func(t *testing.T) {
		b.t = t
		b.open("/console/orgs/acme/clients")
		b.press("Create client")
		if b.fieldError("Name") == "" {
			t.Fatalf("no error next to the name: %s", b.text())
		}
		// A name that is markup is shown as text.
		xss := `<img src=x id=xss onerror=alert(1)><script>alert(2)</script>`
		b.fill("Name", xss)
		b.check("publish", true)
		b.press("Create client")
		b.wantText("Client created", "Client secret", xss)
		if n := get(b, chromedpEval[int](`document.querySelectorAll("#xss, main script").length`)); n != 0 {
			t.Fatal("the client name was rendered as markup")
		}
		secret := get(b, chromedpEval[string](`document.getElementById("new-client-secret").textContent`))
		id := get(b, chromedpEval[string](`document.getElementById("new-client-id").textContent`))
		b.axe()
		b.shot("clients")
		resp, err := http.PostForm(srv.URL+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("the shown secret does not work: %v %v", err, resp)
		}
		resp.Body.Close()
		b.open("/console/orgs/acme/clients")
		if strings.Contains(get(b, chromedpHTML()), secret) {
			t.Fatal("the secret is shown again")
		}
		b.press("Delete")
		b.wantText("Client deleted")
		if len(b.dialogs) == 0 {
			t.Fatal("delete asked for no confirmation")
		}
	})

	t.Run("Applications", func(t *testing.T) {
		b.t = t
		b.open("/console/orgs/acme/")
		b.follow("Applications")
		b.fill("Name", "Shop")
		b.fill("Redirect URIs", "https://shop.example/cb\nhttp://shop.example/cb")
		b.press("Create application")
		b.wantFieldError("Redirect URIs", "Line 2: http is allowed only on a loopback host")
		b.fill("Redirect URIs", "https://shop.example/cb\nhttp://127.0.0.1:9/cb")
		b.check("Username & password", false)
		b.press("Create application")
		b.wantText("Choose at least one first factor")
		b.check("Username & password", true)
		b.check("Magic link", true)
		b.check("Add SMS OTP as a second factor", false)
		b.press("Create application")
		b.wantFieldError("Add SMS OTP as a second factor", "keep it on")
		b.check("Add SMS OTP as a second factor", true)
		b.check("Enable backup codes", true)
		b.press("Create application")
		b.wantText("Application created", "Client secret")
		secret := get(b, chromedpEval[string](`document.getElementById("new-app-client-secret").textContent`))
		id := get(b, chromedpEval[string](`document.getElementById("new-app-client-id").textContent`))
		b.axe()
		b.shot("applications")
		// The shown secret authenticates the application at the token
		// endpoint (the bogus code is refused after that), a wrong one not.
		token := func(secret string) string {
			req, _ := http.NewRequest("POST", srv.URL+"/oauth2/token", strings.NewReader(url.Values{"grant_type": {"authorization_code"}, "code": {"bogus"}, "redirect_uri": {"https://shop.example/cb"}, "code_verifier": {strings.Repeat("v", 43)}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(id, secret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return string(body)
		}
		if got := token(secret); !strings.Contains(got, "invalid_grant") {
			t.Fatalf("the shown secret: %s", got)
		}
		if got := token(secret + "x"); !strings.Contains(got, "invalid_client") {
			t.Fatalf("a wrong secret: %s", got)
		}
		code, body := admin.do("GET", "/api/v1/orgs/acme/applications", nil)
		apps, _ := body["applications"].([]any)
		if code != 200 || len(apps) != 1 || fmt.Sprint(apps[0].(map[string]any)["loginFlow"]) != "map[backupCodes:true firstFactors:[magic_link pwd] secondFactor:sms-otp]" ||
			fmt.Sprint(apps[0].(map[string]any)["redirectUris"]) != "[http://127.0.0.1:9/cb https://shop.example/cb]" {
			t.Fatalf("applications API: %d %v", code, body)
		}
		appID := apps[0].(map[string]any)["id"].(string)
		b.open("/console/orgs/acme/applications")
		if strings.Contains(get(b, chromedpHTML()), secret) {
			t.Fatal("the application secret is shown again")
		}
		b.follow("Shop")
		b.follow("Login Flow")
		b.check("Federated (an identity provider)", true)
		b.check("Magic link", false)
		b.check("Enable backup codes", false)
		b.press("Save login flow")
		b.wantText("Login flow saved.")
		b.axe()
		b.shot("application-login-flow")
		b.follow("General")
		b.fill("Redirect URIs", "https://shop.example/cb#frag")
		b.press("Save application")
		b.wantFieldError("Redirect URIs", "fragment")
		b.fill("Name", "Shop & Co")
		b.fill("Redirect URIs", "https://shop.example/callback")
		b.press("Save application")
		b.wantText("Application saved.")
		code, body = admin.do("GET", "/api/v1/orgs/acme/applications/"+appID, nil)
		if code != 200 || body["name"] != "Shop & Co" || fmt.Sprint(body["redirectUris"]) != "[https://shop.example/callback]" ||
			fmt.Sprint(body["loginFlow"]) != "map[backupCodes:false firstFactors:[fed pwd] secondFactor:sms-otp]" {
			t.Fatalf("after edits the API returns %d %v", code, body)
		}
		b.press("Make a new client secret")
		b.wantText("New client secret made")
		if rotated := get(b, chromedpEval[string](`document.getElementById("new-app-client-secret").textContent`)); rotated == secret || !strings.Contains(token(rotated), "invalid_grant") || !strings.Contains(token(secret), "invalid_client") {
			t.Fatal("the rotated secret is not the one that works")
		}
		b.press("Delete application")
		b.wantText("Application deleted")
		if code, _ := admin.do("GET", "/api/v1/orgs/acme/applications/"+appID, nil); code != 404 {
			t.Fatalf("deleted application: %d", code)
		}
	})

	t.Run("SignInToLoginApp", func(t *testing.T) {
		// An application made in the console signs a user in to
		// examples/login-app, a separate process that knows otphub only
		// through OpenID Connect (go-oidc, x/oauth2).
		b.t = t
		const mobile = "+94771239999"
		if code, body := admin.do("POST", "/api/v1/orgs", map[string]any{"name": "shop"}); code != 201 {
			t.Fatalf("create org: %d %v", code, body)
		}
		if code, body := admin.do("PUT", "/api/v1/orgs/shop/sms-provider", map[string]any{"type": "console"}); code != 200 {
			t.Fatalf("console provider: %d %v", code, body)
		}
		addr := freeAddr(t)
		b.open("/console/orgs/shop/applications")
		b.fill("Name", "Login app")
		b.fill("Redirect URIs", "http://"+addr+"/callback")
		b.press("Create application")
		b.wantText("Application created")
		id := get(b, chromedpEval[string](`document.getElementById("new-app-client-id").textContent`))
		secret := get(b, chromedpEval[string](`document.getElementById("new-app-client-secret").textContent`))
		app := startLoginApp(t, addr, srv.URL, id, secret, mobile)
		b.open(app.url + "/")
		b.fill("Username", "alice")
		b.fill("Password", "wonderland")
		b.press("Sign in")
		if !strings.HasPrefix(b.url(), srv.URL+"/login/") {
			t.Fatalf("after the first factor at %s, want otphub's SMS OTP prompt", b.url())
		}
		b.fill("Verification code", lastSMSCode(t, srv, mobile))
		b.press("Continue")
		if who := get(b, chromedpEval[string](`document.getElementById("signed-in")?.textContent ?? document.body.innerText`)); who != "Signed in as alice." {
			t.Fatalf("the login app at %s says %q", b.url(), who)
		}
		if amr := get(b, chromedpEval[string](`document.getElementById("amr").textContent`)); !strings.Contains(amr, "otp") || !strings.Contains(amr, "pwd") {
			t.Fatalf("the login app's ID token amr: %q", amr)
		}
	})

	t.Run("AuditLog", func(t *testing.T) {
		b.t = t
		b.open("/console/orgs/acme/audit")
		b.wantText("user:root@example.com", "PUT /api/v1/orgs/{org}/sms-otp/settings", "websub.subscribe", "POST /api/v1/orgs/{org}/deliveries/replay")
		b.axe()
		b.shot("audit")
		code, body := admin.do("GET", "/api/v1/orgs/acme/audit-log", nil)
		if code != 200 || !strings.Contains(fmt.Sprint(body["entries"]), "user:root@example.com") {
			t.Fatalf("audit API: %d %v", code, body)
		}
		b.open("/console/platform/audit")
		b.wantText("console.sign_in", "POST /api/v1/orgs")
	})

	var inviteLink string
	t.Run("InviteOrgAdmin", func(t *testing.T) {
		b.t = t
		b.open("/console/platform/users")
		b.fill("Email", "ann@acme.example")
		b.selectOption("Role", "acme")
		b.press("Create invitation")
		inviteLink = linkPattern.FindString(b.text())
		if inviteLink == "" {
			t.Fatalf("no invitation link: %s", b.text())
		}
		b.axe()
		b.shot("users")
	})

	t.Run("OrgAdminSeesOnlyTheirOrg", func(t *testing.T) {
		ann := newTab(t, srv.URL, true)
		ann.open(inviteLink)
		ann.wantText("acme")
		ann.fill("Your name", "Ann")
		ann.fill("Mobile number", "+94770000001")
		ann.fill("Password", "ann's long and unguessable phrase")
		ann.fill("Password again", "ann's long and unguessable phrase")
		ann.press("Create account")
		if !strings.HasSuffix(ann.url(), "/console/orgs/acme/") {
			t.Fatalf("org admin landed on %s", ann.url())
		}
		ann.wantText("OTPs sent and verified per hour", "Conversion per country", "+94", "Deliveries per hour", "delivered", "SMS delivered to handsets", "Undelivered or failed")
		ann.axe()
		ann.shot("overview")
		ann.open("/console/orgs/globex/sms-otp")
		ann.wantText("does not grant")
		ann.open("/console/platform/orgs")
		ann.wantText("Only a platform admin")
		ann.open(inviteLink)
		ann.wantText("used already")
		// An org admin invites admins of their own org only.
		ann.open("/console/orgs/acme/")
		ann.follow("Team")
		ann.wantText("ann@acme.example", "Invite an admin of acme")
		if strings.Contains(ann.text(), "root@example.com") {
			t.Fatal("the team page lists a platform admin")
		}
		ann.fill("Email", "bob@acme.example")
		ann.press("Create invitation")
		bobLink := linkPattern.FindString(ann.text())
		if bobLink == "" {
			t.Fatalf("no invitation link: %s", ann.text())
		}
		ann.axe()
		ann.open(bobLink)
		ann.wantText("administer the organization acme")
		ann.open("/console/orgs/globex/team")
		ann.wantText("does not grant")

		// Sign out everywhere ends the other session too.
		other := newTab(t, srv.URL, true)
		other.open("/console/sign-in")
		other.fill("Email", "ann@acme.example")
		other.fill("Password", "wrong password, certainly")
		other.press("Sign in")
		other.wantText("not right")
		other.fill("Password", "ann's long and unguessable phrase")
		other.press("Sign in")
		other.wantText("Overview")
		ann.open("/console/orgs/acme/")
		ann.press("Sign out everywhere")
		other.open("/console/orgs/acme/sms-otp")
		if !strings.Contains(other.url(), "/console/sign-in") {
			t.Fatalf("after sign out everywhere the other browser is at %s", other.url())
		}
		other.axe()
		other.shot("sign-in")
	})

	t.Run("AccountAndRemoval", func(t *testing.T) {
		b.t = t
		b.open("/console/platform/orgs")
		b.follow("root@example.com")
		b.fill("Current password", "not my password at all")
		b.fill("New password", "a brand new passphrase for root")
		b.fill("New password again", "a brand new passphrase for root")
		b.press("Change password")
		b.wantFieldError("Current password", "not your current password")
		b.axe()
		b.fill("Current password", password)
		b.fill("New password", "a brand new passphrase for root")
		b.fill("New password again", "a brand new passphrase for root")
		b.press("Change password")
		b.wantText("Password changed.")
		b.shot("account")
		b.open("/console/platform/users")
		b.press("Remove")
		b.wantText("ann@acme.example was removed")
		ann := newTab(t, srv.URL, true)
		ann.open("/console/sign-in")
		ann.fill("Email", "ann@acme.example")
		ann.fill("Password", "ann's long and unguessable phrase")
		ann.press("Sign in")
		ann.wantText("not right")
	})

	t.Run("PortalLink", func(t *testing.T) {
		framer := "http://localhost:9"
		code, link := admin.do("POST", "/api/v1/orgs/acme/portal-links", map[string]any{"sections": []string{"webhooks", "deliveries"}, "frameAncestors": []string{framer}})
		if code != 201 {
			t.Fatalf("portal link: %d %v", code, link)
		}
		if code, body := admin.do("POST", "/api/v1/orgs/acme/portal-links", map[string]any{"sections": []string{"clients"}}); code != 400 || body["field"] != "sections" {
			t.Fatalf("portal link with an unknown section: %d %v", code, body)
		}
		if code, body := admin.do("POST", "/api/v1/orgs/acme/portal-links", map[string]any{"sections": []string{"webhooks"}, "frameAncestors": []string{"http://evil.example"}}); code != 400 || body["field"] != "frameAncestors" {
			t.Fatalf("portal link with a plain-http origin: %d %v", code, body)
		}
		p := newTab(t, srv.URL, true)
		p.open(link["url"].(string))
		p.wantText(rv.URL + "/hook")
		if strings.Contains(get(p, chromedpHTML()), "globex") || strings.Contains(get(p, chromedpHTML()), "SMS OTP") {
			t.Fatal("the portal shows more than its org's sections")
		}
		p.axe()
		p.shot("portal")
		resp, err := http.Get(p.url())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors "+framer) || resp.Header.Get("X-Frame-Options") != "" {
			t.Fatalf("portal page headers: CSP %q, X-Frame-Options %q", csp, resp.Header.Get("X-Frame-Options"))
		}
		base := p.url()[:strings.LastIndex(p.url(), "/")]
		p.follow("Deliveries")
		p.navigate(chromedpClickFirst(`//tr[td[contains(., "webhook")]]//a[contains(@href, "/deliveries/")]`))
		p.press("Retry delivery")
		p.wantText("Retry queued")
		for _, path := range []string{"/sms-otp", "/clients", "/audit"} {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				t.Fatalf("portal path %s: %d", path, resp.StatusCode)
			}
		}
		// A link for webhooks only does not open deliveries.
		_, only := admin.do("POST", "/api/v1/orgs/acme/portal-links", map[string]any{"sections": []string{"webhooks"}})
		p.open(only["url"].(string))
		p.open(p.url()[:strings.LastIndex(p.url(), "/")] + "/deliveries")
		p.wantText("does not open this section")
		p.open(link["url"].(string))
		p.wantText("used already")
		_, audit := admin.do("GET", "/api/v1/orgs/acme/audit-log", nil)
		if !strings.Contains(fmt.Sprint(audit["entries"]), "client:portal-link:") {
			t.Fatalf("the portal's retry is not in the audit log: %v", audit["entries"])
		}
	})

	t.Run("CSRFRefused", func(t *testing.T) {
		b.t = t
		var cookie string
		for _, c := range b.cookies() {
			if c.Name == "otphub_console" {
				cookie = c.Value
			}
		}
		post := func(form url.Values, origin string) int {
			req, _ := http.NewRequest("POST", srv.URL+"/console/orgs/acme/sms-otp", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.AddCookie(&http.Cookie{Name: "otphub_console", Value: cookie})
			if origin != "" {
				req.Header.Set("Origin", origin)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
		form := url.Values{"expiry": {"60"}, "length": {"4"}, "maxResends": {"1"}, "resendInterval": {"30"}, "maxFailed": {"3"}}
		if code := post(form, ""); code != http.StatusForbidden {
			t.Fatalf("POST without a CSRF token: %d", code)
		}
		b.open("/console/orgs/acme/sms-otp")
		form.Set("csrf", get(b, chromedpEval[string](`document.querySelector("input[name=csrf]").value`)))
		if code := post(form, "https://evil.example"); code != http.StatusForbidden {
			t.Fatalf("POST from another origin: %d", code)
		}
		if _, body := admin.do("GET", "/api/v1/orgs/acme/sms-otp/settings", nil); body["length"] != 8.0 {
			t.Fatalf("a refused POST changed the settings: %v", body)
		}
	})
}
