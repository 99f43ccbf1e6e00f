-- [webd] Send this device message-waiting NOTIFYs without a subscription
-- (RFC 3842 "unsolicited" mode, for phones that never SUBSCRIBE; Grandstream
-- and Yealink take them). sipd reads it; webd writes it.
ALTER TABLE devices ADD COLUMN mwi_unsolicited BOOLEAN NOT NULL DEFAULT FALSE;
