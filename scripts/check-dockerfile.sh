#!/usr/bin/env bash
# What can be proven about the Dockerfile without a Docker engine (none runs
# on the CI machines, and base images cannot be pulled there):
#  1. the UI stage's Node satisfies web-ui/package.json's engines field (the
#     image used to install Debian bookworm's Node 18, which cannot build);
#  2. every COPY source exists in the tree, and the binaries copied from the
#     build stage are exactly the workspace's five daemons;
#  3. the entrypoint, run as root here, gives a data dir owned by someone
#     else to uid 10001 and runs the command as that uid.
# The UI stage's commands (npm ci, npm run build) are what `make ui` runs
# before the tests, with this machine's Node, which satisfies the same
# engines; `cargo build --release` is what `make bench`/`make run` run. Not
# verified here: that the base images themselves build (no engine).
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "check-dockerfile: $*" >&2; exit 1; }

# 1. Node of the UI stage against engines.
ui_from=$(awk '/^FROM node:/ {print $2; exit}' Dockerfile)
[ -n "$ui_from" ] || fail "no node: build stage for the UI"
node_major=$(sed -E 's/^node:([0-9]+).*/\1/' <<<"$ui_from")
need=$(python3 -c 'import json; print(json.load(open("web-ui/package.json"))["engines"]["node"])')
python3 - "$node_major" "$need" <<'PY' || fail "UI stage $ui_from does not satisfy engines.node $need"
import re, sys
major, need = int(sys.argv[1]), sys.argv[2]
m = re.fullmatch(r">=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", need.strip())
if not m: sys.exit(f"cannot read engines {need!r}")
# A node:N image carries the newest N.x, which satisfies >=N.minor when N
# equals the needed major and always when N is larger.
sys.exit(0 if major >= int(m.group(1)) else 1)
PY
grep -Eq 'apt-get install[^&]*\bnodejs\b' Dockerfile && fail "a stage installs Debian's nodejs (18 on bookworm)"

# 2. COPY sources.
while read -r src; do
  [ -e "$src" ] || fail "COPY source $src does not exist"
done < <(awk '/^COPY / && !/--from=/ {for (i = 2; i < NF; i++) print $i}' Dockerfile | grep -v '^\.$')
bins=$(grep -oE 'target/release/[a-z]+' Dockerfile | sed 's#target/release/##' | sort | tr '\n' ' ')
[ "$bins" = "mediad notifyd sipd twiliod webd " ] || fail "runtime copies [$bins], not the five daemons"

# 3. The entrypoint against a data dir owned by another user.
if [ "$(id -u)" -eq 0 ]; then
  d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
  chmod 0755 "$d"
  mkdir -p "$d/data" && chown 12345:12345 "$d/data"
  out=$(GOSIP_DATA_DIR="$d/data" scripts/docker-entrypoint.sh sh -c 'id -u; touch "$GOSIP_DATA_DIR/gosip.db" && echo wrote' 2>/dev/null)
  [ "$out" = "$(printf '10001\nwrote')" ] || fail "entrypoint ran the command as: $out"
  [ "$(stat -c %u "$d/data")" = 10001 ] || fail "entrypoint did not give the data dir to 10001"
  [ "$(stat -c %a "$d/data")" = 700 ] || fail "data dir mode is $(stat -c %a "$d/data"), not 700"
else
  echo "check-dockerfile: not root, entrypoint check skipped" >&2
  exit 1
fi
echo "Dockerfile: UI stage $ui_from satisfies engines $need; COPY sources exist; entrypoint hands the data dir to 10001"
