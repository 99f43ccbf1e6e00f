#!/usr/bin/env bash
# sipd registration throughput: REGISTER with MD5 digest (qop=auth) for
# 1,000 distinct users, stepping the offered rate up, one table row per step
# with its transport:
#   tls  sipd-bench (Debian's sipp has no TLS), the users over
#        SIP_BENCH_TLS_CONNS (default 10) persistent TLS connections opened
#        before the step's clock starts, user i on connection i mod conns
#        (SIP_BENCH_TLS_RATES, default 500 1000 2000/s)
#   udp  sipp, one socket (SIP_BENCH_RATES, default 500 ... 5000/s)
# TLS runs first: the UDP steps past sipd's capacity leave tens of
# thousands of transactions waiting out Timer J (32 s), which would weigh
# on whatever ran next; TLS, a reliable transport, keeps none.
# Per step it prints the offered and achieved rate, failures,
# retransmissions (none on TLS, a reliable transport) and the p50/p99 time
# from the first REGISTER to the 200 (both round trips of the challenge).
# Then sipd's peak RSS with 1,000 devices registered. Target on a 2-core
# machine with the client beside it: >= 2,000 regs/s, 0 failures, p99 <
# 10 ms, over UDP and over TLS. Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${GOSIP_BIN_DIR:-target/release}
RATES=${SIP_BENCH_RATES:-"500 1000 2000 3000 4000 5000"}
TLS_RATES=${SIP_BENCH_TLS_RATES:-"500 1000 2000"}
TLS_CONNS=${SIP_BENCH_TLS_CONNS:-10}
SECONDS_PER_STEP=${SIP_BENCH_SECONDS:-5}
USERS=1000
command -v sipp >/dev/null || { echo "sipp missing (scripts/install-deps.sh)"; exit 1; }
for b in sipd sipd-bench; do
  [[ -x $BIN/$b ]] || cargo build --release -p sipd --bins
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

work=$(mktemp -d)
sip_port=$(free_port)
sips_port=$(free_port)
export GOSIP_DATA_DIR=$work/data GOSIP_SIP_BIND=127.0.0.1 GOSIP_SIP_PORT=$sip_port GOSIP_SIPS_PORT=$sips_port \
  GOSIP_SIPD_GRPC=127.0.0.1:$(free_port) RUST_LOG=warn \
  GOSIP_DEVICE_RELOAD_SECS=1  # devices are inserted by hand below, not through webd
"$BIN/sipd" >"$work/sipd.log" 2>&1 &
pid=$!
cleanup() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
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
for rate in $RATES; do
  calls=$((rate * SECONDS_PER_STEP))
  step=$work/step_$rate
  mkdir -p "$step"
  t0=$(date +%s%N)
  ( cd "$step" && sipp "127.0.0.1:$sip_port" -sf "$OLDPWD/sipd/tests/sipp/register.xml" -inf "$work/users.csv" \
      -i 127.0.0.1 -p 0 -buff_size 4194304 -r "$rate" -m "$calls" -l $((rate * 2)) -timeout 60s -nostdin \
      -trace_stat -stf stat.csv -fd 60 -trace_rtt -rtt_freq 1 >/dev/null 2>&1 ) || true
  t1=$(date +%s%N)
  rss_now=$(( $(awk '/VmRSS/ {print $2}' /proc/$pid/status) / 1024 ))
  python3 - "$step" "$rate" "$calls" "$t0" "$t1" "$rss_now" <<'PY'
import csv, glob, sys
step, rate, calls, t0, t1, rss = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
stat = list(csv.reader(open(f"{step}/stat.csv"), delimiter=";"))
head, last = stat[0], stat[-1]
get = lambda k: int(float(last[head.index(k)]))
ok, failed, retrans = get("SuccessfulCall(C)"), get("FailedCall(C)"), get("Retransmissions(C)")
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
print(f"{'udp':<10} {rate:<8} {ok / elapsed:<9.0f} {calls:<9} {failed + (calls - ok - failed):<9} {retrans:<8} {pct(0.50):<8.2f} {pct(0.99):<8.2f} {rss}")
PY
done
rows=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(distinct device_id) from registrations').fetchone()[0])" "$work/data/gosip.db")
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
echo "registered devices: $rows; sipd peak RSS: $((hwm / 1024)) MiB (now $((rss / 1024)) MiB)"
echo "(udp times come from sipp, 1 ms resolution; tls times from sipd-bench, 1 us resolution, on $TLS_CONNS connections;"
echo " RSS includes the server transactions kept for Timer J, 32 s x rate, and the TLS connections)"
