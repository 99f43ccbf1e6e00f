-- [notifyd] The delivery log is read per job (retries of one delivery) and
-- newest first (the UI's delivery log).
CREATE INDEX IF NOT EXISTS idx_deliveries_job ON deliveries(job_id);
CREATE INDEX IF NOT EXISTS idx_deliveries_created ON deliveries(created_at DESC);
