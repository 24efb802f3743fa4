package dispatcher_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/otphub/otphub/delivery"
	"github.com/otphub/otphub/dispatcher/backlog"
	dt "github.com/otphub/otphub/dispatcher/dispatchertest"
	"github.com/otphub/otphub/event"
	"github.com/otphub/otphub/store"
)

const backlogInterval = 10 * time.Millisecond

// addPending stores n pending retry tasks of (destType, destID) for orgID.
func (e *env) addPending(orgID int64, destType, destID string, n int) {
	e.t.Helper()
	now := time.Now()
	tasks := make([]store.DeliveryTask, n)
	for i := range tasks {
		id := uuid.NewString()
		tasks[i] = store.DeliveryTask{ID: id, OrgID: orgID, EventID: "ev-" + id, DestinationType: destType, DestinationID: destID,
			Event: []byte(`{}`), Status: store.DeliveryPending, Attempts: 1, NextAttemptAt: now.Add(time.Hour),
			ExpiresAt: now.Add(2 * time.Hour), CreatedAt: now, UpdatedAt: now}
	}
	if _, err := e.st.InsertDeliveryTasks(context.Background(), tasks, nil); err != nil {
		e.t.Fatal(err)
	}
}

// startBacklog runs a gate of limit over e's store and resolvers rs.
func (e *env) startBacklog(t *testing.T, limit int64, rs ...backlog.TargetResolver) (*backlog.Gate, func() float64) {
	t.Helper()
	reg := newReg()
	b, err := backlog.New(backlog.Config{Limit: limit, Interval: backlogInterval}, e.st, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	b.UseResolvers(rs...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return b, func() float64 { return metric(t, reg, "otphub_publish_backpressure_total", nil) }
}

func provider(typ, slot string) delivery.Target {
	return delivery.Target{Type: typ, ID: slot, Sender: dt.NewSender("http://127.0.0.1:1")}
}

// TestBacklogGateCountsPerDestination: an org is refused only when every
// destination its next event would go to is backed up; a dead webhook
// beside a working provider refuses nothing, and the counts of one org
// never refuse another (even one whose destination has the same ID).
func TestBacklogGateCountsPerDestination(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	other, err := e.st.CreateOrg(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	const limit = 3
	dead, twilio := dt.Webhook("sub-dead", "http://127.0.0.1:1/cb"), provider(dt.TypeTwilio, store.ProviderPrimary)
	e.res.Set(org, dead, twilio)
	e.res.Set(other.Name, dt.Webhook("sub-dead", "http://127.0.0.1:2/cb"))
	e.addPending(e.orgID, dt.TypeWebhook, "sub-dead", limit+1)
	e.addPending(e.orgID, dt.TypeTwilio, store.ProviderPrimary, limit) // at the limit: not over it
	e.addPending(other.ID, dt.TypeWebhook, "sub-dead", limit)
	b, refusals := e.startBacklog(t, limit, e.res)

	// Only the webhook is backed up: once the gate has read the counts
	// (shown by refusing the org when the provider is gone), the org with
	// its provider is accepted.
	e.res.Set(org, dead)
	dt.Eventually(t, 5*time.Second, func() bool { over, _ := b.Over(ctx, e.orgID, org); return over },
		"the org whose only destination is backed up was never refused")
	over, wait := b.Over(ctx, e.orgID, org)
	if !over || wait != backlogInterval {
		t.Fatalf("only destination backed up: Over = %v, %v; want true, %v", over, wait, backlogInterval)
	}
	e.res.Set(org, dead, twilio)
	if over, _ := b.Over(ctx, e.orgID, org); over {
		t.Fatal("a dead webhook beside a working provider refused the org")
	}
	if over, _ := b.Over(ctx, other.ID, other.Name); over {
		t.Fatal("another org (same destination ID, at the limit) was refused")
	}

	// Every destination backed up: refused, with Retry-After, and counted.
	e.addPending(e.orgID, dt.TypeTwilio, store.ProviderPrimary, 1)
	dt.Eventually(t, 5*time.Second, func() bool { over, _ := b.Over(ctx, e.orgID, org); return over },
		"the org whose every destination is backed up was never refused")
	before := refusals()
	if over, wait := b.Over(ctx, e.orgID, org); !over || wait != backlogInterval {
		t.Fatalf("every destination backed up: Over = %v, %v; want true, %v", over, wait, backlogInterval)
	}
	if got := refusals() - before; got != 1 {
		t.Fatalf("otphub_publish_backpressure_total grew by %v for one refusal, want 1", got)
	}
	if over, _ := b.Over(ctx, other.ID, other.Name); over {
		t.Fatal("another org was refused")
	}

	// A new destination has nothing pending: the org publishes again.
	e.res.Set(org, dead, twilio, dt.Webhook("sub-new", "http://127.0.0.1:3/cb"))
	if over, _ := b.Over(ctx, e.orgID, org); over {
		t.Fatal("an org with a new, empty destination was refused")
	}
	// No destination at all: the event joins no backlog.
	e.res.Set(org)
	if over, _ := b.Over(ctx, e.orgID, org); over {
		t.Fatal("an org without destinations was refused")
	}
}

// TestBacklogGateFallback: a provider whose primary is backed up still
// takes events when its fallback is not (an open circuit hands first
// attempts over to it).
func TestBacklogGateFallback(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	primary, fallback := provider(dt.TypeTwilio, store.ProviderPrimary), provider(dt.TypeVonage, store.ProviderFallback)
	primary.Fallback = &fallback
	dead := dt.Webhook("sub-dead", "http://127.0.0.1:1/cb")
	e.res.Set(org, dead)
	e.addPending(e.orgID, dt.TypeWebhook, "sub-dead", 2)
	e.addPending(e.orgID, dt.TypeTwilio, store.ProviderPrimary, 2)
	b, _ := e.startBacklog(t, 1, e.res)
	dt.Eventually(t, 5*time.Second, func() bool { over, _ := b.Over(ctx, e.orgID, org); return over },
		"the gate never read the counts")

	e.res.Set(org, dead, primary)
	if over, _ := b.Over(ctx, e.orgID, org); over {
		t.Fatal("refused although the provider's fallback is not backed up")
	}
	e.addPending(e.orgID, dt.TypeVonage, store.ProviderFallback, 2)
	dt.Eventually(t, 5*time.Second, func() bool { over, _ := b.Over(ctx, e.orgID, org); return over },
		"primary, fallback and webhook all backed up, yet not refused")
}

type failingResolver struct{}

func (failingResolver) Resolve(context.Context, *event.SmsOtpNotificationEvent) ([]delivery.Target, error) {
	return nil, errors.New("store unreachable")
}

// TestBacklogGateFailsOpen: when the org's destinations cannot be resolved
// the gate cannot tell whether one still works, so it does not refuse;
// and a limit of 0 disables the gate.
func TestBacklogGateFailsOpen(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.res.Set(org, dt.Webhook("sub-dead", "http://127.0.0.1:1/cb"))
	e.addPending(e.orgID, dt.TypeWebhook, "sub-dead", 3)

	b, _ := e.startBacklog(t, 1, e.res)
	dt.Eventually(t, 5*time.Second, func() bool { over, _ := b.Over(ctx, e.orgID, org); return over },
		"the gate never read the counts")
	b.UseResolvers(e.res, failingResolver{})
	if over, _ := b.Over(ctx, e.orgID, org); over {
		t.Fatal("refused although the org's destinations could not be resolved")
	}
	off, _ := e.startBacklog(t, 0, e.res)
	if over, _ := off.Over(ctx, e.orgID, org); over {
		t.Fatal("a disabled gate refused")
	}
	if _, err := backlog.New(backlog.Config{Limit: -1}, e.st, nil, nil); err == nil {
		t.Fatal("a negative limit was accepted")
	}
}

// queueLoads is a backlog.Local whose endpoint queue loads, by endpoint
// key, the test sets.
type queueLoads struct{ m map[string]float64 }

func (q *queueLoads) AnyLoaded() bool { return len(q.m) > 0 }
func (q *queueLoads) QueueLoad(orgID int64, t *delivery.Target) float64 {
	return q.m[t.EndpointKey(orgID)]
}
func (q *queueLoads) LogWait(int64) (time.Duration, bool) { return 0, false }

// refusedOf counts how many of n Over calls for the org refuse, failing
// the test on a refusal whose Retry-After is not LocalRetryAfter.
func refusedOf(t *testing.T, b *backlog.Gate, orgID int64, name string, n int) int {
	t.Helper()
	refused := 0
	for range n {
		if over, wait := b.Over(context.Background(), orgID, name); over {
			if wait != backlog.LocalRetryAfter {
				t.Fatalf("a refusal for a queue's load: Retry-After %v, want %v", wait, backlog.LocalRetryAfter)
			}
			refused++
		}
	}
	return refused
}

// TestBacklogGateQueueLoad: with the engine of the same process as a
// source, a share of an org's new events is refused, with a short
// Retry-After, rising with how full its least loaded destination's
// endpoint queue is: none up to half full, about half at three quarters,
// all when full (before any backlog is stored). A destination keeping up
// beside it, a fallback with room, or another org's loaded endpoint
// refuses nothing.
func TestBacklogGateQueueLoad(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	other, err := e.st.CreateOrg(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	fast, twilio := dt.Webhook("sub-fast", "http://127.0.0.1:1/cb"), provider(dt.TypeTwilio, store.ProviderPrimary)
	e.res.Set(org, fast)
	e.res.Set(other.Name, dt.Webhook("sub-other", "http://127.0.0.1:1/cb"))
	b, refusals := e.startBacklog(t, 1000, e.res)
	q := &queueLoads{m: map[string]float64{}}
	b.UseLocal(q)
	const n = 400
	key := fast.EndpointKey(e.orgID)
	for _, c := range []struct {
		load     float64
		min, max int
	}{{0, 0, 0}, {0.5, 0, 0}, {0.75, n / 4, 3 * n / 4}, {1, n, n}, {1.5, n, n}} {
		q.m[key] = c.load
		if got := refusedOf(t, b, e.orgID, org, n); got < c.min || got > c.max {
			t.Fatalf("queue load %v: %d of %d refused, want %d to %d", c.load, got, n, c.min, c.max)
		}
	}
	if refusals() < n {
		t.Fatalf("otphub_publish_backpressure_total = %v, want at least %d", refusals(), n)
	}
	if got := refusedOf(t, b, other.ID, other.Name, n); got != 0 {
		t.Fatalf("another org's endpoint on the same host: %d refused", got)
	}
	e.res.Set(org, fast, twilio)
	if got := refusedOf(t, b, e.orgID, org, n); got != 0 {
		t.Fatalf("a full webhook beside a provider keeping up: %d refused", got)
	}
	withFallback := twilio
	fallback := provider(dt.TypeVonage, store.ProviderFallback)
	withFallback.Fallback = &fallback
	q.m[twilio.EndpointKey(e.orgID)] = 1
	e.res.Set(org, fast, withFallback)
	if got := refusedOf(t, b, e.orgID, org, n); got != 0 {
		t.Fatalf("full endpoints whose fallback has room: %d refused", got)
	}
	q.m = map[string]float64{}
	e.res.Set(org, fast)
	if got := refusedOf(t, b, e.orgID, org, n); got != 0 {
		t.Fatalf("once the queue has room: %d refused", got)
	}
}

// TestBacklogGateLogWait: with the engine of the same process as a source,
// an org whose records waited in the log MaxLogWait or longer before the
// router took them is refused (short Retry-After), whatever its
// destinations and even with the destination gate off (Limit 0); an org
// with nothing waiting is not; the refusal lapses once the org's records
// are routed promptly again, or a second after its last one. The wait is
// measured by a real engine over the embedded log: the late records are
// published before the engine starts.
func TestBacklogGateLogWait(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	orgs := map[string]int64{org: e.orgID}
	for _, name := range []string{"idle", "quiet"} {
		o, err := e.st.CreateOrg(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		orgs[name] = o.ID
	}
	rcv := dt.NewReceiver(t, nil)
	for name := range orgs {
		e.res.Set(name, dt.Webhook("sub-"+name, rcv.URL))
	}
	reg := newReg()
	b, err := backlog.New(backlog.Config{Limit: 1000, Interval: backlogInterval, MaxLogWait: 300 * time.Millisecond}, e.st, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	noDest, err := backlog.New(backlog.Config{MaxLogWait: 300 * time.Millisecond}, e.st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.UseResolvers(e.res)
	noDest.UseResolvers(e.res)

	late, quiet := e.event(time.Minute), dt.NewEvent("quiet", orgs["quiet"], time.Minute)
	e.publish(late, quiet)
	time.Sleep(400 * time.Millisecond) // the records wait in the log: no engine yet
	eng := e.start(testConfig(e.clock))
	b.UseLocal(eng)
	noDest.UseLocal(eng)
	dt.Eventually(t, 10*time.Second, func() bool { return rcv.Delivered(late.ID) == 1 && rcv.Delivered(quiet.ID) == 1 },
		"the late records were not delivered")
	if wait, ok := eng.LogWait(e.orgID); !ok || wait < 400*time.Millisecond {
		t.Fatalf("LogWait = %v, %v; want the 400 ms the record waited", wait, ok)
	}
	over, retry := b.Over(ctx, e.orgID, org)
	if !over || retry != backlog.LocalRetryAfter || metric(t, reg, "otphub_publish_backpressure_total", nil) != 1 {
		t.Fatalf("records waited 400 ms, bound 300 ms: Over = %v, %v; want true, %v", over, retry, backlog.LocalRetryAfter)
	}
	if over, _ := noDest.Over(ctx, e.orgID, org); !over {
		t.Fatal("Limit 0 turned the log-wait bound off too")
	}
	if over, _ := b.Over(ctx, orgs["quiet"], "quiet"); !over {
		t.Fatal("the other org whose record waited was not refused")
	}
	if over, _ := b.Over(ctx, orgs["idle"], "idle"); over {
		t.Fatal("an org with no records waiting was refused")
	}

	prompt := e.event(time.Minute)
	e.publish(prompt)
	dt.Eventually(t, 10*time.Second, func() bool { return rcv.Delivered(prompt.ID) == 1 }, "the next record was not delivered")
	if over, _ := b.Over(ctx, e.orgID, org); over {
		wait, _ := eng.LogWait(e.orgID)
		t.Fatalf("refused after a record routed promptly (waited %v)", wait)
	}
	dt.Eventually(t, 5*time.Second, func() bool { over, _ := b.Over(ctx, orgs["quiet"], "quiet"); return !over },
		"still refused seconds after the org's last record")
	if _, err := backlog.New(backlog.Config{MaxLogWait: -time.Second}, e.st, nil, nil); err == nil {
		t.Fatal("a negative MaxLogWait was accepted")
	}
}
