-- [twiliod] A counter bumped by triggers whenever anything the routing rules
-- read changes (blocklist, routes, caller lists, DIDs, a user's DND), so
-- twiliod's in-memory rules reload only on real edits, not on every CDR write.
CREATE TABLE rules_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO rules_version (id, version) VALUES (1, 0);

CREATE TRIGGER rules_version_blocklist_insert AFTER INSERT ON blocklist
BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER rules_version_blocklist_update AFTER UPDATE ON blocklist
BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER rules_version_blocklist_delete AFTER DELETE ON blocklist
BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER rules_version_routes_insert AFTER INSERT ON routes
BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER rules_version_routes_update AFTER UPDATE ON routes
BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER rules_version_routes_delete AFTER DELETE ON routes
BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER rules_version_caller_lists_insert AFTER INSERT ON caller_lists
BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER rules_version_caller_lists_update AFTER UPDATE ON caller_lists
BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER rules_version_caller_lists_delete AFTER DELETE ON caller_lists
BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER rules_version_dids_insert AFTER INSERT ON dids
BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER rules_version_dids_update AFTER UPDATE ON dids
BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER rules_version_dids_delete AFTER DELETE ON dids
BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;

CREATE TRIGGER rules_version_users_dnd AFTER UPDATE OF dnd ON users
BEGIN UPDATE rules_version SET version = version + 1 WHERE id = 1; END;
