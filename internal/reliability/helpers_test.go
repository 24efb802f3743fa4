package reliability_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"go/build"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// soak selects the long forms (make soak sets OTPHUB_SOAK=1).
var soak = os.Getenv("OTPHUB_SOAK") == "1"

// soakRate is the soak forms' paced publish rate (events/s):
// OTPHUB_SOAK_RATE, default 100; 0 publishes as fast as acknowledged.
func soakRate() float64 {
	if v, err := strconv.ParseFloat(os.Getenv("OTPHUB_SOAK_RATE"), 64); err == nil && v >= 0 {
		return v
	}
	return 100
}

// pick returns the short or the soak value.
func pick[T any](short, long T) T {
	if soak {
		return long
	}
	return short
}

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// goTool is the go command that runs these tests.
func goTool() string {
	if p := filepath.Join(build.Default.GOROOT, "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// otphubBinary builds cmd/otphub once per test run and returns its path.
func otphubBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		out, err := exec.Command(goTool(), "env", "GOMOD").Output()
		if err != nil {
			buildErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		if binDir, buildErr = os.MkdirTemp("", "otphub-reliability-"); buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "otphub")
		cmd := exec.Command(goTool(), "build", "-o", binPath, "./cmd/otphub")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/otphub: %v\n%s", err, b)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// proc is one otphub subprocess.
type proc struct {
	name   string
	URL    string
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	exited chan struct{}
	killed atomic.Bool
}

// startProc starts `otphub serve --addr addr args...` and waits until
// /readyz answers 200. It is killed in t.Cleanup if still running; its
// logs are shown when the test fails.
func startProc(t *testing.T, name, addr string, args ...string) *proc {
	t.Helper()
	p := startProcNoWait(t, name, addr, args...)
	waitFor(t, 60*time.Second, name+" ready", func() bool {
		if !p.alive() {
			t.Fatalf("%s exited during start-up:\n%s", name, tail(p.stderr.String(), 4096))
		}
		return p.ready()
	})
	return p
}

// ready reports whether /readyz answers 200.
func (p *proc) ready() bool {
	resp, err := http.Get(p.URL + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// startProcNoWait is startProc without waiting for readiness.
func startProcNoWait(t *testing.T, name, addr string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, URL: "http://" + addr, stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(otphubBinary(t), append([]string{"serve", "--addr", addr, "--log-level", "warn"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	p.cmd.Env = append(os.Environ(), "GORACE=halt_on_error=1")
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		p.kill9()
		if t.Failed() {
			t.Logf("%s stderr (last 4 KiB):\n%s", p.name, tail(p.stderr.String(), 4096))
		}
	})
	return p
}

// kill9 sends SIGKILL and waits for the process to be gone; idempotent.
func (p *proc) kill9() {
	if p.killed.CompareAndSwap(false, true) {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.exited
}

// alive reports whether the process is still running.
func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

var credLine = regexp.MustCompile(`(?m)^OTPHUB_ADMIN_CLIENT_(ID|SECRET)=(\S+)$`)

// adminCredentials reads the credentials a first embedded start prints.
func (p *proc) adminCredentials(t *testing.T) (id, secret string) {
	t.Helper()
	waitFor(t, 10*time.Second, "admin credentials on stdout", func() bool {
		for _, m := range credLine.FindAllStringSubmatch(p.stdout.String(), -1) {
			if m[1] == "ID" {
				id = m[2]
			} else {
				secret = m[2]
			}
		}
		return id != "" && secret != ""
	})
	return id, secret
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// waitFor polls cond every 20 ms until it holds, failing the test after
// timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// client talks to one otphub over HTTP.
type client struct {
	base string
	hc   *http.Client
}

func newClient(base string) *client {
	return &client{base: base, hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 64, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute,
	}}}
}

func (c *client) token(t *testing.T, id, secret string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.base+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.SetBasicAuth(id, secret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("token: %d %s", resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("token: %v", err)
	}
	return out.AccessToken
}

// do sends a JSON request and decodes a 2xx answer into out; it returns the
// status code and fails the test on a transport error.
func (c *client) do(t *testing.T, method, path, tok string, in, out any) int {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, body)
	req.Header.Set("Authorization", "Bearer "+tok)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 == 2 && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

// mustDo is do that fails the test unless the answer is 2xx.
func (c *client) mustDo(t *testing.T, method, path, tok string, in, out any) {
	t.Helper()
	var raw json.RawMessage
	if code := c.do(t, method, path, tok, in, &raw); code/100 != 2 {
		t.Fatalf("%s %s: status %d", method, path, code)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// tenant is an org with a client holding the given scopes.
type tenant struct {
	name                   string
	orgID                  int64
	token                  string
	clientID, clientSecret string
}

func setupTenant(t *testing.T, c *client, adminID, adminSecret, name string, scopes ...string) tenant {
	t.Helper()
	admin := c.token(t, adminID, adminSecret)
	var org struct {
		ID int64 `json:"id"`
	}
	c.mustDo(t, http.MethodPost, "/api/v1/orgs", admin, map[string]any{"name": name}, &org)
	var cl struct{ ClientID, ClientSecret string }
	c.mustDo(t, http.MethodPost, "/api/v1/orgs/"+name+"/clients", admin, map[string]any{"name": name + "-app", "scopes": scopes}, &cl)
	return tenant{name: name, orgID: org.ID, token: c.token(t, cl.ClientID, cl.ClientSecret), clientID: cl.ClientID, clientSecret: cl.ClientSecret}
}

// topicURL is the org's WebSub topic under the public URL base.
func topicURL(base, org string) string { return base + "/topics/" + org + "/NOTIFICATIONS" }

// subscribe subscribes callback to the org's topic (the hub verifies the
// intent asynchronously) and waits until every one of the org's
// subscriptions is active.
func subscribe(t *testing.T, c *client, publicURL string, tn tenant, callbacks ...string) {
	t.Helper()
	for _, cb := range callbacks {
		form := url.Values{"hub.mode": {"subscribe"}, "hub.topic": {topicURL(publicURL, tn.name)},
			"hub.callback": {cb}, "hub.secret": {"reliability-secret"}}
		req, _ := http.NewRequest(http.MethodPost, c.base+"/hub", strings.NewReader(form.Encode()))
		req.Header.Set("Authorization", "Bearer "+tn.token)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := c.hc.Do(req)
		if err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("subscribe %s: %d %s", cb, resp.StatusCode, b)
		}
	}
	waitFor(t, 30*time.Second, "subscriptions active", func() bool {
		var list struct {
			Subscriptions []struct {
				State string `json:"state"`
			} `json:"subscriptions"`
		}
		if c.do(t, http.MethodGet, "/api/v1/orgs/"+tn.name+"/subscriptions", tn.token, nil, &list) != http.StatusOK {
			return false
		}
		active := 0
		for _, s := range list.Subscriptions {
			if s.State == "active" {
				active++
			}
		}
		return active >= len(callbacks)
	})
}

// publisher publishes Asgardeo-format events with POST /hub and remembers
// which were acknowledged (2xx).
type publisher struct {
	publicURL string
	tn        tenant
	mu        sync.Mutex
	acked     map[string]time.Time // jti → when its publish was sent
	n         atomic.Int64         // acknowledged
	failed    atomic.Int64         // transport errors and non-2xx answers
}

func newPublisher(publicURL string, tn tenant) *publisher {
	return &publisher{publicURL: publicURL, tn: tn, acked: map[string]time.Time{}}
}

// publish sends one event through c and reports whether it was acked.
func (p *publisher) publish(ctx context.Context, c *client) bool {
	jti := uuid.NewString()
	topic := topicURL(p.publicURL, p.tn.name)
	sent := time.Now()
	body := fmt.Sprintf(`{"iss":%q,"jti":%q,"iat":%d,"aud":%q,"event":{"urn:ietf:params:notifications:smsOtp":{"organizationId":%d,"organizationName":%q,"sendTo":"+94771234567","messageBody":"Your one-time password is 075052. This expires in 5 minutes."}}}`,
		p.publicURL, jti, time.Now().UnixMilli(), topic, p.tn.orgID, p.tn.name)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost,
		c.base+"/hub?hub.mode=publish&hub.topic="+url.QueryEscape(topic), strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+p.tn.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		p.failed.Add(1)
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		p.failed.Add(1)
		return false
	}
	p.mu.Lock()
	p.acked[jti] = sent
	p.mu.Unlock()
	p.n.Add(1)
	return true
}

// runPaced publishes from conc goroutines through the clients (round robin)
// until ctx ends; it returns when every goroutine has stopped. A failed
// publish (a killed server) is followed by a short pause so a dead
// server is not hammered.
// The publishes of all goroutines together are paced to rate per second
// (0: as fast as they are acknowledged).
func (p *publisher) runPaced(ctx context.Context, conc int, rate float64, clients ...*client) {
	var tick <-chan time.Time
	if rate > 0 {
		tk := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tk.Stop()
		tick = tk.C
	}
	var wg sync.WaitGroup
	for i := range conc {
		c := clients[i%len(clients)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			pause := time.NewTimer(0)
			defer pause.Stop()
			for ctx.Err() == nil {
				if tick != nil {
					select {
					case <-tick:
					case <-ctx.Done():
						return
					}
				}
				if !p.publish(ctx, c) {
					pause.Reset(20 * time.Millisecond)
					select {
					case <-ctx.Done():
					case <-pause.C:
					}
				}
			}
		}()
	}
	wg.Wait()
}

// sentAt returns when the acknowledged event jti was published.
func (p *publisher) sentAt(jti string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.acked[jti]
}

// ackedIDs returns the acknowledged event IDs.
func (p *publisher) ackedIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make([]string, 0, len(p.acked))
	for id := range p.acked {
		ids = append(ids, id)
	}
	return ids
}

// receiver is a WebSub subscriber endpoint: it answers intent
// verification and counts, per webhook-id (the event's jti), the
// deliveries it accepted (2xx) and refused.
type receiver struct {
	URL string
	srv *httptest.Server
	// status, if set, chooses the answer to a delivery: nth is how many
	// times this jti arrived (1 = first), seq the receiver-wide POST count.
	status func(jti string, nth int, seq int64) int

	mu       sync.Mutex
	accepted map[string]int       // jti → 2xx answers
	firstAt  map[string]time.Time // jti → first 2xx answer
	arrivals map[string]int       // jti → POSTs
	seq      atomic.Int64
	refused  atomic.Int64
}

func newReceiver(t *testing.T, status func(jti string, nth int, seq int64) int) *receiver {
	r := &receiver{status: status, accepted: map[string]int{}, firstAt: map[string]time.Time{}, arrivals: map[string]int{}}
	r.srv = httptest.NewServer(r)
	r.URL = r.srv.URL
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodGet {
		_, _ = io.WriteString(w, req.URL.Query().Get("hub.challenge"))
		return
	}
	_, _ = io.Copy(io.Discard, req.Body)
	jti := req.Header.Get("Webhook-Id")
	seq := r.seq.Add(1)
	r.mu.Lock()
	r.arrivals[jti]++
	nth := r.arrivals[jti]
	r.mu.Unlock()
	code := http.StatusNoContent
	if r.status != nil {
		code = r.status(jti, nth, seq)
	}
	if code/100 == 2 {
		r.mu.Lock()
		if r.accepted[jti]++; r.accepted[jti] == 1 {
			r.firstAt[jti] = time.Now()
		}
		r.mu.Unlock()
	} else {
		r.refused.Add(1)
	}
	w.WriteHeader(code)
}

// missing returns the IDs never accepted.
func (r *receiver) missing(ids []string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, id := range ids {
		if r.accepted[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// acceptedAt returns when jti was first accepted.
func (r *receiver) acceptedAt(jti string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.firstAt[jti]
	return at, ok
}

// tally counts, over the receiver's accepted deliveries, the distinct
// events, the extra (duplicate) deliveries, and the events not in acked
// (published while the server died: acknowledged to nobody).
func (r *receiver) tally(acked []string) (distinct, duplicates, unacked int) {
	set := make(map[string]bool, len(acked))
	for _, id := range acked {
		set[id] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, n := range r.accepted {
		distinct++
		duplicates += n - 1
		if !set[id] {
			unacked++
		}
	}
	return distinct, duplicates, unacked
}

// deliveryDiag returns a diagnostic for a failed waitDelivered: how many
// of the missing events the deliveries API lists, by status (expired
// deliveries are an OTP lifetime exceeded, not a loss of the log).
func deliveryDiag(t *testing.T, c *client, tn tenant) func(missing []string) string {
	return func(missing []string) string {
		want := make(map[string]bool, len(missing))
		for _, id := range missing {
			want[id] = true
		}
		byStatus := map[string]int{}
		path := "/api/v1/orgs/" + tn.name + "/deliveries?limit=1000"
		for page := 0; page < 200; page++ {
			var list struct {
				Deliveries []struct {
					EventID string `json:"eventId"`
					Status  string `json:"status"`
				} `json:"deliveries"`
				NextCursor string `json:"nextCursor"`
			}
			if code := c.do(t, http.MethodGet, path, tn.token, nil, &list); code != http.StatusOK {
				return fmt.Sprintf("deliveries API answered %d", code)
			}
			for _, d := range list.Deliveries {
				if want[d.EventID] {
					byStatus[d.Status]++
				}
			}
			if list.NextCursor == "" {
				break
			}
			path = "/api/v1/orgs/" + tn.name + "/deliveries?limit=1000&before=" + url.QueryEscape(list.NextCursor)
		}
		return fmt.Sprintf("deliveries API records of the missing events, by status: %v", byStatus)
	}
}

// waitDelivered waits until every acked ID was accepted by r. diag, if
// set, explains a failure.
func waitDelivered(t *testing.T, r *receiver, acked []string, timeout time.Duration, diag func(missing []string) string) {
	t.Helper()
	var miss []string
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if miss = r.missing(acked); len(miss) == 0 {
			return
		}
		if time.Now().After(deadline) {
			why := ""
			if diag != nil {
				why = "; " + diag(miss)
			}
			t.Fatalf("LOST: %d of %d acknowledged events never delivered within %v (e.g. %v)%s",
				len(miss), len(acked), timeout, miss[:min(5, len(miss))], why)
		}
		<-tick.C
	}
}

// acceptedCount is how many distinct deliveries were accepted.
func (r *receiver) acceptedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.accepted)
}
