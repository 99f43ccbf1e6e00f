-- [webd] Encrypted calls per device: `transport` is how the phone is set
-- up to reach GoSIP (the QR and the setup guide carry it, and sipd refuses
-- a phone set to TLS that signals in clear); `srtp` is whether its calls
-- must be SRTP ('required', which needs TLS), may be ('optional': SRTP
-- when the phone offers or accepts it over TLS) or never are ('off').
-- sipd reads both; webd writes them.
ALTER TABLE devices ADD COLUMN transport TEXT NOT NULL DEFAULT 'udp'
    CHECK (transport IN ('udp', 'tcp', 'tls'));
ALTER TABLE devices ADD COLUMN srtp TEXT NOT NULL DEFAULT 'optional'
    CHECK (srtp IN ('required', 'optional', 'off'));
