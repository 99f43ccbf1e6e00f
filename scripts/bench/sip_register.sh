#!/usr/bin/env bash
# sipd registration throughput: REGISTER with MD5 digest (qop=auth) for
# 1,000 distinct users, stepping the offered rate up, one table row per step.
#
# 1. tls: sipd-bench (Debian's sipp has no TLS), the users over
#    SIP_BENCH_TLS_CONNS (default 10) persistent TLS connections opened
#    before the step's clock starts (SIP_BENCH_TLS_RATES, default 500 1000
#    2000/s). GoSIP only.
# 2. udp, side by side with the anchor: the same sipp scenario and users
#    against sipd and against Kamailio 5.6 (Debian `kamailio`, installed
#    here when missing and root), a minimal registrar with MD5 digest from a
#    text DB (scripts/bench/anchors/kamailio.cfg), one after the other at
#    each offered rate (SIP_BENCH_RATES, default 2000 ... 28000/s). Printed:
#    achieved rate, failures (failed + never finished), p99 from the first
#    REGISTER to the 200 (both round trips of the challenge), the p99 ratio,
#    each one's 0-failure ceiling (the highest offered rate with no failure
#    and at least 95 % of it achieved) and the ratio, sipd's RSS after the
#    highest rate, then again after a second and a third pass of the top
#    rates (flat = the third ends where the second did: no growth), and
#    the targets as PASS/FAIL lines:
#      ceiling >= 1.5x Kamailio's; p99 <= Kamailio's at every rate up to
#      Kamailio's ceiling; sipd RSS after every pass < 40 MiB, and flat.
# Benchmarks print figures; nothing here is a timed test. 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${GOSIP_BIN_DIR:-target/release}
RATES=${SIP_BENCH_RATES:-"2000 4000 6000 8000 10000 12000 14000 16000 18000 20000 22000 24000 26000 28000 30000 32000 34000"}
TLS_RATES=${SIP_BENCH_TLS_RATES:-"500 1000 2000"}
TLS_CONNS=${SIP_BENCH_TLS_CONNS:-10}
SECONDS_PER_STEP=${SIP_BENCH_SECONDS:-5}
USERS=1000
command -v sipp >/dev/null || { echo "sipp missing (scripts/install-deps.sh)"; exit 1; }
if ! command -v kamailio >/dev/null && [ "$(id -u)" -eq 0 ]; then
  echo "installing the anchor: kamailio (Debian)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends kamailio >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends kamailio >/dev/null 2>&1; } \
    || echo "apt-get install kamailio failed: the anchor rows are skipped"
fi
command -v kamailio >/dev/null || echo "kamailio missing (Debian package kamailio; run as root to install): the anchor rows are skipped"
for b in sipd sipd-bench; do
  [[ -x $BIN/$b ]] || cargo build --release -p sipd --bins
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

work=$(mktemp -d)
sip_port=$(free_port)
sips_port=$(free_port)
export GOSIP_DATA_DIR=$work/data GOSIP_SIP_BIND=127.0.0.1 GOSIP_SIP_PORT=$sip_port GOSIP_SIPS_PORT=$sips_port \
  GOSIP_SIPD_GRPC=127.0.0.1:$(free_port) GOSIP_SIP_WS=127.0.0.1:$(free_port) RUST_LOG=warn \
  GOSIP_DEVICE_RELOAD_SECS=1  # devices are inserted by hand below, not through webd
"$BIN/sipd" >"$work/sipd.log" 2>&1 &
pid=$!
kpid=
cleanup() {
  kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  [ -n "$kpid" ] && { kill -TERM "$kpid" 2>/dev/null || true; wait "$kpid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT

until [ -f "$work/data/gosip.db" ] && grep -q . <(python3 - "$work/data/gosip.db" <<'PY' 2>/dev/null
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(c.execute("select count(*) from sqlite_master where name='devices'").fetchone()[0] or "")
PY
); do sleep 0.1; done

# 1,000 devices; the realm is the host name (sip.realm empty).
python3 - "$work/data/gosip.db" "$work/users.csv" "$USERS" <<'PY'
import hashlib, socket, sqlite3, sys
db, csv, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
realm = open("/proc/sys/kernel/hostname").read().strip() or socket.gethostname()
c = sqlite3.connect(db, timeout=10)
rows = []
with open(csv, "w") as f:
    f.write("SEQUENTIAL\n")
    for i in range(n):
        u, p = f"bench{i:04d}", f"pw{i}"
        a = f"{u}:{realm}:{p}".encode()
        rows.append((u, hashlib.md5(a).hexdigest(), hashlib.sha256(a).hexdigest(), realm, str(7000 + i)))
        f.write(f"{u};[authentication username={u} password={p}];300\n")
c.executemany("INSERT INTO devices (username, password_hash, ha1_sha256, realm, extension) VALUES (?,?,?,?,?)", rows)
c.commit()
# The same users for the anchor: Kamailio's db_text subscriber table.
import os
kdb = os.path.join(os.path.dirname(csv), "kamailio-db")
os.makedirs(kdb, exist_ok=True)
with open(os.path.join(kdb, "subscriber"), "w") as f:
    f.write("id(int,auto) username(str) domain(str,null) password(str,null) ha1(str) ha1b(str,null)\n")
    for i, r in enumerate(rows):
        f.write(f"{i + 1}:{r[0]}:{realm}:pw{i}:{r[1]}:\n")
with open(os.path.join(kdb, "version"), "w") as f:
    f.write("table_name(str) table_version(int)\nsubscriber:7\nlocation:9\n")
with open(os.path.join(kdb, "realm"), "w") as f:
    f.write(realm)
PY
sleep 1.5  # sipd re-reads devices every second (GOSIP_DEVICE_RELOAD_SECS)

printf '%-10s %-8s %-9s %-9s %-9s %-8s %-8s %-8s %s\n' transport offered achieved calls failed retrans p50_ms p99_ms sipd_rss_mib
# sipd made its self-signed certificate on first start; it is the one
# sipd-bench trusts.
cert=$work/data/tls/sip.crt
[[ -f $cert ]] || { echo "no $cert: sipd serves no TLS"; exit 1; }
for rate in $TLS_RATES; do
  line=$("$BIN/sipd-bench" --sips "127.0.0.1:$sips_port" --cert "$cert" \
    --users "$USERS" --rate "$rate" --secs "$SECONDS_PER_STEP" --conns "$TLS_CONNS")
  read -r achieved calls failed p50 p99 <<<"$line"
  rss_now=$(( $(awk '/VmRSS/ {print $2}' /proc/$pid/status) / 1024 ))
  printf '%-10s %-8s %-9s %-9s %-9s %-8s %-8s %-8s %s\n' tls "$rate" "$achieved" "$calls" "$failed" - "$p50" "$p99" "$rss_now"
done
# One sipp step against port $1 at rate $2, labelled $3: prints
# "achieved failed retrans p50 p99".
udp_step() {
  local port=$1 rate=$2 label=$3
  local calls=$((rate * SECONDS_PER_STEP)) step=$work/step_${label}_$rate
  mkdir -p "$step"
  local t0 t1
  t0=$(date +%s%N)
  ( cd "$step" && sipp "127.0.0.1:$port" -sf "$OLDPWD/sipd/tests/sipp/register.xml" -inf "$work/users.csv" \
      -i 127.0.0.1 -p 0 -buff_size 4194304 -r "$rate" -m "$calls" -l $((rate * 2)) -timeout 60s -nostdin \
      -trace_stat -stf stat.csv -fd 60 -trace_rtt -rtt_freq 1 >/dev/null 2>&1 ) || true
  t1=$(date +%s%N)
  python3 - "$step" "$calls" "$t0" "$t1" <<'PY'
import csv, glob, sys
step, calls, t0, t1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
try:
    stat = list(csv.reader(open(f"{step}/stat.csv"), delimiter=";"))
    head, last = stat[0], stat[-1]
    get = lambda k: int(float(last[head.index(k)]))
    ok, failed, retrans = get("SuccessfulCall(C)"), get("FailedCall(C)"), get("Retransmissions(C)")
except (OSError, IndexError, ValueError):
    ok, failed, retrans = 0, calls, 0
elapsed = (t1 - t0) / 1e9
times = []
for f in glob.glob(f"{step}/*_rtt.csv"):
    for row in csv.reader(open(f), delimiter=";"):
        try:
            times.append(float(row[1]))
        except (ValueError, IndexError):
            pass
times.sort()
pct = lambda p: times[min(len(times) - 1, int(p * len(times)))] if times else float("nan")
print(f"{ok / elapsed:.0f} {failed + (calls - ok - failed)} {retrans} {pct(0.50):.2f} {pct(0.99):.2f}")
PY
}

rss_mib() { echo $(( $(awk '/VmRSS/ {print $2}' "/proc/$1/status") / 1024 )); }

# The anchor, on its own port, with the same users and realm.
kport=
if command -v kamailio >/dev/null; then
  kport=$(free_port)
  kamailio -DD -E -f scripts/bench/anchors/kamailio.cfg -l "udp:127.0.0.1:$kport" \
    -A "DBURL=\"text://$work/kamailio-db\"" -A "BENCH_REALM=\"$(cat "$work/kamailio-db/realm")\"" \
    -P "$work/kamailio.pid" >"$work/kamailio.log" 2>&1 &
  kpid=$!
  for _ in $(seq 50); do grep -q "Listening on" "$work/kamailio.log" 2>/dev/null && break; sleep 0.1; done
  sleep 0.5
  kill -0 "$kpid" 2>/dev/null || { echo "kamailio did not start:"; tail -5 "$work/kamailio.log"; kport=; kpid=; }
fi

echo
echo "REGISTER+digest over UDP, same sipp and users, GoSIP then Kamailio at each rate (${SECONDS_PER_STEP} s per step)"
printf '%-8s | %-9s %-7s %-7s %-8s | %-9s %-7s %-7s %-8s | %s\n' offered gosip_ach failed p50_ms p99_ms kam_ach failed p50_ms p99_ms p99_ratio
results=$work/results
: >"$results"
for rate in $RATES; do
  read -r g_ach g_fail _ g_p50 g_p99 <<<"$(udp_step "$sip_port" "$rate" gosip)"
  k_ach=- k_fail=- k_p50=- k_p99=-
  if [ -n "$kport" ]; then
    read -r k_ach k_fail _ k_p50 k_p99 <<<"$(udp_step "$kport" "$rate" kamailio)"
  fi
  ratio=$(python3 -c "import sys; g,k=sys.argv[1],sys.argv[2]; print(f'{float(g)/float(k):.2f}' if k not in ('-','0.00','nan') and g!='nan' else '-')" "$g_p99" "$k_p99")
  printf '%-8s | %-9s %-7s %-7s %-8s | %-9s %-7s %-7s %-8s | %s\n' "$rate" "$g_ach" "$g_fail" "$g_p50" "$g_p99" "$k_ach" "$k_fail" "$k_p50" "$k_p99" "$ratio"
  echo "$rate $g_ach $g_fail $g_p99 $k_ach $k_fail $k_p99" >>"$results"
done
rss1=$(rss_mib "$pid")
# Two more passes of the top rates: sipd's memory must settle, not grow
# run on run.
top=$(echo $RATES | tr ' ' '\n' | tail -3)
for rate in $top; do udp_step "$sip_port" "$rate" gosip2 >/dev/null; done
rss2=$(rss_mib "$pid")
for rate in $top; do udp_step "$sip_port" "$rate" gosip3 >/dev/null; done
rss3=$(rss_mib "$pid")
# The binary's own pages (file-backed, shared) apart from what sipd allocated.
anon2=$(( $(awk '/RssAnon/ {print $2}' "/proc/$pid/status") / 1024 ))
kam_pss=-
if [ -n "$kpid" ]; then
  kam_pss=$(( $(for p in $kpid $(pgrep -P "$kpid"); do awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null; done | awk '{s+=$1} END {print s+0}') / 1024 ))
fi
python3 - "$results" "$rss1" "$rss2" "$kam_pss" "$anon2" "$rss3" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
rss1, rss2, kam_pss, anon2 = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
rss3 = int(sys.argv[6])
def ceiling(ach, fail):
    # The highest offered rate served with no failure and at >= 95 % of
    # the offer (past it, retransmissions get calls through seconds late).
    ok = [int(r[0]) for r in rows if r[fail] == "0" and float(r[ach]) >= 0.95 * int(r[0])]
    return max(ok) if ok else 0
g_ceil = ceiling(1, 2)
anchor = all(r[5] != "-" for r in rows)
print()
print(f"0-failure ceiling (offered): GoSIP {g_ceil}/s", end="")
if anchor:
    k_ceil = ceiling(4, 5)
    ratio = g_ceil / k_ceil if k_ceil else float("inf")
    print(f", Kamailio {k_ceil}/s, ratio {ratio:.2f}x")
    if k_ceil == int(rows[-1][0]) and g_ceil == int(rows[-1][0]):
        print("  (both held the highest offered rate: raise SIP_BENCH_RATES to find the ceilings)")
else:
    print(" (no anchor)")
print(f"sipd RSS after the highest rate: {rss1} MiB; after a second and a third pass of the top rates: {rss2} and {rss3} MiB (of it allocated, after the second: {anon2} MiB)"
      + (f"; Kamailio (all processes, PSS): {kam_pss} MiB" if kam_pss != "-" else ""))
def line(ok, text):
    print(f"target {'PASS' if ok else 'FAIL'}: {text}")
if anchor:
    line(k_ceil and g_ceil >= 1.5 * k_ceil, f"0-failure ceiling >= 1.5x Kamailio's ({g_ceil} vs {k_ceil})")
    worse = [r[0] for r in rows if int(r[0]) <= k_ceil and r[3] != "nan" and r[6] != "nan" and float(r[3]) > float(r[6])]
    line(not worse, "p99 <= Kamailio's at every rate up to Kamailio's ceiling" + (f" (worse at {', '.join(worse)}/s)" if worse else ""))
line(max(rss1, rss2, rss3) < 40, f"sipd RSS after the highest rate < 40 MiB, every pass ({rss1}, {rss2}, {rss3} MiB)")
# Flat: the third pass ends where the second did (within 1 MiB) and no
# more than 3 MiB over the first: what settles after a pass is the
# allocator's pages and the 30 s keepalive round in flight, not growth.
line(rss3 <= rss2 + 1 and rss3 <= rss1 + 3, f"sipd RSS flat across repeated runs ({rss1} -> {rss2} -> {rss3} MiB)")
PY
rows=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(distinct device_id) from registrations').fetchone()[0])" "$work/data/gosip.db")
echo "registered devices: $rows"
echo "(udp times come from sipp, 1 ms resolution; tls times from sipd-bench, 1 us resolution, on $TLS_CONNS connections)"
