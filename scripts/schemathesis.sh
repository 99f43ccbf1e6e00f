#!/usr/bin/env bash
# Property-based API test: schemathesis (PyPI) generates requests from
# /api/openapi.json against a running system and fails on any 5xx answer or
# an answer that breaks the documented status codes, content types or
# response schemas. Installs schemathesis into target/schemathesis-venv on
# first use. Two passes:
#  1. the external API (/api/external/*) with `Authorization: Bearer` keys
#     that an ordinary user makes through POST /api/api-keys (the hooks in
#     scripts/schemathesis_hooks.py), that user owning a number, calls and
#     messages so the lists answer real items. First, because the second
#     pass deletes users and revokes keys at random;
#  2. everything else with the admin's session cookie.
# SCHEMATHESIS_EXAMPLES: examples per operation (default 25).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/schemathesis-venv
if [ ! -x "$VENV/bin/st" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q schemathesis
fi
BIN=${GOSIP_BIN_DIR:-target/debug}
. scripts/gosip-up.sh
cookie=$(gosip_wizard admin@example.org "schemathesis admin pw")
jar=$GOSIP_TMP/cookies  # the admin's session, as gosip_wizard left it

# The external API's user: an ordinary account, made and logged in through the API.
uid=$(curl -fsS -b "$jar" -H 'X-Requested-With: gosip' -H 'Content-Type: application/json' \
  -d '{"email":"external@example.org","role":"user","password":"schemathesis user pw"}' \
  "$GOSIP_URL/api/users" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
ujar=$GOSIP_TMP/user-cookies
curl -fsS -c "$ujar" -H 'X-Requested-With: gosip' -H 'Content-Type: application/json' \
  -d '{"email":"external@example.org","password":"schemathesis user pw"}' \
  "$GOSIP_URL/api/auth/login" >/dev/null
ucookie=$(awk '$6=="gosip_session"{print $7}' "$ujar")
# Their number, phone, calls and messages (sipd and twiliod would write these).
python3 - "$GOSIP_DATA_DIR/gosip.db" "$uid" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=30)
uid = int(sys.argv[2])
db.execute("UPDATE dids SET owner_user_id = ?, sms_enabled = 1 WHERE number = '+15551230000'", (uid,))
# A desk phone that is not registered: click-to-call reaches sipd, which answers 409.
db.execute("INSERT INTO devices (user_id, name, username, password_hash, extension) "
           "VALUES (?, 'Desk', 'external-desk', 'x', '2001')", (uid,))
disp = ['answered', 'missed', 'voicemail', 'busy', 'failed']
db.executemany(
  "INSERT INTO cdrs (direction, from_number, to_number, started_at, answered_at, duration, disposition, user_id, "
  "spam_score, rule_name, recording_url) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
  [(['inbound', 'outbound', 'internal'][i % 3], '+1555000%04d' % i, '+15551230000',
    '2025-01-%02dT10:%02d:00.000Z' % (1 + i % 28, i % 60), None if i % 4 else '2025-01-01T10:00:05.000Z',
    i * 7 % 300, disp[i % 5], uid, (i % 10) / 10 if i % 2 else None, 'Work hours' if i % 3 else None,
    'recordings/x.wav' if i % 7 == 0 else None) for i in range(60)])
db.executemany(
  "INSERT INTO messages (direction, from_number, to_number, body, media_urls, status, user_id, is_read, created_at) "
  "VALUES (?,?,?,?,?,?,?,?,?)",
  [(['inbound', 'outbound'][i % 2], '+1555000%04d' % (i % 7), '+15551230000', 'message %d' % i,
    '[{"path": "media/x.png", "content_type": "image/png"}]' if i % 5 == 0 else '[]',
    'received' if i % 2 == 0 else 'delivered', uid, i % 3 == 0,
    '2025-02-%02dT09:%02d:00.000Z' % (1 + i % 28, i % 60)) for i in range(60)])
db.commit()
PY

checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
common=(--checks "$checks" --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" --request-timeout 10)
rc=0

echo "== pass 1: the external API with API keys (Bearer)"
GOSIP_URL=$GOSIP_URL GOSIP_KEY_OWNER_COOKIE="gosip_session=$ucookie" \
  PYTHONPATH=scripts${PYTHONPATH:+:$PYTHONPATH} SCHEMATHESIS_HOOKS=schemathesis_hooks \
  "$VENV/bin/st" run "$GOSIP_URL/api/openapi.json" "${common[@]}" \
  --include-path-regex '^/api/external/' "$@" || rc=1

# Left out: the event stream never ends; logout, password change/reset and
# restore (uploaded or by name) end the session the run uses; a restore check
# takes a tar body schemathesis cannot make (webd's tests send it real and
# broken archives); the external API had its own pass.
echo "== pass 2: everything else with the admin's session"
"$VENV/bin/st" run "$GOSIP_URL/api/openapi.json" "${common[@]}" \
  --exclude-path '/api/events' --exclude-path '/api/auth/logout' \
  --exclude-path '/api/auth/password' --exclude-path '/api/users/{id}/password' \
  --exclude-path '/api/system/restore' --exclude-path '/api/system/restore/check' \
  --exclude-path '/api/system/backups/{name}/restore' --exclude-path-regex '^/api/external/' \
  -H "Cookie: gosip_session=$cookie" -H "X-Requested-With: gosip" "$@" || rc=1
exit $rc
