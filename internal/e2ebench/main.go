// Command e2ebench measures otphub end to end on this machine and writes
// the figures to docs/benchmarks.md: events/s published and delivered,
// publish → delivered latency (p50/p99/max) at full load and at half load,
// and peak RSS, for the embedded default and for Kafka mode (an in-process
// Kafka-protocol broker), for 1 and for 100 subscribers, next to the raw
// loopback HTTP POST rate measured in the same run with the same client and
// receiver (the practical ceiling of this machine).
//
// Everything runs in this one process over loopback sockets, so the peak
// RSS figure covers otphub, the receivers and the load generator together.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/otphub/otphub/app"
	"github.com/otphub/otphub/config"
)

func main() {
	out := flag.String("out", "", "write the markdown report to this file (default: stdout only)")
	dur := flag.Duration("duration", 5*time.Second, "length of each measured phase")
	conc := flag.Int("concurrency", 32, "concurrent publishers (and raw-loop posters)")
	modes := flag.String("modes", "embedded,kafka", "log modes to measure")
	subsList := flag.String("subs", "1,100", "subscriber counts to measure")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	pprofAddr := flag.String("pprof-addr", "", "serve net/http/pprof on this loopback address during the run")
	flag.Parse()
	if *pprofAddr != "" {
		go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}

	var rows []row
	for _, mode := range strings.Split(*modes, ",") {
		for _, s := range strings.Split(*subsList, ",") {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				log.Fatalf("bad -subs %q", s)
			}
			r, err := measure(mode, n, *dur, *conc)
			if err != nil {
				log.Printf("%s/%d subscribers: %v", mode, n, err)
				pprof.StopCPUProfile()
				os.Exit(1)
			}
			log.Printf("%s", r)
			rows = append(rows, r)
		}
	}
	report := render(rows, *dur, *conc)
	fmt.Print(report)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(report), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

type row struct {
	mode             string
	subs             int
	rawRate          float64 // raw loopback POSTs/s
	publishRate      float64 // events/s acknowledged by POST /hub publish
	deliverRate      float64 // deliveries/s received by subscribers
	lost             int64   // acknowledged deliveries never received
	p50, p99, max    time.Duration
	halfP50, halfP99 time.Duration
	halfMax          time.Duration
	halfRate         float64
	peakRSSMiB       float64
}

func (r row) String() string {
	return fmt.Sprintf("%s subs=%d raw=%.0f/s publish=%.0f/s delivered=%.0f/s (%.2f× raw) p50=%v p99=%v | half load %.0f/s p50=%v p99=%v max=%v | rss=%.0fMiB lost=%d",
		r.mode, r.subs, r.rawRate, r.publishRate, r.deliverRate, r.deliverRate/r.rawRate, r.p50, r.p99,
		r.halfRate, r.halfP50, r.halfP99, r.halfMax, r.peakRSSMiB, r.lost)
}

// receiver is a WebSub subscriber endpoint: it answers intent verification
// and records when each delivery (by webhook-id and callback) arrived.
type receiver struct {
	srv      *http.Server
	url      string
	mu       sync.Mutex
	received map[string]time.Time // jti → first arrival (any callback)
	count    atomic.Int64
}

func newReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{url: "http://" + ln.Addr().String(), received: map[string]time.Time{}}
	r.srv = &http.Server{Handler: r}
	go r.srv.Serve(ln)
	return r, nil
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodGet {
		io.WriteString(w, req.URL.Query().Get("hub.challenge"))
		return
	}
	_, _ = io.Copy(io.Discard, req.Body)
	if id := req.Header.Get("webhook-id"); id != "" && req.URL.Query().Get("raw") == "" {
		now := time.Now()
		r.mu.Lock()
		if _, ok := r.received[id+req.URL.RawQuery]; !ok {
			r.received[id+req.URL.RawQuery] = now
		}
		r.mu.Unlock()
		r.count.Add(1)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) reset() {
	r.mu.Lock()
	r.received = map[string]time.Time{}
	r.mu.Unlock()
	r.count.Store(0)
}

func (r *receiver) arrival(key string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.received[key]
	return t, ok
}

func newClient(conc int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conc * 2, MaxIdleConnsPerHost: conc * 2, IdleConnTimeout: time.Minute,
	}}
}

func measure(mode string, subs int, dur time.Duration, conc int) (row, error) {
	r := row{mode: mode, subs: subs}
	resetPeakRSS()
	dataDir, err := os.MkdirTemp("", "otphub-bench-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dataDir)

	rcv, err := newReceiver()
	if err != nil {
		return r, err
	}
	defer rcv.srv.Close()
	client := newClient(conc)

	// The ceiling: the same client POSTing the same kind of body to the
	// same receiver, with the same concurrency.
	r.rawRate = rawLoop(client, rcv.url+"/?raw=1", dur, conc)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	args := []string{"--addr", ln.Addr().String(), "--data-dir", dataDir, "--egress-allow-cidrs", "127.0.0.0/8", "--log-level", "error"}
	if extra := os.Getenv("E2EBENCH_ARGS"); extra != "" {
		args = append(args, strings.Fields(extra)...)
	}
	if mode == "kafka" {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			return r, err
		}
		defer cluster.Close()
		args = append(args, "--kafka-brokers", strings.Join(cluster.ListenAddrs(), ","), "--kafka-partitions", "12")
	}
	cfg, err := config.Parse(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		return r, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, app.Options{Stdout: io.Discard, Stderr: os.Stderr, Registry: prometheus.NewRegistry(), Version: "bench"})
	if err != nil {
		cancel()
		return r, err
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	base := cfg.PublicURL
	token, orgID, err := setup(client, base, a.AdminClientID, a.AdminClientSecret)
	if err != nil {
		return r, err
	}
	for i := 0; i < subs; i++ {
		if err := subscribe(client, base, token, fmt.Sprintf("%s/cb?sub=%d", rcv.url, i)); err != nil {
			return r, err
		}
	}
	if err := waitActive(client, base, token, subs); err != nil {
		return r, err
	}

	// Warm-up, then full load: publishers as fast as the hub acknowledges.
	publishLoop(client, base, token, orgID, time.Second, conc, 0)
	waitDrained(rcv, 0, 10*time.Second)
	rcv.reset()
	sent, acked := publishLoop(client, base, token, orgID, dur, conc, 0)
	r.publishRate = float64(len(acked)) / dur.Seconds()
	want := int64(len(acked) * subs)
	end := waitDrained(rcv, want, 60*time.Second)
	elapsed := end.Sub(sent.start)
	r.deliverRate = float64(rcv.count.Load()) / elapsed.Seconds()
	r.p50, r.p99, r.max, r.lost = latencies(rcv, acked, subs)

	// Half the delivered event rate, paced: the latency an operator sees
	// with headroom.
	rcv.reset()
	halfEvents := r.deliverRate / float64(subs) / 2
	sent2, acked2 := publishLoop(client, base, token, orgID, dur, conc, halfEvents)
	waitDrained(rcv, int64(len(acked2)*subs), 60*time.Second)
	r.halfRate = float64(len(acked2)*subs) / dur.Seconds()
	var lost2 int64
	r.halfP50, r.halfP99, r.halfMax, lost2 = latencies(rcv, acked2, subs)
	_ = sent2
	r.lost += lost2
	r.peakRSSMiB = peakRSSMiB()
	return r, nil
}

type published struct {
	jti string
	at  time.Time
}

type sendStats struct{ start time.Time }

// publishLoop publishes events for dur from conc goroutines; rate > 0
// paces the total to that many events per second.
func publishLoop(client *http.Client, base, token string, orgID int64, dur time.Duration, conc int, rate float64) (sendStats, []published) {
	st := sendStats{start: time.Now()}
	deadline := st.start.Add(dur)
	var mu sync.Mutex
	var acked []published
	var tick <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		tick = t.C
	}
	topic := base + "/topics/bench/NOTIFICATIONS"
	pubURL := base + "/hub?hub.mode=publish&hub.topic=" + url.QueryEscape(topic)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if tick != nil {
					select {
					case <-tick:
					case <-time.After(time.Until(deadline)):
						return
					}
				}
				jti := uuid.NewString()
				now := time.Now()
				body := fmt.Sprintf(`{"iss":"%s","jti":"%s","iat":%d,"aud":"%s","event":{"urn:ietf:params:notifications:smsOtp":{"organizationId":%d,"organizationName":"bench","sendTo":"+94771234567","messageBody":"Your one-time password for the bench is 075052. This expires in 5 minutes."}}}`,
					base, jti, now.UnixMilli(), topic, orgID)
				req, _ := http.NewRequest(http.MethodPost, pubURL, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					mu.Lock()
					acked = append(acked, published{jti, now})
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return st, acked
}

func rawLoop(client *http.Client, target string, dur time.Duration, conc int) float64 {
	body := bytes.Repeat([]byte("x"), 400)
	deadline := time.Now().Add(dur)
	var n atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("webhook-id", "raw")
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / dur.Seconds()
}

func waitDrained(rcv *receiver, want int64, max time.Duration) time.Time {
	deadline := time.Now().Add(max)
	last, lastChange := rcv.count.Load(), time.Now()
	for time.Now().Before(deadline) {
		c := rcv.count.Load()
		if want > 0 && c >= want {
			return time.Now()
		}
		if c != last {
			last, lastChange = c, time.Now()
		} else if want == 0 && time.Since(lastChange) > 300*time.Millisecond {
			return lastChange
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Now()
}

func latencies(rcv *receiver, acked []published, subs int) (p50, p99, max time.Duration, lost int64) {
	var ds []time.Duration
	for _, p := range acked {
		for i := 0; i < subs; i++ {
			at, ok := rcv.arrival(p.jti + "sub=" + strconv.Itoa(i))
			if !ok {
				lost++
				continue
			}
			ds = append(ds, at.Sub(p.at))
		}
	}
	if len(ds) == 0 {
		return 0, 0, 0, lost
	}
	slices.Sort(ds)
	q := func(f float64) time.Duration {
		return ds[min(len(ds)-1, int(f*float64(len(ds))))].Round(10 * time.Microsecond)
	}
	return q(0.50), q(0.99), ds[len(ds)-1].Round(10 * time.Microsecond), lost
}

// setup creates the org "bench" and a client with publish and subscribe,
// and returns its token and the org's id.
func setup(client *http.Client, base, adminID, adminSecret string) (string, int64, error) {
	admin, err := token(client, base, adminID, adminSecret)
	if err != nil {
		return "", 0, err
	}
	var org struct {
		ID int64 `json:"id"`
	}
	if err := doJSON(client, "POST", base+"/api/v1/orgs", admin, map[string]any{"name": "bench"}, &org); err != nil {
		return "", 0, err
	}
	var cl struct{ ClientID, ClientSecret string }
	if err := doJSON(client, "POST", base+"/api/v1/orgs/bench/clients", admin,
		map[string]any{"name": "bench", "scopes": []string{"publish", "subscribe", "admin"}}, &cl); err != nil {
		return "", 0, err
	}
	tok, err := token(client, base, cl.ClientID, cl.ClientSecret)
	return tok, org.ID, err
}

func token(client *http.Client, base, id, secret string) (string, error) {
	req, _ := http.NewRequest("POST", base+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.SetBasicAuth(id, secret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var t struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return "", fmt.Errorf("token: %d %s", resp.StatusCode, b)
	}
	return t.AccessToken, json.NewDecoder(resp.Body).Decode(&t)
}

func doJSON(client *http.Client, method, u, tok string, in, out any) error {
	b, _ := json.Marshal(in)
	req, _ := http.NewRequest(method, u, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s %s: %d %s", method, u, resp.StatusCode, body)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func subscribe(client *http.Client, base, tok, callback string) error {
	form := url.Values{"hub.mode": {"subscribe"}, "hub.topic": {base + "/topics/bench/NOTIFICATIONS"},
		"hub.callback": {callback}, "hub.secret": {"bench-secret"}}
	req, _ := http.NewRequest("POST", base+"/hub", strings.NewReader(form.Encode()))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("subscribe: %d %s", resp.StatusCode, b)
	}
	return nil
}

func waitActive(client *http.Client, base, tok string, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var list struct {
			Subscriptions []struct {
				State string `json:"state"`
			} `json:"subscriptions"`
		}
		if err := doJSON(client, "GET", base+"/api/v1/orgs/bench/subscriptions", tok, nil, &list); err == nil {
			active := 0
			for _, s := range list.Subscriptions {
				if s.State == "active" {
					active++
				}
			}
			if active >= n {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("subscriptions not active within 30s")
}

func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func peakRSSMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

func render(rows []row, dur time.Duration, conc int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# otphub benchmarks\n\nWritten by `make bench` (`go run ./internal/e2ebench -out docs/benchmarks.md`) on %s, %s/%s, %d CPUs, %s.\n",
		time.Now().UTC().Format("2006-01-02"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	fmt.Fprintf(&b, "Each phase lasts %s with %d concurrent publishers; everything (otphub, receivers, load) runs in one process over loopback.\n\n", dur, conc)
	b.WriteString("A delivery is one event POSTed (signed) to one subscriber; with 100 subscribers each published event becomes 100 deliveries.\n")
	b.WriteString("*Raw loopback* is the same HTTP client POSTing to the same receiver with the same concurrency, measured in the same run: the ceiling for one HTTP hop on this machine.\n\n")
	b.WriteString("| log | subscribers | raw loopback POST/s | events published/s | deliveries/s | delivered ÷ raw | p50 | p99 | max | half load deliveries/s | p50 | p99 | max | peak RSS MiB | lost |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f | %.0f | %.2f | %v | %v | %v | %.0f | %v | %v | %v | %.0f | %d |\n",
			r.mode, r.subs, r.rawRate, r.publishRate, r.deliverRate, r.deliverRate/r.rawRate, r.p50, r.p99, r.max,
			r.halfRate, r.halfP50, r.halfP99, r.halfMax, r.peakRSSMiB, r.lost)
	}
	b.WriteString("\nLatency is from the publisher sending `POST /hub?hub.mode=publish` to the subscriber receiving the delivery. " +
		"Targets (issue 9): delivered ≥ 0.35× raw; p99 < 50 ms at half load; memory bounded. `lost` counts acknowledged deliveries never received and must be 0.\n")
	return b.String()
}
