-- Delivery idempotency is per organization: a provider destination's ID is
-- its slot name (primary, fallback), the same in every org, and a jti is
-- chosen by the publisher, so two orgs may share one. Keyed without the org,
-- the second org's task was taken for a duplicate and its event never sent.

ALTER TABLE delivery_tasks DROP CONSTRAINT delivery_tasks_event_id_destination_type_destination_id_key;
ALTER TABLE delivery_tasks ADD CONSTRAINT delivery_tasks_org_event_destination_key
    UNIQUE (org_id, event_id, destination_type, destination_id);
