-- [webd] "Busy when in a call": a device already in a call is not rung by
-- another (the caller hears busy, or the callee's voicemail takes it)
-- instead of leaving call waiting to the phone. sipd reads it; webd writes it.
ALTER TABLE devices ADD COLUMN busy_in_call BOOLEAN NOT NULL DEFAULT FALSE;
