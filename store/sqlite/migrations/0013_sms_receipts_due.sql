-- DueFailovers (every second) read every primary SMS not yet failed over
-- and unexpired through sms_receipts_failover: every SMS in flight, 300,000
-- at 1,000 OTPs/s with 5-minute OTPs. Its two cases get an index each, and
-- each holds only the SMS it may return: those a final receipt said were
-- undelivered or failed, and those still silent that expect a receipt
-- (ordered by when it is due).
CREATE INDEX sms_receipts_failed ON sms_receipts (expires_at)
    WHERE failover_status = '' AND destination_id = 'primary' AND state IN ('undelivered', 'failed');
CREATE INDEX sms_receipts_due ON sms_receipts (receipt_due_at)
    WHERE failover_status = '' AND destination_id = 'primary' AND receipt_due_at > 0 AND state NOT IN ('delivered', 'undelivered', 'failed');
DROP INDEX sms_receipts_failover;
