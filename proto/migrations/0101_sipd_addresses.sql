-- [sipd] The local address each phone's REGISTER arrived on, so requests to
-- it after a restart name the address it reaches (empty before this column).
ALTER TABLE registrations ADD COLUMN local_address TEXT;

-- [sipd] The addresses sipd puts in Via, Contact and SDP, and where each came
-- from (setting, phone_packet, trunk_via, stun, default): the system status
-- shows them, and twiliod names the public one in its <Sip> URIs.
CREATE TABLE IF NOT EXISTS sip_addresses (
    scope      TEXT PRIMARY KEY,
    address    TEXT NOT NULL,
    source     TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
