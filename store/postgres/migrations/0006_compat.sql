-- 0006 (compatibility with outside producers and subscribers).
--
-- 1. Delivery idempotency is keyed by the producer too: event IDs (jti,
--    CloudEvents id) are free-form strings chosen by each producer, so two
--    producers may both send "ext-0001"; keyed without the producer the
--    second one's SMS was taken for a duplicate and never sent. The key is
--    (org_id, event_source, event_id, destination_type, destination_id),
--    event_source being the event's iss / ce_source. Tasks written before
--    keep event_source '' (their events are long expired or delivered).
---- 2. subscriptions.auto_renew: the subscriber asked for no lease
--    (hub.lease_seconds absent), so the hub renews the lease itself by
--    verifying intent again before it ends (docs/websub.md).
-- 3. payload_encryption: orgs that have Asgardeo-format deliveries
--    encrypted with their key-service key, and which generation of that
--    key is current (rotation; the keys are data keys) (docs/compatibility.md).

ALTER TABLE delivery_tasks ADD COLUMN event_source TEXT NOT NULL DEFAULT '';
ALTER TABLE delivery_tasks DROP CONSTRAINT delivery_tasks_org_event_destination_key;
ALTER TABLE delivery_tasks ADD CONSTRAINT delivery_tasks_org_source_event_destination_key
    UNIQUE (org_id, event_source, event_id, destination_type, destination_id);

ALTER TABLE subscriptions ADD COLUMN auto_renew BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE payload_encryption (
    org_id         BIGINT  PRIMARY KEY,
    enabled        BOOLEAN NOT NULL,
    key_generation BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);
