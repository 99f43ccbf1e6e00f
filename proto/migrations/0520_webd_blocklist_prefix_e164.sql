-- [webd] Blocklist prefixes used to be stored as typed, and one without "+"
-- ("1900") never matched a caller, who always arrives in E.164. They are
-- rewritten the way webd now reads them on input (E164::normalize_prefix):
-- "00"/"011" are international, otherwise the prefix is national to
-- system.default_country (in North America a leading 1 is the trunk prefix,
-- elsewhere a leading 0).
WITH c AS (
    SELECT COALESCE(NULLIF(TRIM((SELECT value FROM config WHERE key = 'system.default_country')), ''), '1') AS cc
), b AS (
    SELECT id, REPLACE(REPLACE(REPLACE(REPLACE(REPLACE(TRIM(pattern), ' ', ''), '-', ''), '.', ''), '(', ''), ')', '') AS p
    FROM blocklist WHERE pattern_type = 'prefix'
)
UPDATE blocklist SET pattern = (
    SELECT CASE
        WHEN b.p LIKE '+%' THEN b.p
        WHEN c.cc = '1' AND b.p LIKE '011%' THEN '+' || SUBSTR(b.p, 4)
        WHEN b.p LIKE '00%' THEN '+' || SUBSTR(b.p, 3)
        WHEN c.cc = '1' AND b.p LIKE '1%' THEN '+' || b.p
        WHEN c.cc = '1' THEN '+1' || b.p
        WHEN b.p LIKE '0%' THEN '+' || c.cc || SUBSTR(b.p, 2)
        ELSE '+' || c.cc || b.p
    END FROM b, c WHERE b.id = blocklist.id
)
WHERE pattern_type = 'prefix' AND TRIM(pattern) NOT LIKE '+%' AND TRIM(pattern) <> '';
