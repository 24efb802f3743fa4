-- Dead letters counted for the otphub_dead_letters gauge every
-- --stats-interval (DeliveryStats) without reading the finished tasks kept
-- for the retention; pending ones have delivery_tasks_due.
CREATE INDEX delivery_tasks_dead ON delivery_tasks (updated_at) WHERE status = 'dead';
