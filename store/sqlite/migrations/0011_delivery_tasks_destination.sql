-- The deliveries list filtered by destination (GET …/deliveries?
-- destinationType=…&destinationId=…, the console's Webhooks and Deliveries
-- pages): one destination's tasks of an org, newest first.
CREATE INDEX delivery_tasks_destination ON delivery_tasks (org_id, destination_type, destination_id, created_at, id);
