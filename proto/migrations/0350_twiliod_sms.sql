-- [twiliod sms] SMS/MMS bookkeeping beside `messages`.

-- Numbers that texted STOP (or another opt-out word) to one of our DIDs.
-- Twilio itself refuses to send to them (error 21610) until they text START;
-- this mirror lets the UI say why and keeps auto-replies away from them.
CREATE TABLE sms_opt_outs (
    id INTEGER PRIMARY KEY,
    did_number TEXT NOT NULL,
    number TEXT NOT NULL,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    UNIQUE(did_number, number)
);

-- Unguessable, expiring URLs through which Twilio fetches the media of an
-- outgoing MMS (`/api/webhooks/media/<token>`). Only the token's SHA-256 is
-- stored, so a copy of the database does not open the files.
CREATE TABLE sms_media_tokens (
    token_hash TEXT PRIMARY KEY,
    message_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    content_type TEXT NOT NULL,
    expires_at DATETIME NOT NULL,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX idx_sms_media_tokens_expires ON sms_media_tokens(expires_at);

-- Auto-replies sent, for "one auto-reply per sender per window".
CREATE TABLE sms_auto_reply_log (
    id INTEGER PRIMARY KEY,
    did_id INTEGER REFERENCES dids(id) ON DELETE CASCADE,
    number TEXT NOT NULL,
    auto_reply_id INTEGER REFERENCES auto_replies(id) ON DELETE SET NULL,
    message_id INTEGER REFERENCES messages(id) ON DELETE SET NULL,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);
CREATE INDEX idx_sms_auto_reply_log ON sms_auto_reply_log(did_id, number, created_at);

-- Outbound delivery bookkeeping on `messages`:
-- send_token: random token put in the StatusCallback URL of every send attempt,
--   so a callback for a SID we never recorded (the POST timed out after Twilio
--   created the message) still finds its row;
-- first_attempt_at: when the first POST was made, to look for a message Twilio
--   may have created during an attempt whose answer was lost;
-- auto_reply_id: set when the row is an auto-reply (never auto-reply to those).
ALTER TABLE messages ADD COLUMN send_token TEXT;
ALTER TABLE messages ADD COLUMN first_attempt_at DATETIME;
ALTER TABLE messages ADD COLUMN auto_reply_id INTEGER REFERENCES auto_replies(id) ON DELETE SET NULL;
CREATE INDEX idx_messages_conversation ON messages(did_id, from_number, to_number, id);
