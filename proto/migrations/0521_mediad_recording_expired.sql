-- [mediad] When the retention sweep deletes a call's recording it clears the
-- CDR's recording_url (nothing is left to play) and notes when, so the call
-- list says "expired" instead of offering a file that is gone. mediad owns
-- the recording files, so it is the writer of these two columns once a call
-- has ended; sipd writes recording_url only while the call is up.
ALTER TABLE cdrs ADD COLUMN recording_expired_at DATETIME;
