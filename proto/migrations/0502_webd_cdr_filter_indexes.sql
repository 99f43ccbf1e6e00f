-- Call-list filters the UI offers: direction over a date range (counted as
-- a covering range scan) and disposition sorted by duration.
CREATE INDEX IF NOT EXISTS idx_cdrs_direction_started ON cdrs(direction, started_at DESC);
CREATE INDEX IF NOT EXISTS idx_cdrs_disposition_duration ON cdrs(disposition, duration);
