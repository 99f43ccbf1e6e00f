-- [sipd] The call was encrypted on every leg it had: SIP over TLS and SRTP
-- between GoSIP and each phone (the calls list shows a lock).
ALTER TABLE cdrs ADD COLUMN encrypted BOOLEAN NOT NULL DEFAULT FALSE;
