#!/usr/bin/env bash
# The whole system at rest on a small box: the five daemons started as
# `make run` starts them, set up through the API (the wizard, then five
# devices), five phones registered (sipp, REGISTER with digest), then each
# daemon's RSS and the sum. Target: under 60 MiB in all.
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
sleep 3  # a moment at rest: timers, the first health polls
total=0
anon_total=0
pss_total=0
line=""
names=(sipd mediad twiliod notifyd webd)
for i in 0 1 2 3 4; do
  status=/proc/${GOSIP_PIDS[$i]}/status
  kib=$(awk '/VmRSS/ {print $2}' "$status")
  anon=$(awk '/RssAnon/ {print $2}' "$status")
  total=$((total + kib))
  anon_total=$((anon_total + anon))
  pss_total=$((pss_total + $(awk '/^Pss:/ {print $2}' "/proc/${GOSIP_PIDS[$i]}/smaps_rollup")))
  line+="${names[$i]} $((kib / 1024)) MiB (allocated $((anon / 1024))), "
done
echo "idle, 5 phones registered: ${line%, }"
echo "total $((total / 1024)) MiB, of it allocated $((anon_total / 1024)) MiB (the rest: each binary's own code pages)"
# PSS shares each page among the processes that map it (the libraries they
# share count once): what the five really take from the machine.
echo "proportional (PSS) total $((pss_total / 1024)) MiB"
echo "target $( [ $((total / 1024)) -lt 60 ] && echo PASS || echo FAIL): whole system idle RSS < 60 MiB ($((total / 1024)) MiB)"
