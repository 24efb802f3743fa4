package main

// The open-loop measurements (issue 16): a load client (this process), a
// webhook receiver and otphub, each its own process, over loopback. The
// load client sends requests on a fixed schedule, whatever happened to the
// previous ones, as an IdP does when users log in; a run offers several
// rates, some above what otphub sustains, and reports what was accepted,
// what was refused (503 with Retry-After) and the latency of what was
// accepted, from the request's scheduled send time to the receiver's
// receipt (so a slow acknowledgement is not hidden: no coordinated
// omission).
//
// Each rate is measured for each log mode: embedded (the embedded log and
// SQLite store, the default) and kafka (the Kafka log on a Kafka-protocol
// broker that is its own process, and the PostgreSQL store). A last pair of
// phases (embedded) subscribes a second endpoint that never answers beside
// the receiver, and reports the receiver's figures with and without it,
// otphub's memory, and what became of the hanging endpoint's deliveries.
//
// The child processes are this binary re-executed with E2EBENCH_ROLE set
// ("receiver", "hanger", "kafka" or "hub"); each dies with its parent
// (Pdeathsig) and exits by itself after E2EBENCH_MAX_LIFE (default 15m) in
// any case.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/otphub/otphub/app"
	"github.com/otphub/otphub/config"
)

// Roles of the re-executed child processes.
const (
	roleEnv      = "E2EBENCH_ROLE"
	roleReceiver = "receiver"
	roleHanger   = "hanger"
	roleKafka    = "kafka"
	roleHub      = "hub"
)

// Log modes of the open loop.
const (
	modeEmbedded = "embedded" // embedded log, SQLite store
	modeKafka    = "kafka"    // Kafka log (a kfake broker process), PostgreSQL store
)

// runRole runs this process as a child role and never returns.
func runRole(role string) {
	life := 15 * time.Minute
	if v, err := time.ParseDuration(os.Getenv("E2EBENCH_MAX_LIFE")); err == nil && v > 0 {
		life = v
	}
	time.AfterFunc(life, func() { log.Printf("%s: E2EBENCH_MAX_LIFE %s reached, exiting", role, life); os.Exit(2) })
	var err error
	switch role {
	case roleReceiver:
		err = serveReceiver()
	case roleHanger:
		err = serveHanger()
	case roleKafka:
		err = serveKafka()
	case roleHub:
		err = serveHub(os.Args[1:])
	default:
		err = fmt.Errorf("unknown %s %q", roleEnv, role)
	}
	if err != nil {
		log.Fatalf("%s: %v", role, err)
	}
	os.Exit(0)
}

// arrivals is the receiver's record: the first receipt time (Unix ns) of
// each event, keyed by the event's sendTo (the load client gives every
// event its own number).
type arrivals struct {
	mu    sync.Mutex
	first map[string]int64
	dups  int64
}

// serveReceiver is the webhook receiver process: it answers intent
// verification, records each delivery (POST /cb), answers raw POSTs
// (POST /raw) with nothing else, and serves its record (GET /arrivals,
// POST /reset). It prints its address on stdout, then serves until killed.
func serveReceiver() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	a := &arrivals{first: map[string]int64{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cb", answerIntent)
	mux.HandleFunc("POST /cb", func(w http.ResponseWriter, r *http.Request) {
		now := time.Now().UnixNano()
		body, _ := io.ReadAll(r.Body)
		if to := sendTo(body); to != "" {
			a.mu.Lock()
			if _, ok := a.first[to]; ok {
				a.dups++
			} else {
				a.first[to] = now
			}
			a.mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /raw", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /count", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		n := len(a.first)
		a.mu.Unlock()
		fmt.Fprint(w, n)
	})
	mux.HandleFunc("GET /arrivals", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		_ = json.NewEncoder(w).Encode(struct {
			First map[string]int64
			Dups  int64
		}{a.first, a.dups})
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.first, a.dups = map[string]int64{}, 0
		a.mu.Unlock()
	})
	fmt.Printf("ADDR %s\n", ln.Addr())
	return http.Serve(ln, mux)
}

// answerIntent answers a WebSub intent verification.
func answerIntent(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, r.URL.Query().Get("hub.challenge"))
}

// hangStats is the hanging endpoint's record.
type hangStats struct {
	Received  int64 // deliveries that reached it
	Held      int64 // held now
	Peak      int64 // most held at once
	Abandoned int64 // held until otphub gave up on them (closed the connection)
}

// serveHanger is the hanging webhook endpoint process: it answers intent
// verification, then holds every delivery without answering until otphub
// gives up on it, and serves its record (GET /stats). It prints its
// address on stdout, then serves until killed.
func serveHanger() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var st hangStats
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cb", answerIntent)
	mux.HandleFunc("POST /cb", func(w http.ResponseWriter, r *http.Request) {
		// Read the body: only then does the server notice otphub closing
		// the connection (its attempt timeout) and end r.Context().
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		st.Received++
		st.Held++
		st.Peak = max(st.Peak, st.Held)
		mu.Unlock()
		<-r.Context().Done()
		mu.Lock()
		st.Held--
		st.Abandoned++
		mu.Unlock()
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(st)
	})
	fmt.Printf("ADDR %s\n", ln.Addr())
	return http.Serve(ln, mux)
}

// serveKafka is the Kafka-protocol broker process of the kafka mode: one
// kfake broker on 127.0.0.1, in memory. It prints its address on stdout,
// then serves until SIGTERM.
func serveKafka() error {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return err
	}
	defer c.Close()
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
	fmt.Printf("ADDR %s\n", strings.Join(c.ListenAddrs(), ","))
	<-ch
	return nil
}

// sendTo finds the event's "sendTo" value in a delivered body.
func sendTo(body []byte) string {
	const key = `"sendTo":"`
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		return ""
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// serveHub is the otphub process: `otphub serve` with args (the same
// app.New and Serve), plus net/http/pprof on E2EBENCH_PPROF_ADDR when set.
// It prints its address on stdout and serves until SIGTERM.
func serveHub(args []string) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if addr := os.Getenv("E2EBENCH_PPROF_ADDR"); addr != "" {
		runtime.SetBlockProfileRate(int(100 * time.Microsecond))
		runtime.SetMutexProfileFraction(10)
		go func() { log.Println(http.ListenAndServe(addr, nil)) }()
	}
	cfg, err := config.Parse(append([]string{"--addr", ln.Addr().String()}, args...), func(string) string { return "" }, io.Discard)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
		<-ch
		stop()
	}()
	a, err := app.New(ctx, cfg, app.Options{Stdout: io.Discard, Stderr: os.Stderr, Registry: prometheus.NewRegistry(), Version: "bench"})
	if err != nil {
		return err
	}
	fmt.Printf("ADDR %s\n", ln.Addr())
	return a.Serve(ctx, ln)
}

// child is a started child process.
type child struct {
	cmd  *exec.Cmd
	addr string
}

// startChild starts this binary in role with args and extra environment,
// and waits for the address it prints.
func startChild(role string, args []string, env ...string) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), roleEnv+"="+role), env...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
				line <- a
			}
		}
		close(line) // the child closed its output: it has exited
	}()
	select {
	case a, ok := <-line:
		if !ok {
			return nil, fmt.Errorf("%s exited before it listened: %v (its stderr is above)", role, cmd.Wait())
		}
		return &child{cmd: cmd, addr: a}, nil
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%s did not start within 60s", role)
	}
}

// stop ends the child (SIGTERM, then SIGKILL after 10s) and reaps it.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// cpu is the CPU time the child used so far (/proc/<pid>/stat utime+stime);
// none for no child.
func (c *child) cpu() time.Duration {
	if c == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * (time.Second / 100) // USER_HZ
}

// cores is the CPU a phase used over its offered window, in cores, by
// process: otphub, the load client (this process), the receiver, the
// Kafka-protocol broker (kafka mode), and the whole machine (every
// process, PostgreSQL's included), to show which of them bounds it.
type cores struct {
	hub, client, receiver, broker, machine float64
}

func (c cores) String() string {
	s := fmt.Sprintf("otphub %.2f, load client %.2f, receiver %.2f", c.hub, c.client, c.receiver)
	if c.broker > 0 {
		s += fmt.Sprintf(", broker %.2f", c.broker)
	}
	return s + fmt.Sprintf(", machine %.2f of %d", c.machine, runtime.NumCPU())
}

// cell is c as a table cell: "1.10 / 0.40 / 0.30; 1.95" (a broker's
// figure fourth when there is one).
func (c cores) cell() string {
	s := fmt.Sprintf("%.2f / %.2f / %.2f", c.hub, c.client, c.receiver)
	if c.broker > 0 {
		s += fmt.Sprintf(" / %.2f", c.broker)
	}
	return s + fmt.Sprintf("; %.2f", c.machine)
}

// meter measures cores from its start until read.
type meter struct {
	hub, rcv, broker          *child // broker nil in the embedded mode
	start                     time.Time
	hub0, client0, rcv0, brk0 time.Duration
	machine0                  time.Duration
}

func startMeter(hub, rcv, broker *child) *meter {
	return &meter{hub: hub, rcv: rcv, broker: broker, start: time.Now(),
		hub0: hub.cpu(), client0: cpuTime(), rcv0: rcv.cpu(), brk0: broker.cpu(), machine0: machineBusy()}
}

func (m *meter) read() cores {
	el := time.Since(m.start).Seconds()
	per := func(d time.Duration) float64 { return d.Seconds() / el }
	return cores{hub: per(m.hub.cpu() - m.hub0), client: per(cpuTime() - m.client0), receiver: per(m.rcv.cpu() - m.rcv0),
		broker: per(m.broker.cpu() - m.brk0), machine: per(machineBusy() - m.machine0)}
}

// machineBusy is the CPU time all processes used so far (/proc/stat: every
// state but idle and iowait, summed over the CPUs).
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is already in user
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * (time.Second / 100) // USER_HZ
}

// peakRSSMiB is the child's peak RSS so far; rssMiB its current RSS.
func (c *child) peakRSSMiB() float64 { return statusMiB(strconv.Itoa(c.cmd.Process.Pid), "VmHWM") }
func (c *child) rssMiB() float64     { return statusMiB(strconv.Itoa(c.cmd.Process.Pid), "VmRSS") }

// openConfig is one open-loop run's settings.
type openConfig struct {
	modes          []string  // log modes, each measured at every rate
	postgresURL    string    // the PostgreSQL of the kafka mode; each phase gets its own schema
	publishRates   []float64 // offered events/s, hub publish → webhook
	challengeRates []float64 // offered challenges/s, SMS OTP start → webhook
	dur            time.Duration
	drain          time.Duration // how long to wait for deliveries after the schedule ends
	conc           int           // raw loop concurrency
	maxInflight    int           // the load client's bound on requests in flight
	profileKind    string        // the phase kind to profile: "publish" or "challenge"
	profileRate    float64       // profile otphub during the profileKind phase at this rate (0: none)
	profileOut     string
	hang           bool    // measure the hanging-endpoint phases
	hangRate       float64 // their offered publishes/s (0: half the highest publish rate that kept up)
}

// openRow is one offered rate's outcome.
type openRow struct {
	mode       string // log mode
	kind       string // "publish" or "challenge"
	offered    float64
	sent       int
	skipped    int // not sent: the load client's in-flight bound was reached
	accepted   int
	refused    int // 503 with Retry-After
	refusedBy  map[string]int
	otherErr   int
	otherBy    map[string]int // by status and error code
	delivered  int            // accepted events received (within the drain)
	goodput    float64
	p50, p99   time.Duration
	max        time.Duration
	ackP99     time.Duration
	hubRSSMiB  float64 // peak, at the end of the drain
	cores      cores   // CPU used over the offered window, by process
	duplicates int64
	lateOrMiss int // accepted, not received within the drain

	hubPeakPhaseMiB float64      // peak RSS when the offered window ended
	hubRSSAfterMiB  float64      // RSS at the end of the drain
	hang            *hangOutcome // the hanging-endpoint phases only
}

// hangOutcome is what a hanging-endpoint phase adds to its row. The
// counters are otphub's, over the whole phase (warm-up included), for
// every webhook destination: with the receiver alone (the baseline) they
// show the receiver's share.
type hangOutcome struct {
	hanging  bool           // the hanging endpoint was subscribed
	receiver string         // the receiver's callback
	callback string         // the hanging endpoint's callback
	endpoint hangStats      // its record
	retries  float64        // otphub_retries_scheduled_total: deliveries recorded as retry tasks (refused by a busy endpoint, or failed)
	timeouts float64        // otphub_delivery_failures_total{reason="timeout"}: attempts that ran into --delivery-timeout
	pending  map[string]int // pending retry tasks after the drain, by callback (the deliveries API)
}

// openResult is a whole open-loop run.
type openResult struct {
	raw          float64
	rawCores     cores // over the raw loop
	rows         []openRow
	hangRate     float64   // offered rate of the hanging-endpoint phases
	hangRateFrom string    // how it was chosen
	hang         []openRow // receiver alone, then beside the hanging endpoint
}

const benchAdminID, benchAdminSecret = "bench-admin", "bench-admin-secret-0123456789abcdef"

func measureOpen(oc openConfig) (openResult, error) {
	var res openResult
	rcv, err := startChild(roleReceiver, nil)
	if err != nil {
		return res, err
	}
	defer rcv.stop()
	rcvURL := "http://" + rcv.addr
	client := newClient(max(oc.conc, 64))
	m := startMeter(nil, rcv, nil)
	res.raw = rawLoop(client, rcvURL+"/raw", oc.dur, oc.conc)
	res.rawCores = m.read()
	log.Printf("open loop: raw loopback POST (separate processes) %.0f/s, CPU cores: load client %.2f, receiver %.2f, machine %.2f", res.raw, res.rawCores.client, res.rawCores.receiver, res.rawCores.machine)
	for _, mode := range oc.modes {
		for _, k := range []struct {
			kind  string
			rates []float64
		}{{"publish", oc.publishRates}, {"challenge", oc.challengeRates}} {
			for _, rate := range k.rates {
				r, err := openPhase(oc, phase{mode: mode, kind: k.kind, rate: rate}, rcv)
				if err != nil {
					return res, fmt.Errorf("%s %s at %.0f/s: %w", mode, k.kind, rate, err)
				}
				logRow(r, res.raw)
				res.rows = append(res.rows, r)
			}
		}
	}
	if !oc.hang {
		return res, nil
	}
	res.hangRate, res.hangRateFrom = oc.hangRate, "-hang-rate"
	if res.hangRate == 0 {
		res.hangRate, res.hangRateFrom = hangRate(res.rows)
	}
	for _, hanging := range []bool{false, true} {
		r, err := openPhase(oc, phase{mode: modeEmbedded, kind: "publish", rate: res.hangRate, hangPair: true, hanging: hanging}, rcv)
		if err != nil {
			return res, fmt.Errorf("hanging endpoint %v, publish at %.0f/s: %w", hanging, res.hangRate, err)
		}
		logRow(r, res.raw)
		log.Printf("open loop hanging endpoint %v: it received %d, holds %d (peak %d), abandoned %d; otphub: %.0f retry tasks scheduled, %.0f attempt timeouts, pending after the drain %v; RSS peak %.0f MiB in the phase, %.0f MiB after the drain",
			hanging, r.hang.endpoint.Received, r.hang.endpoint.Held, r.hang.endpoint.Peak, r.hang.endpoint.Abandoned, r.hang.retries, r.hang.timeouts, r.hang.pending, r.hubPeakPhaseMiB, r.hubRSSAfterMiB)
		res.hang = append(res.hang, r)
	}
	return res, nil
}

func logRow(r openRow, raw float64) {
	log.Printf("open loop %s %s offered %.0f/s: accepted %d, refused %d %v, other %d %v, goodput %.0f/s (%.3f× raw), p50 %v p99 %v max %v, missing %d, duplicates %d, CPU cores %s",
		r.mode, r.kind, r.offered, r.accepted, r.refused, r.refusedBy, r.otherErr, r.otherBy, r.goodput, r.goodput/raw, r.p50, r.p99, r.max, r.lateOrMiss, r.duplicates, r.cores)
}

// defaultHangRate is the hanging-endpoint phases' offered rate when no
// embedded publish rate of the run kept up.
const defaultHangRate = 300

// hangRate is half the highest embedded publish rate of rows that kept up
// (everything sent, accepted and delivered within the drain, goodput at
// least 0.9× offered), and how it was chosen.
func hangRate(rows []openRow) (float64, string) {
	best := 0.0
	for _, r := range rows {
		if r.mode == modeEmbedded && r.kind == "publish" && r.skipped+r.refused+r.otherErr+r.lateOrMiss == 0 && r.goodput >= 0.9*r.offered {
			best = max(best, r.offered)
		}
	}
	if best == 0 {
		return defaultHangRate, "the default: no embedded publish rate of this run kept up, or none was measured"
	}
	return best / 2, fmt.Sprintf("half of %.0f/s, the highest embedded publish rate of this run that kept up", best)
}

// phase is one open-loop phase: the log mode, the path and its offered
// rate, and whether a hanging endpoint is subscribed beside the receiver.
type phase struct {
	mode     string
	kind     string
	rate     float64
	hangPair bool // one of the hanging-endpoint phases (with it or the baseline without)
	hanging  bool // the hanging endpoint is subscribed
}

// hangFigures reads a hanging-endpoint phase's figures: the hanging
// endpoint's record (hanger nil: the baseline without it), otphub's
// counters and its pending retry tasks.
func hangFigures(c *http.Client, base, tok string, callbacks []string, hanger *child) (*hangOutcome, error) {
	h := &hangOutcome{hanging: hanger != nil, receiver: callbacks[0]}
	if hanger != nil {
		h.callback = callbacks[1]
		if err := getJSON(c, "http://"+hanger.addr+"/stats", &h.endpoint); err != nil {
			return nil, err
		}
	}
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	h.retries = metricSum(text, "otphub_retries_scheduled_total", "")
	h.timeouts = metricSum(text, "otphub_delivery_failures_total", `reason="timeout"`)
	h.pending, err = pendingByCallback(c, base, tok)
	return h, err
}

// pendingByCallback counts the org's pending deliveries (retry tasks) by
// their subscription's callback, through the deliveries API.
func pendingByCallback(c *http.Client, base, tok string) (map[string]int, error) {
	var subs struct {
		Subscriptions []struct{ ID, Callback string } `json:"subscriptions"`
	}
	if err := doJSON(c, http.MethodGet, base+"/api/v1/orgs/bench/subscriptions", tok, nil, &subs); err != nil {
		return nil, err
	}
	callback := map[string]string{}
	for _, s := range subs.Subscriptions {
		callback[s.ID] = s.Callback
	}
	n := map[string]int{}
	page := base + "/api/v1/orgs/bench/deliveries?status=pending&limit=1000"
	for {
		var list struct {
			Deliveries []struct {
				DestinationID string `json:"destinationId"`
			} `json:"deliveries"`
			NextCursor string `json:"nextCursor"`
		}
		if err := doJSON(c, http.MethodGet, page, tok, nil, &list); err != nil {
			return nil, err
		}
		for _, d := range list.Deliveries {
			n[callback[d.DestinationID]]++
		}
		if list.NextCursor == "" {
			return n, nil
		}
		page = base + "/api/v1/orgs/bench/deliveries?status=pending&limit=1000&before=" + url.QueryEscape(list.NextCursor)
	}
}

// metricSum adds up the samples of the metric name in a Prometheus text
// exposition whose labels contain label ("" for every sample).
func metricSum(text []byte, name, label string) float64 {
	var sum float64
	for _, l := range strings.Split(string(text), "\n") {
		i := strings.LastIndexByte(l, ' ') // label values may hold spaces; the value does not
		if i < 0 || strings.HasPrefix(l, "#") {
			continue
		}
		series, value := l[:i], l[i+1:]
		if series != name && !strings.HasPrefix(series, name+"{") {
			continue
		}
		if label != "" && !strings.Contains(series, label) {
			continue
		}
		v, _ := strconv.ParseFloat(strings.TrimSpace(value), 64)
		sum += v
	}
	return sum
}

// backend starts what otphub needs besides itself in mode and returns its
// flags and the function that stops it (after otphub): nothing for the
// embedded mode; for kafka a Kafka-protocol broker process and a fresh
// PostgreSQL schema, dropped at the end.
func backend(oc openConfig, mode string) ([]string, *child, func(), error) {
	if mode == modeEmbedded {
		return nil, nil, func() {}, nil
	}
	broker, err := startChild(roleKafka, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	dbURL, drop, err := freshSchema(oc.postgresURL)
	if err != nil {
		broker.stop()
		return nil, nil, nil, err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	args := []string{"--kafka-brokers", broker.addr, "--kafka-partitions", "12",
		"--database-url", dbURL, "--encryption-key", hex.EncodeToString(key)}
	return args, broker, func() { drop(); broker.stop() }, nil
}

// freshSchema creates a schema in the PostgreSQL at pgURL and returns a
// URL whose search_path selects it, and the function that drops it.
func freshSchema(pgURL string) (string, func(), error) {
	u, err := url.Parse(pgURL)
	if err != nil {
		return "", nil, fmt.Errorf("-postgres-url: %w", err)
	}
	db, err := sql.Open("pgx", pgURL)
	if err != nil {
		return "", nil, err
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "otphub_bench_" + hex.EncodeToString(b)
	if _, err := db.Exec(`CREATE SCHEMA ` + schema); err != nil {
		db.Close()
		return "", nil, fmt.Errorf("PostgreSQL at %s (-postgres-url; -open-modes embedded needs none): create schema: %w", pgURL, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), func() {
		if _, err := db.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			log.Printf("drop schema %s: %v", schema, err)
		}
		db.Close()
	}, nil
}

// openPhase starts a fresh otphub (its own data directory, and in the
// kafka mode its own broker and schema, so one phase's backlog does not
// leak into the next), subscribes the receiver (and the hanging endpoint),
// offers ph.rate requests/s for oc.dur and waits up to oc.drain for the
// receiver's deliveries.
func openPhase(oc openConfig, ph phase, rcv *child) (openRow, error) {
	rcvURL := "http://" + rcv.addr
	kind, rate := ph.kind, ph.rate
	r := openRow{mode: ph.mode, kind: kind, offered: rate, refusedBy: map[string]int{}, otherBy: map[string]int{}}
	dataDir, err := os.MkdirTemp("", "otphub-openbench-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dataDir)
	args := []string{"--data-dir", dataDir, "--egress-allow-cidrs", "127.0.0.0/8", "--log-level", "error",
		"--admin-client-id", benchAdminID, "--admin-client-secret", benchAdminSecret,
		// Send budgets on, as by default (each challenge charges its number,
		// the load client's address and the org), with ceilings the offered
		// rates stay under: every challenge is a distinct number.
		"--otp-limit-per-ip", benchBudget + "/10m", "--otp-limit-per-org", benchBudget + "/1m"}
	backendArgs, broker, stopBackend, err := backend(oc, ph.mode)
	if err != nil {
		return r, err
	}
	defer stopBackend()
	args = append(args, backendArgs...)
	if extra := os.Getenv("E2EBENCH_ARGS"); extra != "" {
		args = append(args, strings.Fields(extra)...)
	}
	profile := oc.profileOut != "" && !ph.hangPair && ph.mode == oc.modes[0] && kind == oc.profileKind && rate == oc.profileRate
	var env []string
	pprofAddr := ""
	if profile {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return r, err
		}
		pprofAddr = ln.Addr().String()
		ln.Close()
		env = append(env, "E2EBENCH_PPROF_ADDR="+pprofAddr)
	}
	hub, err := startChild(roleHub, args, env...)
	if err != nil {
		return r, err
	}
	defer hub.stop()
	base := "http://" + hub.addr
	client := newClient(64)
	tok, orgID, err := setup(client, base, benchAdminID, benchAdminSecret)
	if err != nil {
		return r, err
	}
	callbacks := []string{rcvURL + "/cb"}
	var hanger *child
	if ph.hanging {
		// Stopped before otphub (deferred after it): the held connections
		// then end at once instead of holding otphub's shutdown.
		if hanger, err = startChild(roleHanger, nil); err != nil {
			return r, err
		}
		defer hanger.stop()
		callbacks = append(callbacks, "http://"+hanger.addr+"/cb")
	}
	for _, cb := range callbacks {
		if err := subscribe(client, base, tok, cb); err != nil {
			return r, err
		}
	}
	if err := waitActive(client, base, tok, len(callbacks)); err != nil {
		return r, err
	}
	send := sender(kind, base, tok, orgID)
	// Warm-up: a second at a modest rate, then a clean record.
	_ = schedule(client, send, min(rate, 200), time.Second, oc.maxInflight, "+9471")
	time.Sleep(500 * time.Millisecond)
	if err := post(client, rcvURL+"/reset"); err != nil {
		return r, err
	}

	var profDone chan error
	if profile {
		profDone = make(chan error, 1)
		go func() { profDone <- fetchProfile(pprofAddr, oc.dur, oc.profileOut) }()
	}
	meter := startMeter(hub, rcv, broker)
	outs := schedule(client, send, rate, oc.dur, oc.maxInflight, "+9477")
	r.cores = meter.read()
	r.hubPeakPhaseMiB = hub.peakRSSMiB()
	var acks []time.Duration
	want := map[string]time.Time{}
	for _, o := range outs {
		switch {
		case o.skipped:
			r.skipped++
			continue
		case o.status/100 == 2:
			r.accepted++
			want[o.to] = o.at
			acks = append(acks, o.ack)
		case o.status == http.StatusServiceUnavailable && o.retryAfter:
			r.refused++
			r.refusedBy[o.code]++
		default:
			r.otherErr++
			r.otherBy[fmt.Sprintf("%d %s", o.status, o.code)]++
		}
		r.sent++
	}
	// Drain: wait until every accepted event arrived, or oc.drain.
	drainStart := time.Now()
	for time.Since(drainStart) < oc.drain {
		if n, err := getCount(client, rcvURL+"/count"); err == nil && n >= r.accepted {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var got struct {
		First map[string]int64
		Dups  int64
	}
	if err := getJSON(client, rcvURL+"/arrivals", &got); err != nil {
		return r, err
	}
	r.duplicates = got.Dups
	r.hubRSSMiB, r.hubRSSAfterMiB = hub.peakRSSMiB(), hub.rssMiB()
	if ph.hangPair {
		if r.hang, err = hangFigures(client, base, tok, callbacks, hanger); err != nil {
			return r, err
		}
	}
	var ds []time.Duration
	var last time.Time
	for to, at := range want {
		ns, ok := got.First[to]
		if !ok {
			r.lateOrMiss++
			continue
		}
		t := time.Unix(0, ns)
		ds = append(ds, t.Sub(at))
		if t.After(last) {
			last = t
		}
	}
	r.delivered = len(ds)
	if r.delivered > 0 {
		// Goodput: accepted events delivered per second, over the offered
		// window or until the last of them arrived, whichever is longer.
		span := max(oc.dur, last.Sub(meter.start))
		r.goodput = float64(r.delivered) / span.Seconds()
		r.p50, r.p99, r.max = quantiles(ds)
	}
	if len(acks) > 0 {
		_, r.ackP99, _ = quantiles(acks)
	}
	if profDone != nil {
		if err := <-profDone; err != nil {
			log.Printf("profile: %v", err)
		}
	}
	return r, nil
}

// outcome is one scheduled request's result.
type outcome struct {
	to         string
	at         time.Time     // scheduled send time
	ack        time.Duration // answered after
	status     int
	code       string // the JSON error code of a refusal
	retryAfter bool
	skipped    bool
}

// benchBudget is the per-IP and per-org send budget of the open loop's
// otphub: far above what a phase sends, so nothing is refused for it.
const benchBudget = "10000000"

// sender returns the function that makes one request for the number to.
func sender(kind, base, tok string, orgID int64) func(*http.Client, string) (*http.Response, error) {
	topic := base + "/topics/bench/NOTIFICATIONS"
	pubURL := base + "/hub?hub.mode=publish&hub.topic=" + url.QueryEscape(topic)
	chURL := base + "/api/v1/orgs/bench/sms-otp/challenges"
	return func(c *http.Client, to string) (*http.Response, error) {
		var req *http.Request
		if kind == "publish" {
			body := fmt.Sprintf(`{"iss":"%s","jti":"%s","iat":%d,"aud":"%s","event":{"urn:ietf:params:notifications:smsOtp":{"organizationId":%d,"organizationName":"bench","sendTo":"%s","messageBody":"Your one-time password for the bench is 075052. This expires in 5 minutes."}}}`,
				base, "bench-"+to, time.Now().UnixMilli(), topic, orgID, to)
			req, _ = http.NewRequest(http.MethodPost, pubURL, strings.NewReader(body))
		} else {
			body := fmt.Sprintf(`{"mobile":"%s","userId":"alice","application":"bench"}`, to)
			req, _ = http.NewRequest(http.MethodPost, chURL, strings.NewReader(body))
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		return c.Do(req)
	}
}

// schedule sends rate requests/s for dur on a fixed schedule (request i at
// start + i/rate, whether or not earlier ones were answered), at most
// maxInflight at once (a request due while that many are in flight is
// skipped and counted), and returns every outcome once all were answered.
func schedule(client *http.Client, send func(*http.Client, string) (*http.Response, error), rate float64, dur time.Duration, maxInflight int, prefix string) []outcome {
	n := int(rate * dur.Seconds())
	outs := make([]outcome, n)
	sem := make(chan struct{}, maxInflight)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		o := &outs[i]
		o.to, o.at = fmt.Sprintf("%s%07d", prefix, i), at
		select {
		case sem <- struct{}{}:
		default:
			o.skipped = true
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			resp, err := send(client, o.to)
			o.ack = time.Since(o.at)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			o.status = resp.StatusCode
			o.retryAfter = resp.Header.Get("Retry-After") != ""
			if resp.StatusCode/100 != 2 {
				var e struct {
					Error string `json:"error"`
				}
				_ = json.NewDecoder(resp.Body).Decode(&e)
				o.code = e.Error
			}
			_, _ = io.Copy(io.Discard, resp.Body)
		}()
	}
	wg.Wait()
	return outs
}

func quantiles(ds []time.Duration) (p50, p99, mx time.Duration) {
	slices.Sort(ds)
	q := func(f float64) time.Duration {
		return ds[min(len(ds)-1, int(f*float64(len(ds))))].Round(100 * time.Microsecond)
	}
	return q(0.50), q(0.99), ds[len(ds)-1].Round(100 * time.Microsecond)
}

// fetchProfile takes a CPU profile of otphub during most of the phase
// (out), its goroutines half-way through (out.goroutines.txt) and its
// blocking and mutex profiles at the end (out.block, out.mutex).
func fetchProfile(addr string, dur time.Duration, out string) error {
	secs := max(1, int(dur.Seconds())-1)
	base := "http://" + addr + "/debug/pprof/"
	mid := time.AfterFunc(dur/2, func() {
		if err := save(base+"goroutine?debug=1", out+".goroutines.txt"); err != nil {
			log.Printf("goroutine profile: %v", err)
		}
	})
	defer mid.Stop()
	if err := save(fmt.Sprintf("%sprofile?seconds=%d", base, secs), out); err != nil {
		return err
	}
	if err := save(base+"block", out+".block"); err != nil {
		return err
	}
	return save(base+"mutex", out+".mutex")
}

func save(u, file string) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

func post(c *http.Client, u string) error {
	resp, err := c.Post(u, "text/plain", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

func getCount(c *http.Client, u string) (int, error) {
	resp, err := c.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strconv.Atoi(string(b))
}

func getJSON(c *http.Client, u string, out any) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

// parseRates reads "350,700,1500".
func parseRates(s string) ([]float64, error) {
	var rs []float64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad rate %q", f)
		}
		rs = append(rs, v)
	}
	return rs, nil
}

// modeName is a log mode as the report names it.
func modeName(mode string) string {
	if mode == modeKafka {
		return "Kafka + PostgreSQL"
	}
	return "embedded"
}

func renderOpen(b *strings.Builder, res openResult, oc openConfig) {
	if len(res.rows) > 0 {
		renderOpenRates(b, res, oc)
	}
	if len(res.hang) > 0 {
		renderHang(b, res, oc)
	}
}

func renderOpenRates(b *strings.Builder, res openResult, oc openConfig) {
	b.WriteString("\n## Open loop: separate processes, requests on a schedule\n\n")
	fmt.Fprintf(b, "The load client, the webhook receiver and otphub are three processes on loopback; one subscriber. "+
		"The *log* column is otphub's mode: *embedded* is the default (embedded log and SQLite store in its data directory); "+
		"*Kafka + PostgreSQL* is `--kafka-brokers` (12 partitions) on a Kafka-protocol broker that is a fourth process (kfake, in memory) and `--database-url` on the PostgreSQL at 127.0.0.1:5432; "+
		"the *CPU cores* column is each process's CPU over the offered window, in cores: otphub / the load client / the receiver (/ the broker), and then the whole machine's (every process, PostgreSQL's included) out of its %d; the memory column is otphub's process only. "+
		"Each offered rate runs %s against a fresh otphub (its own data directory; in the Kafka mode also its own broker and PostgreSQL schema), then waits up to %s for the accepted events to arrive. "+
		"Requests are sent on a fixed schedule (request *i* at start + *i*/rate), each on its own connection slot, whether or not the earlier ones were answered "+
		"(at most %d in flight; a request due beyond that is *skipped* and counted). A refused request (503 with Retry-After) is not retried. "+
		"Latency is from a request's *scheduled* send time to the receiver's receipt, for accepted events only. "+
		"Challenges are started with the send budgets on, as by default (each one charges its number, the client's address and the org; per-IP and per-org ceilings far above the offered rates, a distinct number per challenge), so none is refused for them. "+
		"*Raw loopback* here is the load client POSTing to the receiver process (%d concurrent, closed loop), measured in the same run: **%.0f POST/s** (load client %.2f cores, receiver %.2f, machine %.2f).\n\n",
		runtime.NumCPU(), oc.dur, oc.drain, oc.maxInflight, oc.conc, res.raw, res.rawCores.client, res.rawCores.receiver, res.rawCores.machine)
	b.WriteString("| log | path | offered/s | sent | accepted | refused 503 (Retry-After) | other errors | skipped | goodput/s | goodput ÷ raw | p50 | p99 | max | ack p99 | missing after drain | CPU cores: otphub / client / receiver (/ broker); machine | otphub peak RSS MiB |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range res.rows {
		path := "hub publish → webhook"
		if r.kind == "challenge" {
			path = "SMS OTP challenge start → webhook"
		}
		fmt.Fprintf(b, "| %s | %s | %.0f | %d | %d | %s | %s | %d | %.0f | %.3f | %v | %v | %v | %v | %d | %s | %.0f |\n",
			modeName(r.mode), path, r.offered, r.sent, r.accepted, countBy(r.refused, r.refusedBy), countBy(r.otherErr, r.otherBy), r.skipped, r.goodput, r.goodput/res.raw,
			r.p50, r.p99, r.max, r.ackP99, r.lateOrMiss, r.cores.cell(), r.hubRSSMiB)
	}
	b.WriteString("\n*Goodput* is accepted events delivered per second, over the offered window or until the last of them arrived, whichever is longer; " +
		"*ack p99* is the 99th percentile of the time from a request's scheduled send to its answer; *missing after drain* counts accepted events the receiver had not got when the drain ended; " +
		"*otphub peak RSS* is the otphub process's high-water mark over the phase and its drain. " +
		"Targets (issue 16): capacity ≥ 0.35× raw; offered more than capacity, goodput ≥ 0.9× capacity and p99 under a second; p99 < 50 ms at half of capacity; " +
		"SMS OTP challenge start → webhook ≥ 0.25× raw; the Kafka + PostgreSQL figures are reported, without a target of their own.\n")
}

func renderHang(b *strings.Builder, res openResult, oc openConfig) {
	b.WriteString("\n## Open loop: a hanging endpoint beside a healthy one\n\n")
	fmt.Fprintf(b, "The same three processes (embedded log), hub publish → webhook offered at **%.0f events/s** (%s) for %s, twice: "+
		"once with the receiver as the only subscriber, once with a second subscription of the same org on the same topic whose endpoint (a fourth process, its own port) "+
		"accepts each delivery's connection and request and never answers, until otphub gives up (`--delivery-timeout`, default 10 s). "+
		"Each run gets a fresh otphub and waits up to %s for the receiver's deliveries; latency is from a publish's *scheduled* send time to the receiver's receipt, for accepted events only. "+
		"A slow endpoint must never delay another: the two rows' receiver figures should match. "+
		"*Raw loopback* is the load client POSTing to the receiver process, measured in the same run: **%.0f POST/s**.\n\n",
		res.hangRate, res.hangRateFrom, oc.dur, oc.drain, res.raw)
	b.WriteString("| subscribers | offered/s | accepted | refused 503 (Retry-After) | healthy goodput/s | goodput ÷ raw | healthy p50 | healthy p99 | healthy max | healthy missing after drain | hanging endpoint: received | held at once (peak) | abandoned by otphub | retry tasks scheduled | attempt timeouts | pending retry tasks after drain: receiver | hanging endpoint | otphub peak RSS MiB in the phase | otphub RSS MiB after the drain |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range res.hang {
		subs, rcvd, peak, abandoned, pending := "receiver alone", "—", "—", "—", "—"
		if r.hang.hanging {
			e := r.hang.endpoint
			subs, rcvd, peak, abandoned = "receiver + hanging endpoint", strconv.FormatInt(e.Received, 10), strconv.FormatInt(e.Peak, 10), strconv.FormatInt(e.Abandoned, 10)
			pending = strconv.Itoa(r.hang.pending[r.hang.callback])
		}
		fmt.Fprintf(b, "| %s | %.0f | %d | %s | %.0f | %.3f | %v | %v | %v | %d | %s | %s | %s | %.0f | %.0f | %d | %s | %.0f | %.0f |\n",
			subs, r.offered, r.accepted, countBy(r.refused, r.refusedBy), r.goodput, r.goodput/res.raw, r.p50, r.p99, r.max, r.lateOrMiss,
			rcvd, peak, abandoned, r.hang.retries, r.hang.timeouts, r.hang.pending[r.hang.receiver], pending, r.hubPeakPhaseMiB, r.hubRSSAfterMiB)
	}
	b.WriteString("\n*Accepted* and *refused* are the publishes (the org has a healthy destination, so back-pressure should refuse none). " +
		"The *healthy* columns are the receiver's: goodput (accepted events it received per second, over the offered window or until the last arrived), latency and accepted events it had not received when the drain ended. " +
		"*Hanging endpoint: received* counts the deliveries that reached the hanging endpoint (warm-up included), *held at once* the most it held open together " +
		"(otphub's per-endpoint concurrency cap bounds it), *abandoned by otphub* those otphub closed (its attempt timeout). " +
		"The next two are otphub's own counters for every webhook destination, warm-up included (the first row shows the receiver's share): " +
		"*retry tasks scheduled* (`otphub_retries_scheduled_total`) counts deliveries recorded in the store as pending retry tasks, " +
		"the hanging endpoint's overflow refused by its full concurrency cap and queue, and its timed-out attempts; " +
		"*attempt timeouts* is `otphub_delivery_failures_total{reason=\"timeout\"}`. " +
		"*Pending retry tasks after drain* are the org's deliveries with status `pending` (`GET /api/v1/orgs/{org}/deliveries?status=pending`) when the drain ended, by subscription. " +
		"The rest of what the hanging endpoint was sent waits in its bounded in-memory queue (256 deep). " +
		"*Peak RSS in the phase* is otphub's high-water mark when the offered window ended (warm-up included); *RSS after the drain* is its resident set when the drain ended. " +
		"Target (issue 16): memory bounded, and the hanging endpoint never delays the healthy one.\n")
}

// countBy is n followed by its breakdown by code: "12 (delivery_backlog 12)".
func countBy(n int, by map[string]int) string {
	s := strconv.Itoa(n)
	if len(by) == 0 {
		return s
	}
	var parts []string
	for code, k := range by {
		parts = append(parts, fmt.Sprintf("%s %d", code, k))
	}
	slices.Sort(parts)
	return s + " (" + strings.Join(parts, ", ") + ")"
}
