-- webd caches each list's total count and the sort keys of every 256th row
-- (so a deep page seeks instead of stepping over an OFFSET). sipd and
-- twiliod write cdrs and messages from their own processes, so the marker
-- lives in the database: every insert or delete, and every update of a
-- column the lists filter or sort on (foreign-key actions included), sets a
-- fresh random version, and webd trusts a cached value only while the
-- version it was computed under is still current. Updates of other columns
-- (ended_at, media stats, the recording) change no count or order. Random
-- rather than a counter: a restore overwrites this table with the backup's
-- values, and a counter could land on the number a cache still holds.
CREATE TABLE IF NOT EXISTS webd_list_versions (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO webd_list_versions (name, version) VALUES ('cdrs', random()), ('messages', random());

CREATE TRIGGER IF NOT EXISTS webd_cdrs_inserted AFTER INSERT ON cdrs BEGIN
    UPDATE webd_list_versions SET version = random() WHERE name = 'cdrs';
END;
CREATE TRIGGER IF NOT EXISTS webd_cdrs_updated AFTER UPDATE OF
    id, direction, disposition, started_at, duration, from_number, to_number, did_id, device_id, user_id
    ON cdrs BEGIN
    UPDATE webd_list_versions SET version = random() WHERE name = 'cdrs';
END;
CREATE TRIGGER IF NOT EXISTS webd_cdrs_deleted AFTER DELETE ON cdrs BEGIN
    UPDATE webd_list_versions SET version = random() WHERE name = 'cdrs';
END;
CREATE TRIGGER IF NOT EXISTS webd_messages_inserted AFTER INSERT ON messages BEGIN
    UPDATE webd_list_versions SET version = random() WHERE name = 'messages';
END;
CREATE TRIGGER IF NOT EXISTS webd_messages_updated AFTER UPDATE OF
    id, direction, from_number, to_number, did_id, user_id, is_read, status, created_at
    ON messages BEGIN
    UPDATE webd_list_versions SET version = random() WHERE name = 'messages';
END;
CREATE TRIGGER IF NOT EXISTS webd_messages_deleted AFTER DELETE ON messages BEGIN
    UPDATE webd_list_versions SET version = random() WHERE name = 'messages';
END;

-- Lists order by (column, id) with the id running opposite to the column
-- (see PageParams::resolve): an index on (column DESC) ends with the rowid
-- ascending, so it yields "column DESC, id ASC" forwards and "column ASC,
-- id DESC" backwards with no sort step. One such index per sort the call
-- list offers; 0502's (disposition, duration ASC) made SQLite sort the ties.
DROP INDEX IF EXISTS idx_cdrs_disposition_duration;
CREATE INDEX IF NOT EXISTS idx_cdrs_disposition_duration_desc ON cdrs(disposition, duration DESC);
CREATE INDEX IF NOT EXISTS idx_cdrs_duration_desc ON cdrs(duration DESC);
CREATE INDEX IF NOT EXISTS idx_cdrs_from_desc ON cdrs(from_number DESC);
CREATE INDEX IF NOT EXISTS idx_cdrs_to_desc ON cdrs(to_number DESC);
CREATE INDEX IF NOT EXISTS idx_cdrs_disposition_desc ON cdrs(disposition DESC);
CREATE INDEX IF NOT EXISTS idx_cdrs_direction_desc ON cdrs(direction DESC);
-- 0501's (started_at DESC, id DESC) pair matches no order the API asks for
-- since the tie-breaker runs opposite (idx_cdrs_started and idx_cdrs_user
-- serve it); dropping them keeps the cost of each CDR insert down.
DROP INDEX IF EXISTS idx_cdrs_started_id;
DROP INDEX IF EXISTS idx_cdrs_user_started_id;
CREATE INDEX IF NOT EXISTS idx_messages_status_desc ON messages(status DESC);
-- POST /api/blocklist refuses duplicates with a lookup by pattern; without
-- an index that is a scan of the whole list on every add.
CREATE INDEX IF NOT EXISTS idx_blocklist_pattern ON blocklist(pattern, pattern_type);
