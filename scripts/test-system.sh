#!/usr/bin/env bash
# System checks outside cargo: the Compose file validates, the UI in Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
pass=0; fail=0
check() { local name=$1; shift; if "$@"; then echo "ok: $name"; pass=$((pass+1)); else echo "FAILED: $name"; fail=$((fail+1)); fi; }

check "compose.yaml validates and names every daemon" scripts/check-compose.sh
check "Dockerfile: UI Node, COPY sources, entrypoint" scripts/check-dockerfile.sh
check "schemathesis against /api/openapi.json finds no 5xx" scripts/schemathesis.sh
if [ -d web-ui/e2e ]; then
  check "web-ui in headless Chromium" bash -c 'cd web-ui && npm run e2e'
fi
echo "system: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
