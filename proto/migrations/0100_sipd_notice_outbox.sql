-- [sipd] Call notices (call_started, call_ended, missed_call) that notifyd
-- has not acknowledged yet, oldest first. A notice stays here until notifyd
-- has stored it, so neither a notifyd outage nor a sipd restart during one
-- loses it.
CREATE TABLE IF NOT EXISTS sipd_notice_outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    user_id    INTEGER NOT NULL,
    payload    TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
