-- [webd] An API key may carry an expiry; after it the key is refused like a
-- revoked one.
ALTER TABLE api_keys ADD COLUMN expires_at DATETIME;

-- [webd] The per-address login limit counts failures by address.
CREATE INDEX idx_login_attempts_ip ON login_attempts(ip_address, created_at);

-- [any daemon] Repeats of one event (same source, kind, address and user
-- within a few minutes) are folded into one row: `count` of them, the last
-- at `last_at`, so unauthenticated requests cannot grow the table without
-- bound.
ALTER TABLE security_events ADD COLUMN count INTEGER NOT NULL DEFAULT 1;
ALTER TABLE security_events ADD COLUMN last_at DATETIME;
CREATE INDEX idx_security_events_fold
    ON security_events(source, kind, ip_address, username, created_at);
