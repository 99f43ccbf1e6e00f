-- GoSIP schema. The tables of REQUIREMENTS.md "Data Model" with the columns a
-- running system needs added. Timestamps are ISO 8601 UTC text
-- ('2025-01-15T14:30:00.000Z', see proto::time), so they sort as text.
-- Each table has one writing owner (in brackets); the others only read it.

-- [webd] System configuration (key-value), edited in the UI.
CREATE TABLE config (
    key TEXT PRIMARY KEY,
    value TEXT,
    updated_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- [webd] Admin and user accounts.
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    email TEXT UNIQUE NOT NULL COLLATE NOCASE,
    name TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK(role IN ('admin', 'user')),
    dnd BOOLEAN NOT NULL DEFAULT FALSE,
    -- Notification preferences as JSON: {"email": true, "gotify": false, ...}
    notify_prefs JSON NOT NULL DEFAULT '{}',
    locked_until DATETIME,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    last_login DATETIME
);

-- [webd] SIP devices. The SIP secret is never stored in clear:
-- password_hash holds the RFC 2617 HA1 = MD5(username:realm:password) and
-- ha1_sha256 the RFC 8760 SHA-256 form, both for `realm`.
CREATE TABLE devices (
    id INTEGER PRIMARY KEY,
    user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    name TEXT NOT NULL DEFAULT '',
    username TEXT UNIQUE NOT NULL,
    password_hash TEXT NOT NULL,
    ha1_sha256 TEXT NOT NULL DEFAULT '',
    realm TEXT NOT NULL DEFAULT '',
    extension TEXT UNIQUE,
    device_type TEXT NOT NULL DEFAULT 'softphone' CHECK(device_type IN ('grandstream', 'softphone', 'webrtc')),
    recording_enabled BOOLEAN NOT NULL DEFAULT FALSE,
    -- DID used as caller ID for outbound calls from this device.
    caller_id_did_id INTEGER REFERENCES dids(id) ON DELETE SET NULL,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- [sipd] Active SIP registrations (one row per contact).
CREATE TABLE registrations (
    id INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    contact TEXT NOT NULL,
    expires_at DATETIME NOT NULL,
    user_agent TEXT NOT NULL DEFAULT '',
    -- Source address the REGISTER really came from (ip:port), RFC 3581.
    ip_address TEXT NOT NULL,
    transport TEXT NOT NULL,
    call_id TEXT NOT NULL DEFAULT '',
    cseq INTEGER NOT NULL DEFAULT 0,
    online BOOLEAN NOT NULL DEFAULT TRUE,
    last_seen DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    UNIQUE(device_id, contact)
);

-- [webd] Phone numbers (DIDs).
CREATE TABLE dids (
    id INTEGER PRIMARY KEY,
    number TEXT UNIQUE NOT NULL,
    twilio_sid TEXT,
    name TEXT NOT NULL DEFAULT '',
    sms_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    voice_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    -- The user who receives this number's voicemail and messages.
    owner_user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    -- Forward inbound SMS/MMS to the owner's email.
    sms_email_forward BOOLEAN NOT NULL DEFAULT FALSE,
    -- Voicemail greeting: empty = text-to-speech of greeting_text.
    greeting_text TEXT NOT NULL DEFAULT '',
    greeting_path TEXT NOT NULL DEFAULT '',
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- [webd] Call routing rules.
CREATE TABLE routes (
    id INTEGER PRIMARY KEY,
    did_id INTEGER REFERENCES dids(id) ON DELETE CASCADE,
    priority INTEGER NOT NULL DEFAULT 0,
    name TEXT NOT NULL DEFAULT '',
    condition_type TEXT NOT NULL CHECK(condition_type IN ('time', 'callerid', 'default')),
    condition_data JSON NOT NULL DEFAULT '{}',
    action_type TEXT NOT NULL CHECK(action_type IN ('ring', 'forward', 'voicemail', 'announcement', 'reject')),
    action_data JSON NOT NULL DEFAULT '{}',
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- [webd] Caller-ID lists used by routes: 'vip' and 'known'.
CREATE TABLE caller_lists (
    id INTEGER PRIMARY KEY,
    list TEXT NOT NULL CHECK(list IN ('vip', 'known')),
    number TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    UNIQUE(list, number)
);

-- [webd] Blocked numbers.
CREATE TABLE blocklist (
    id INTEGER PRIMARY KEY,
    pattern TEXT NOT NULL,
    pattern_type TEXT NOT NULL CHECK(pattern_type IN ('exact', 'prefix', 'regex')),
    reason TEXT NOT NULL DEFAULT '',
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- [sipd for calls it bridges, twiliod for calls that never reach sipd] Call detail records.
CREATE TABLE cdrs (
    id INTEGER PRIMARY KEY,
    call_sid TEXT UNIQUE,
    sip_call_id TEXT,
    direction TEXT NOT NULL CHECK(direction IN ('inbound', 'outbound', 'internal')),
    from_number TEXT NOT NULL DEFAULT '',
    to_number TEXT NOT NULL DEFAULT '',
    did_id INTEGER REFERENCES dids(id) ON DELETE SET NULL,
    device_id INTEGER REFERENCES devices(id) ON DELETE SET NULL,
    -- Owner used for per-user visibility (device owner or DID owner).
    user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    started_at DATETIME NOT NULL,
    answered_at DATETIME,
    ended_at DATETIME,
    duration INTEGER NOT NULL DEFAULT 0,
    disposition TEXT NOT NULL DEFAULT 'in_progress' CHECK(disposition IN ('in_progress', 'answered', 'missed', 'busy', 'failed', 'voicemail', 'blocked', 'rejected')),
    recording_url TEXT,
    spam_score REAL,
    stir_verstat TEXT,
    -- Which rule decided the call and why, for "why did my phone not ring".
    rule_name TEXT,
    reason TEXT,
    -- Per-leg media stats as JSON (packets, bytes, loss, jitter).
    media_stats JSON
);

-- [twiliod] Voicemails.
CREATE TABLE voicemails (
    id INTEGER PRIMARY KEY,
    cdr_id INTEGER REFERENCES cdrs(id) ON DELETE SET NULL,
    user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
    did_id INTEGER REFERENCES dids(id) ON DELETE SET NULL,
    call_sid TEXT,
    recording_sid TEXT UNIQUE,
    from_number TEXT NOT NULL DEFAULT '',
    audio_url TEXT,
    transcript TEXT,
    -- 'pending', 'completed', 'failed', 'unavailable'
    transcript_status TEXT NOT NULL DEFAULT 'pending',
    duration INTEGER NOT NULL DEFAULT 0,
    is_read BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- [twiliod] SMS/MMS messages.
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    message_sid TEXT UNIQUE,
    direction TEXT NOT NULL CHECK(direction IN ('inbound', 'outbound')),
    from_number TEXT NOT NULL,
    to_number TEXT NOT NULL,
    did_id INTEGER REFERENCES dids(id) ON DELETE SET NULL,
    user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
    body TEXT NOT NULL DEFAULT '',
    -- JSON array of {"path": "media/...", "content_type": "image/png"}
    media_urls JSON NOT NULL DEFAULT '[]',
    status TEXT NOT NULL,
    error_code INTEGER,
    error_message TEXT,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    updated_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    is_read BOOLEAN NOT NULL DEFAULT FALSE
);

-- [webd] Auto-reply rules.
CREATE TABLE auto_replies (
    id INTEGER PRIMARY KEY,
    did_id INTEGER REFERENCES dids(id) ON DELETE CASCADE,
    trigger_type TEXT NOT NULL CHECK(trigger_type IN ('dnd', 'after_hours', 'keyword')),
    trigger_data JSON NOT NULL DEFAULT '{}',
    reply_text TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE
);

-- [webd] Web sessions; the token is stored as its SHA-256 only.
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    token_hash TEXT UNIQUE NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    expires_at DATETIME NOT NULL,
    ip_address TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT ''
);

-- [webd] Web login attempts, for lockout.
CREATE TABLE login_attempts (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL COLLATE NOCASE,
    ip_address TEXT NOT NULL,
    success BOOLEAN NOT NULL,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- [webd] External API keys; shown once, stored as SHA-256.
CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL DEFAULT '',
    prefix TEXT NOT NULL,
    key_hash TEXT UNIQUE NOT NULL,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    last_used_at DATETIME,
    revoked_at DATETIME
);

-- [the daemon named in `queue`] Durable work queues: a job is written before
-- it is acknowledged and removed from view only when done or abandoned.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload JSON NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'pending' CHECK(status IN ('pending', 'running', 'done', 'failed', 'abandoned')),
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    last_error TEXT,
    idempotency_key TEXT UNIQUE,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    updated_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- [any daemon] Security events admins can see: bad SIP password, unknown
-- user, ban, lift, failed web login, bad webhook signature.
CREATE TABLE security_events (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    ip_address TEXT NOT NULL DEFAULT '',
    username TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- [any daemon] Alerts for the admin (Twilio failing, disk full, DB read-only).
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    acknowledged BOOLEAN NOT NULL DEFAULT FALSE,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- [webd] Outgoing event webhooks.
CREATE TABLE webhook_endpoints (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    -- JSON array of event kinds; empty = all.
    events JSON NOT NULL DEFAULT '[]',
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

-- [notifyd] Delivery log of outgoing webhooks, email and push.
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    response TEXT NOT NULL DEFAULT '',
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

CREATE INDEX idx_cdrs_started ON cdrs(started_at DESC);
CREATE INDEX idx_cdrs_disposition ON cdrs(disposition);
CREATE INDEX idx_cdrs_did ON cdrs(did_id);
CREATE INDEX idx_cdrs_user ON cdrs(user_id, started_at DESC);
CREATE INDEX idx_messages_created ON messages(created_at DESC);
CREATE INDEX idx_messages_did ON messages(did_id);
CREATE INDEX idx_messages_user ON messages(user_id, created_at DESC);
CREATE INDEX idx_voicemails_user ON voicemails(user_id);
CREATE INDEX idx_voicemails_read ON voicemails(is_read);
CREATE INDEX idx_registrations_device ON registrations(device_id);
CREATE INDEX idx_registrations_expires ON registrations(expires_at);
CREATE INDEX idx_routes_did_priority ON routes(did_id, priority);
CREATE INDEX idx_jobs_due ON jobs(queue, status, next_attempt_at);
CREATE INDEX idx_login_attempts ON login_attempts(email, created_at);
CREATE INDEX idx_security_events_created ON security_events(created_at DESC);
