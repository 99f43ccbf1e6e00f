#!/usr/bin/env bash
# Webhook-to-TwiML latency of twiliod (signature check, rules engine, TwiML,
# decision written to SQLite) with 1,000 routes and 10,000 blocklist
# entries; target p99 < 5 ms. Needs release binaries (make release).
set -euo pipefail
BIN=${GOSIP_BIN_DIR:-target/release}
"$BIN/webhook-bench" --bin-dir "$BIN" --requests 3000 --routes 1000 --blocklist 10000
