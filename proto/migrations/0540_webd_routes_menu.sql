-- [webd] Routes may answer with an auto-attendant menu (action_type 'menu',
-- proto::routing::MenuAction). SQLite cannot change a CHECK, so the table is
-- rebuilt with the same columns, rows, index and rules-version triggers.
CREATE TABLE routes_new (
    id INTEGER PRIMARY KEY,
    did_id INTEGER REFERENCES dids(id) ON DELETE CASCADE,
    priority INTEGER NOT NULL DEFAULT 0,
    name TEXT NOT NULL DEFAULT '',
    condition_type TEXT NOT NULL CHECK(condition_type IN ('time', 'callerid', 'default')),
    condition_data JSON NOT NULL DEFAULT '{}',
    action_type TEXT NOT NULL CHECK(action_type IN ('ring', 'forward', 'voicemail', 'announcement', 'reject', 'menu')),
    action_data JSON NOT NULL DEFAULT '{}',
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    created_at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
);

INSERT INTO routes_new (id, did_id, priority, name, condition_type, condition_data,
                        action_type, action_data, enabled, created_at)
SELECT id, did_id, priority, name, condition_type, condition_data,
       action_type, action_data, enabled, created_at
FROM routes;

DROP TABLE routes;
ALTER TABLE routes_new RENAME TO routes;

CREATE INDEX idx_routes_did_priority ON routes(did_id, priority);

CREATE TRIGGER rules_version_routes_insert AFTER INSERT ON routes
BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER rules_version_routes_update AFTER UPDATE ON routes
BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER rules_version_routes_delete AFTER DELETE ON routes
BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;

UPDATE rules_version SET version = version + 1 WHERE id = 1;
