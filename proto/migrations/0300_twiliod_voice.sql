-- [twiliod] One row per inbound Twilio call twiliod decided: which rule and
-- why, the spam score and STIR/SHAKEN status, so the CDR (written by sipd
-- for calls it bridges, by twiliod otherwise) and the UI can say why a call
-- went where it went.
CREATE TABLE voice_calls (
    call_sid TEXT PRIMARY KEY,
    did_id INTEGER REFERENCES dids(id) ON DELETE SET NULL,
    user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    from_number TEXT NOT NULL DEFAULT '',
    to_number TEXT NOT NULL DEFAULT '',
    action TEXT NOT NULL,
    rule_name TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    spam_score REAL,
    stir_verstat TEXT,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- [twiliod] Every recording Twilio reported, kept or discarded (< 3 s), so
-- late or duplicate callbacks (transcription after a discard) do nothing.
CREATE TABLE voice_recordings (
    recording_sid TEXT PRIMARY KEY,
    call_sid TEXT NOT NULL DEFAULT '',
    duration INTEGER NOT NULL DEFAULT 0,
    discarded BOOLEAN NOT NULL DEFAULT FALSE,
    -- Blocked caller sent to voicemail silently: keep, but do not notify.
    silent BOOLEAN NOT NULL DEFAULT FALSE,
    downloaded BOOLEAN NOT NULL DEFAULT FALSE,
    notified BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
