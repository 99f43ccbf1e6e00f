-- The call list orders by (started_at DESC, id DESC); with an index on
-- started_at alone SQLite sorts the ties in a temp b-tree on every page.
CREATE INDEX IF NOT EXISTS idx_cdrs_started_id ON cdrs(started_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_cdrs_user_started_id ON cdrs(user_id, started_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_cdrs_disposition_started ON cdrs(disposition, started_at DESC);
