-- SMS delivery receipts: one record per SMS handed to a provider, keyed like
-- its delivery task, holding the provider's message ID, the handset state
-- and the first time each state was reported, and the failover outcome.
-- A receipt may arrive before the task row is written, so the record stands
-- on its own (no foreign key); it is purged with finished deliveries.
CREATE TABLE sms_receipts (
    org_id              BIGINT  NOT NULL,
    event_id            TEXT    NOT NULL,
    destination_type    TEXT    NOT NULL,
    destination_id      TEXT    NOT NULL,
    provider_message_id TEXT    NOT NULL,
    country_code        INTEGER NOT NULL,
    accepted_at         BIGINT  NOT NULL,
    expires_at          BIGINT  NOT NULL,
    receipt_due_at      BIGINT  NOT NULL,
    state               TEXT    NOT NULL,
    error_code          TEXT    NOT NULL,
    queued_at           BIGINT  NOT NULL,
    sent_at             BIGINT  NOT NULL,
    delivered_at        BIGINT  NOT NULL,
    failed_at           BIGINT  NOT NULL,
    last_receipt_at     BIGINT  NOT NULL,
    receipts            INTEGER NOT NULL,
    failover_status     TEXT    NOT NULL,
    failover_reason     TEXT    NOT NULL,
    failover_at         BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL,
    PRIMARY KEY (org_id, event_id, destination_type, destination_id)
);
-- The failover sweep reads only records that may still fail over.
CREATE INDEX sms_receipts_failover ON sms_receipts (expires_at) WHERE failover_status = '' AND destination_id = 'primary';
CREATE INDEX sms_receipts_updated ON sms_receipts (updated_at);

-- The jti of a challenge's current OTP event, so a verification can be
-- counted against the provider that delivered that SMS (conversion rate).
ALTER TABLE challenges ADD COLUMN event_id TEXT NOT NULL DEFAULT '';
