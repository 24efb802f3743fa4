package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/otphub/otphub/store"
)

// BenchInsertDeliveryTasks measures durable retry-task writes: one task with
// one attempt per InsertDeliveryTasks call (the dispatcher's shape after a
// failed first attempt).
func BenchInsertDeliveryTasks(b *testing.B, s store.Store) {
	c := context.Background()
	org, err := s.CreateOrg(c, "bench")
	if err != nil {
		b.Fatal(err)
	}
	ev := make([]byte, 400)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("task-%d", i)
		tk := store.DeliveryTask{ID: id, OrgID: org.ID, EventID: id, DestinationType: "webhook", DestinationID: "sub",
			Event: ev, Status: store.DeliveryPending, Attempts: 1, NextAttemptAt: base.Add(time.Second), ExpiresAt: base.Add(5 * time.Minute)}
		att := store.DeliveryAttempt{TaskID: id, Number: 1, StartedAt: base, Duration: time.Millisecond, StatusCode: 503, Outcome: "retry"}
		if _, err := s.InsertDeliveryTasks(c, []store.DeliveryTask{tk}, []store.DeliveryAttempt{att}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchCreateChallenge measures OTP challenge creation.
func BenchCreateChallenge(b *testing.B, s store.Store) {
	c := context.Background()
	org, err := s.CreateOrg(c, "bench")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.CreateChallenge(c, newChallenge(org.ID, fmt.Sprintf("ch-%d", i)), store.Lockout{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchLeaseDueTasks measures leasing then completing batches of 10 due
// tasks (the retry loop's shape); task inserts are outside the timer.
func BenchLeaseDueTasks(b *testing.B, s store.Store) {
	c := context.Background()
	org, err := s.CreateOrg(c, "bench")
	if err != nil {
		b.Fatal(err)
	}
	const batch = 10
	ev := make([]byte, 400)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		tasks := make([]store.DeliveryTask, batch)
		for j := range tasks {
			id := fmt.Sprintf("task-%d-%d", i, j)
			tasks[j] = store.DeliveryTask{ID: id, OrgID: org.ID, EventID: id, DestinationType: "webhook", DestinationID: "sub",
				Event: ev, Status: store.DeliveryPending, NextAttemptAt: base, ExpiresAt: base.Add(5 * time.Minute)}
		}
		if _, err := s.InsertDeliveryTasks(c, tasks, nil); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		got, err := s.LeaseDueTasks(c, "bench", base.Add(time.Second), time.Minute, batch)
		if err != nil || len(got) != batch {
			b.Fatalf("leased %d, %v", len(got), err)
		}
		for _, tk := range got {
			if err := s.CompleteAttempt(c, tk.ID, "bench", store.DeliveryAttempt{TaskID: tk.ID, StartedAt: base, StatusCode: 200, Outcome: "success"},
				store.TaskUpdate{Status: store.DeliveryDelivered, LastStatusCode: 200}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "tasks/s")
}
