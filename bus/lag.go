package bus

// Lagger is implemented by consumers that can tell how far behind they
// are. Both adapters' consumers implement it; the router exports it as
// otphub_log_consumer_lag_records. The embedded log reports the exact
// number of records past the group's committed positions; Kafka reports
// kafka-go's estimate for the partition fetched most recently.
type Lagger interface {
	Lag() int64
}
