#!/usr/bin/env bash
# The whole system at rest on a small box: the five daemons started as
# `make run` starts them, set up through the API (the wizard, then five
# devices), five phones registered (sipp, REGISTER with digest), then each
# daemon's RSS and the sum: 3 s after the set-up, and at rest 12 s later,
# past the daemons' 10-s housekeeping (freed heap and the binary's pages
# handed back, proto::daemon::memory). Target: under 60 MiB in all, at rest.
# Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${GOSIP_BIN_DIR:-target/release}
command -v sipp >/dev/null || { echo "sipp missing (scripts/install-deps.sh)"; exit 1; }
. scripts/gosip-up.sh
cookie="gosip_session=$(gosip_wizard bench@example.org "bench admin password")"
users=$GOSIP_TMP/users.csv
echo SEQUENTIAL >"$users"
for i in 1 2 3 4 5; do
  pw=$(curl -fsS -H "Cookie: $cookie" -H 'X-Requested-With: gosip' -H 'Content-Type: application/json' \
    -d '{"name":"desk'$i'","username":"desk'$i'","extension":"20'$i'"}' "$GOSIP_URL/api/devices" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["password"])')
  echo "desk$i;[authentication username=desk$i password=$pw];300" >>"$users"
done
( cd "$GOSIP_TMP" && sipp "127.0.0.1:$GOSIP_SIP_PORT" -sf "$OLDPWD/sipd/tests/sipp/register.xml" -inf "$users" \
    -i 127.0.0.1 -p 0 -m 5 -r 5 -timeout 20s -nostdin >/dev/null 2>&1 ) || { echo "the phones did not register"; exit 1; }
# Each daemon's RSS now, labelled $1; sets $total (KiB).
measure() {
  total=0
  local anon_total=0 pss_total=0 line="" i kib anon status
  local names=(sipd mediad twiliod notifyd webd)
  for i in 0 1 2 3 4; do
    status=/proc/${GOSIP_PIDS[$i]}/status
    kib=$(awk '/VmRSS/ {print $2}' "$status")
    anon=$(awk '/RssAnon/ {print $2}' "$status")
    total=$((total + kib))
    anon_total=$((anon_total + anon))
    pss_total=$((pss_total + $(awk '/^Pss:/ {print $2}' "/proc/${GOSIP_PIDS[$i]}/smaps_rollup")))
    line+="${names[$i]} $((kib / 1024)) MiB (allocated $((anon / 1024))), "
  done
  echo "$1, 5 phones registered: ${line%, }"
  echo "  total $((total / 1024)) MiB, of it allocated $((anon_total / 1024)) MiB (the rest: pages of each binary and its libraries)"
  # PSS shares each page among the processes that map it (the libraries
  # they share count once): what the five really take from the machine.
  echo "  proportional (PSS) total $((pss_total / 1024)) MiB"
}
sleep 3  # the first health polls
measure "3 s after the set-up"
sleep 12
measure "at rest"
echo "target $( [ $((total / 1024)) -lt 60 ] && echo PASS || echo FAIL): whole system idle RSS < 60 MiB ($((total / 1024)) MiB)"
