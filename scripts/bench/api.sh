#!/usr/bin/env bash
# API latency at 50 concurrent clients with 100,000 CDRs and 10,000 messages
# in the database: GET and POST p50/p95/p99, then webd's RSS. Targets:
# GET p95 < 20 ms, POST p95 < 50 ms (requirement: 200 / 500 ms).
# The mix (webd/examples/api_load.rs): /api/cdrs a third uniformly random
# pages 1-4000 (OFFSETs to 80k), a third missed calls by duration, a third
# inbound since a date; /api/messages random pages of the 10k; POST
# /api/blocklist; then the /api/cdrs mix again while another process records
# calls in the database as sipd does (insert at start, update at the end;
# BENCH_CALL_RATE a second, default 1), and clients scrolling the whole call
# list with the keyset cursor.
# BENCH_SECS: seconds per phase (default 10).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${GOSIP_BIN_DIR:-target/release}
# Always (a no-op when fresh): `make bench` builds only the binaries.
cargo build -q --release -p webd --example api_load
. scripts/gosip-up.sh
cookie="gosip_session=$(gosip_wizard bench@example.org "bench admin password")"
python3 - "$GOSIP_DATA_DIR/gosip.db" <<'PY'
import sqlite3, sys, random
db = sqlite3.connect(sys.argv[1], timeout=30)
r = random.Random(7)
disp = ['answered', 'missed', 'voicemail', 'blocked', 'busy']
def ts(i): return '2025-%02d-%02dT%02d:%02d:%02d.000Z' % (1 + i % 12, 1 + i % 28, i % 24, i % 60, i % 59)
db.executemany("INSERT INTO cdrs (direction, from_number, to_number, started_at, duration, disposition, user_id) VALUES (?,?,?,?,?,?,1)",
  [(r.choice(['inbound', 'outbound']), '+1555%07d' % r.randrange(10**7), '+15551230000', ts(i), r.randrange(600), r.choice(disp)) for i in range(100000)])
db.executemany("INSERT INTO messages (direction, from_number, to_number, body, status, user_id, created_at) VALUES (?,?,?,?,?,1,?)",
  [(r.choice(['inbound', 'outbound']), '+1555%07d' % r.randrange(1000), '+15551230000', 'bench message %d' % i, 'delivered', ts(i)) for i in range(10000)])
db.commit()
PY
echo "seeded 100,000 CDRs and 10,000 messages"
target/release/examples/api_load "$GOSIP_URL" "$cookie" 50 "${BENCH_SECS:-10}" "$GOSIP_DATA_DIR/gosip.db"
webd_pid=${GOSIP_PIDS[4]}
echo "webd RSS: $(awk '/VmRSS/{print $2, $3}' /proc/$webd_pid/status) (VmHWM $(awk '/VmHWM/{print $2, $3}' /proc/$webd_pid/status))"
