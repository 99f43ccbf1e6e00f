#!/usr/bin/env bash
# Web UI: the built bundle's size (raw and gzip: what loads first, and all of
# it) and the time to first render of the dashboard in headless Chromium
# against the real daemons ($GOSIP_BIN_DIR, target/release under make bench).
set -euo pipefail
cd "$(dirname "$0")/../../web-ui"
[ -d node_modules ] || npm ci --no-audit --no-fund >/dev/null
npx vite build --logLevel error >/dev/null
size() { local raw=0 gz=0; for f in "$@"; do raw=$((raw + $(stat -c %s "$f"))); gz=$((gz + $(gzip -9c "$f" | wc -c))); done; echo "$((raw / 1024)) kB raw, $((gz / 1024)).$(( (gz % 1024) * 10 / 1024 )) kB gzip"; }
# The entry chunk and CSS are what index.html loads; views are lazy chunks.
entry=$(grep -o 'assets/index-[^"]*\.js' dist/index.html | head -1)
css=$(grep -o 'assets/index-[^"]*\.css' dist/index.html | head -1)
echo "bundle, loaded first (index.html + entry JS + CSS): $(size dist/index.html "dist/$entry" "dist/$css")"
echo "bundle, everything (all JS + CSS, $(ls dist/assets | wc -l) files): $(size dist/assets/*.js dist/assets/*.css)"
node e2e/bench-ui.mjs
node e2e/bench-phone.mjs
