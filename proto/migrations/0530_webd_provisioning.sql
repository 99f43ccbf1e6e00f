-- [webd] Zero-touch provisioning: an admin gives a desk phone's MAC; the
-- phone fetches its configuration file (cfg<mac>.xml for Grandstream,
-- <mac>.cfg for Yealink) from /provision/ until it first registers. The
-- clear SIP password lives here only until then ('' afterwards).
CREATE TABLE provisioning (
    device_id INTEGER PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    -- 12 lowercase hex digits.
    mac TEXT NOT NULL UNIQUE,
    family TEXT NOT NULL CHECK(family IN ('grandstream', 'yealink')),
    sip_password TEXT NOT NULL DEFAULT '',
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    fetched_at DATETIME,
    -- Set once the phone registered: the file is no longer served.
    done_at DATETIME
);
