-- A receipt record keeps the producer (iss) of the SMS whose acceptance it
-- records: delivery keys include the producer (migration 0006), so a
-- failover must copy the event of exactly that producer's delivery task.
-- Records from before stay '' (their OTPs are long expired).
ALTER TABLE sms_receipts ADD COLUMN event_source TEXT NOT NULL DEFAULT '';
