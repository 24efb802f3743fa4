package audit_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/otphub/otphub/app/apptest"
)

type client struct {
	t     *testing.T
	base  string
	token string
}

func token(t *testing.T, base, id, secret string) *client {
	resp, err := http.PostForm(base+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token: %v %d", err, resp.StatusCode)
	}
	return &client{t: t, base: base, token: tok.AccessToken}
}

func (c *client) do(method, path, body string, out any) int {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-Request-Id", "req-"+strings.ReplaceAll(strings.TrimPrefix(path, "/"), "/", "-"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode
}

type entry struct {
	ID        int64
	Org       string
	Actor     string
	Action    string
	Target    string
	Status    int
	IP        string
	RequestID string
}

type page struct {
	Entries    []entry
	NextCursor string
}

func TestAuditLogRecordsAPIChanges(t *testing.T) {
	srv := apptest.Start(t)
	admin := token(t, srv.URL, srv.AdminClientID, srv.AdminClientSecret)
	for _, org := range []string{"acme", "beta"} {
		if code := admin.do("POST", "/api/v1/orgs", `{"name":"`+org+`"}`, nil); code != 201 {
			t.Fatalf("create org %s: %d", org, code)
		}
	}
	var cl struct{ ClientID, ClientSecret string }
	if code := admin.do("POST", "/api/v1/orgs/acme/clients", `{"name":"ops","scopes":["admin"]}`, &cl); code != 201 {
		t.Fatalf("create client: %d", code)
	}
	ops := token(t, srv.URL, cl.ClientID, cl.ClientSecret)
	if code := ops.do("PUT", "/api/v1/orgs/acme/sms-otp/settings", `{"length":8}`, nil); code != 200 {
		t.Fatalf("put settings: %d", code)
	}
	if code := ops.do("PUT", "/api/v1/orgs/acme/sms-otp/settings", `{"length":99}`, nil); code != 400 {
		t.Fatalf("bad settings: %d", code)
	}
	if code := ops.do("PUT", "/api/v1/orgs/beta/sms-otp/settings", `{"length":8}`, nil); code != 403 {
		t.Fatalf("other org: %d", code)
	}
	// Not recorded: end-user traffic and requests without credentials.
	if code := ops.do("POST", "/api/v1/orgs/acme/sms-otp/challenges", `{"mobile":"+94771234567","userId":"u","application":"a"}`, nil); code != 201 {
		t.Fatalf("challenge: %d", code)
	}
	// A backup code's verification is a sign-in, whatever it answers.
	if code := ops.do("POST", "/api/v1/orgs/acme/users/u/backup-codes/verify", `{"code":"12345678"}`, nil); code == 0 {
		t.Fatal("backup code verify: no answer")
	}
	anon := &client{t: t, base: srv.URL}
	if code := anon.do("PUT", "/api/v1/orgs/acme/sms-otp/settings", `{"length":8}`, nil); code != 401 {
		t.Fatalf("anonymous: %d", code)
	}

	var acme page
	if code := ops.do("GET", "/api/v1/orgs/acme/audit-log", "", &acme); code != 200 {
		t.Fatalf("org audit log: %d", code)
	}
	var got []string
	for _, e := range acme.Entries {
		got = append(got, fmt.Sprintf("%s %s %s %d", e.Actor, e.Action, e.Target, e.Status))
		if e.IP != "127.0.0.1" || e.RequestID == "" || e.Org != "acme" {
			t.Errorf("entry %+v: want ip 127.0.0.1, a request ID and org acme", e)
		}
	}
	want := []string{
		"client:" + cl.ClientID + " PUT /api/v1/orgs/{org}/sms-otp/settings /api/v1/orgs/acme/sms-otp/settings 400",
		"client:" + cl.ClientID + " PUT /api/v1/orgs/{org}/sms-otp/settings /api/v1/orgs/acme/sms-otp/settings 200",
		"client:" + srv.AdminClientID + " POST /api/v1/orgs/{org}/clients /api/v1/orgs/acme/clients 201",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("acme's audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The refused change to beta is in beta's log, not acme's.
	var beta page
	admin.do("GET", "/api/v1/orgs/beta/audit-log", "", &beta)
	if len(beta.Entries) != 1 || beta.Entries[0].Status != 403 || beta.Entries[0].Actor != "client:"+cl.ClientID {
		t.Fatalf("beta's audit log: %+v", beta.Entries)
	}
	if code := ops.do("GET", "/api/v1/orgs/beta/audit-log", "", nil); code != 403 {
		t.Fatalf("another org's log: %d", code)
	}
	if code := ops.do("GET", "/api/v1/audit-log", "", nil); code != 403 {
		t.Fatalf("the whole log for an org client: %d", code)
	}
	var all page
	if code := admin.do("GET", "/api/v1/audit-log?limit=2", "", &all); code != 200 || len(all.Entries) != 2 || all.NextCursor == "" {
		t.Fatalf("whole log page: %d %+v", code, all)
	}
	var rest page
	admin.do("GET", "/api/v1/audit-log?limit=1000&before="+all.NextCursor, "", &rest)
	created := 0
	for _, e := range append(all.Entries, rest.Entries...) {
		if e.Action == "POST /api/v1/orgs" {
			created++
			if !strings.HasPrefix(e.Target, "/api/v1/orgs/") || e.Org != "" {
				t.Errorf("org creation entry %+v", e)
			}
		}
	}
	if created != 2 || len(all.Entries)+len(rest.Entries) != 6 {
		t.Fatalf("whole log: %d org creations, %d entries", created, len(all.Entries)+len(rest.Entries))
	}
	if code := admin.do("GET", "/api/v1/audit-log?before=x", "", nil); code != 400 {
		t.Fatalf("bad cursor: %d", code)
	}
}
