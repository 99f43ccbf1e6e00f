#!/usr/bin/env bash
# Call setup time through GoSIP: a sipp phone calls another one (sipp,
# registered, answering at once) through sipd, answering sipd's 407 with
# MD5 digest; sipd asks mediad for ports and rewrites the SDP. Per step
# (fixed call rate, N calls) it prints the INVITE -> 200 time as the caller
# sees it (first INVITE to the 200 of the authenticated one): p50/p95/p99.
# The same caller against a sipp that plays the whole exchange itself (407,
# then 180 + 200), without GoSIP, is the baseline measured the same way;
# the difference is GoSIP's added time ("overhead", target < 20 ms).
# Times come from sipp's message trace (microsecond timestamps); sipp's own
# rtd (1 ms resolution) is printed beside them as a cross-check. A third
# figure, "in sipd", adds up the gaps the caller and the phone do not
# account for: 407 turnaround, INVITE in -> INVITE out, 200 in -> 200 out.
# One-way audio latency through the mediad relay is measured by
# media_relay.sh (mediad-bench), not here. Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${GOSIP_BIN_DIR:-target/release}
RATES=${CALL_BENCH_RATES:-"20 100"}
CALLS=${CALL_BENCH_CALLS:-400}
SIPP_DIR=$PWD/sipd/tests/sipp
command -v sipp >/dev/null || { echo "sipp missing (scripts/install-deps.sh)"; exit 1; }
for b in sipd mediad; do
  [[ -x $BIN/$b ]] || cargo build --release -p sipd -p mediad
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_udp() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
base=$(( 40000 + RANDOM % 10000 / 2 * 2 ))
export GOSIP_DATA_DIR=$work/data GOSIP_SIP_BIND=127.0.0.1 GOSIP_SIP_PORT=$(free_port) GOSIP_SIPS_PORT=$(free_port) \
  GOSIP_SIPD_GRPC=127.0.0.1:$(free_port) GOSIP_SIP_WS=127.0.0.1:$(free_port) GOSIP_MEDIAD_GRPC=127.0.0.1:$(free_port) \
  GOSIP_RTP_BIND=127.0.0.1 GOSIP_RTP_PORTS=$base-$((base + 1999)) RUST_LOG=warn
mkdir -p "$GOSIP_DATA_DIR"

# mediad first: it creates the schema, so the devices and settings below
# are in place before sipd reads them at start.
"$BIN/mediad" >"$work/mediad.log" 2>&1 &
pids+=($!)
schema=no
for _ in $(seq 100); do
  python3 - "$GOSIP_DATA_DIR/gosip.db" <<'PY' 2>/dev/null && { schema=yes; break; }
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
sys.exit(0 if c.execute("select count(*) from sqlite_master where name in ('devices','config')").fetchone()[0] == 2 else 1)
PY
  sleep 0.1
done
[[ $schema == yes ]] || { echo "mediad did not create the database"; tail -n 20 "$work/mediad.log"; exit 1; }
python3 - "$GOSIP_DATA_DIR/gosip.db" "$work/caller.csv" "$work/callee.csv" <<'PY'
import hashlib, sqlite3, sys
db, caller, callee = sys.argv[1:4]
realm = "bench.test"
c = sqlite3.connect(db, timeout=10)
# The answering phone is a sipp in server mode: it would not answer sipd's
# OPTIONS keep-alives, so they are off for the run.
c.executemany("INSERT INTO config (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
              [("sip.realm", realm), ("sip.keepalive_interval", "0")])
for u, p, ext in [("alice", "pw-alice", "201"), ("bob", "pw-bob", "202")]:
    a = f"{u}:{realm}:{p}".encode()
    c.execute("INSERT INTO devices (username, password_hash, ha1_sha256, realm, extension) VALUES (?,?,?,?,?)",
              (u, hashlib.md5(a).hexdigest(), hashlib.sha256(a).hexdigest(), realm, ext))
c.commit()
open(caller, "w").write("SEQUENTIAL\nalice;[authentication username=alice password=pw-alice];202\n")
open(callee, "w").write("SEQUENTIAL\nbob;[authentication username=bob password=pw-bob];{port}\n")
PY
"$BIN/sipd" >"$work/sipd.log" 2>&1 &
sipd_pid=$!
pids+=($sipd_pid)
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/$GOSIP_SIP_PORT) 2>/dev/null && break
  sleep 0.05
done

# The answering phone behind GoSIP: sipp in server mode on its own port,
# registered as bob by a second sipp.
phone_port=$(free_udp)
mkdir -p "$work/phone"
( cd "$work/phone" && exec sipp -sf "$SIPP_DIR/bench_callee.xml" -i 127.0.0.1 -p "$phone_port" \
    -mp "$(free_udp)" -nostdin -trace_msg -message_file "$work/phone/messages.log" \
    -trace_err -buff_size 4194304 >/dev/null 2>&1 ) &
pids+=($!)
sed -i "s/{port}/$phone_port/" "$work/callee.csv"
( cd "$work" && sipp "127.0.0.1:$GOSIP_SIP_PORT" -sf "$SIPP_DIR/register_contact.xml" -inf "$work/callee.csv" \
    -i 127.0.0.1 -p 0 -m 1 -timeout 10s -timeout_error -nostdin >/dev/null 2>&1 ) \
  || { echo "the answering phone could not register"; tail -n 20 "$work/sipd.log"; exit 1; }

# The baseline: the same caller straight to a sipp that plays the PBX's
# part too. It stays up for every step.
direct_port=$(free_udp)
mkdir -p "$work/direct"
( cd "$work/direct" && exec sipp -sf "$SIPP_DIR/bench_direct_uas.xml" -i 127.0.0.1 -p "$direct_port" \
    -mp "$(free_udp)" -nostdin -trace_err -buff_size 4194304 >/dev/null 2>&1 ) &
pids+=($!)
sleep 0.3

# run_step NAME TARGET RATE: one sipp caller run; leaves its traces in $work/NAME.
run_step() {
  local name=$1 target=$2 rate=$3 d=$work/$1
  mkdir -p "$d"
  ( cd "$d" && sipp "$target" -sf "$SIPP_DIR/bench_caller.xml" -inf "$work/caller.csv" \
      -i 127.0.0.1 -p 0 -mp "$(free_udp)" -buff_size 4194304 -r "$rate" -m "$CALLS" -l $((rate * 2 + 10)) \
      -timeout 120s -nostdin -trace_err -trace_msg -message_file "$d/messages.log" \
      -trace_stat -stf "$d/stat.csv" -fd 60 -trace_rtt -rtt_freq 1 >/dev/null 2>&1 ) || true
}

echo "call setup, INVITE -> 200 with the 407 digest round trip, phone answering at once;"
echo "$CALLS calls per step, release build, $(nproc) cores, load average $(cut -d' ' -f1 /proc/loadavg) at start;"
echo "target: GoSIP overhead < 20 ms"
printf '%-7s %-9s %-9s %-7s %-8s %-8s %-8s %-8s %s\n' rate/s path ok/calls failed retrans p50_ms p95_ms p99_ms "sipp_rtd_p50/p99_ms"
for rate in $RATES; do
  run_step "direct_$rate" "127.0.0.1:$direct_port" "$rate"
  run_step "gosip_$rate" "127.0.0.1:$GOSIP_SIP_PORT" "$rate"
  python3 - "$work" "$rate" "$CALLS" <<'PY'
import csv, datetime, glob, sys

work, rate, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def messages(path):
    """(time, sent?, first line, Call-ID, CSeq) of each message in a sipp -trace_msg log."""
    out, block = [], None
    def flush():
        # separator with the time, "UDP message sent|received ...", a blank
        # line, then the SIP message.
        if not block or len(block) < 3:
            return
        stamp = block[0].rsplit(" ", 2)
        t = datetime.datetime.strptime(f"{stamp[-2]} {stamp[-1]}", "%Y-%m-%d %H:%M:%S.%f").timestamp()
        sent = " sent " in block[1]
        lines = [l.strip() for l in block[2:]]
        while lines and not lines[0]:
            lines.pop(0)
        if not lines:
            return
        hdr = {}
        for l in lines[1:]:
            if not l:
                break
            k, _, v = l.partition(":")
            hdr.setdefault(k.strip().lower(), v.strip())
        out.append((t, sent, lines[0], hdr.get("call-id", ""), hdr.get("cseq", "")))
    for line in open(path, errors="replace"):
        line = line.rstrip("\r\n")
        if line.startswith("-----------------------------------------------"):
            flush()
            block = [line]
        elif block is not None:
            block.append(line)
    flush()
    return out

def first(msgs, sent, start, cseq):
    """Per Call-ID, the time of the first matching message (cseq None: any INVITE)."""
    d = {}
    for t, s, line, cid, cs in msgs:
        if s == sent and line.startswith(start) and (cs == cseq or cseq is None and cs.endswith(" INVITE")) and cid not in d:
            d[cid] = t
    return d

def pct(xs, p):
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")

def step(name):
    d = f"{work}/{name}_{rate}"
    msgs = messages(f"{d}/messages.log")
    inv1 = first(msgs, True, "INVITE", "1 INVITE")
    got407 = first(msgs, False, "SIP/2.0 407", "1 INVITE")
    inv2 = first(msgs, True, "INVITE", "2 INVITE")
    ok = first(msgs, False, "SIP/2.0 200", "2 INVITE")
    setup = sorted((ok[c] - inv1[c]) * 1000 for c in ok if c in inv1)
    stat = list(csv.reader(open(f"{d}/stat.csv"), delimiter=";"))
    head, last = stat[0], stat[-1]
    get = lambda k: int(float(last[head.index(k)]))
    rtd = []
    for f in glob.glob(f"{d}/*_rtt.csv"):
        for row in csv.reader(open(f), delimiter=";"):
            try:
                rtd.append(float(row[1]))
            except (ValueError, IndexError):
                pass
    rtd.sort()
    good = get("SuccessfulCall(C)")
    failed = calls - good
    print(f"{rate:<7} {name:<9} {f'{good}/{calls}':<9} {failed:<7} {get('Retransmissions(C)'):<8} "
          f"{pct(setup, .5):<8.2f} {pct(setup, .95):<8.2f} {pct(setup, .99):<8.2f} {pct(rtd, .5):.0f}/{pct(rtd, .99):.0f}")
    return setup, (inv1, got407, inv2, ok)

direct, _ = step("direct")
gosip, (inv1, got407, inv2, ok) = step("gosip")
over = [pct(gosip, p) - pct(direct, p) for p in (.5, .95, .99)]
print(f"{rate:<7} {'overhead':<9} {'':<9} {'':<7} {'':<8} {over[0]:<8.2f} {over[1]:<8.2f} {over[2]:<8.2f} "
      "= gosip - direct at each percentile")

# Time inside sipd per call, from both sides' traces (one clock): the
# phone's n-th INVITE belongs to the caller's n-th authenticated INVITE
# (calls start 1/rate s apart and set up in a few ms, so the order holds).
t0, t1 = min(inv1.values()) - 0.01, max(ok.values()) + 0.01
phone = [m for m in messages(f"{work}/phone/messages.log") if t0 <= m[0] <= t1]
b_in = sorted((t, c) for c, t in first(phone, False, "INVITE", None).items())
b_ok = first(phone, True, "SIP/2.0 200", None)
a = sorted((inv2[c], c) for c in ok if c in inv1 and c in got407 and c in inv2)
parts = []
if len(a) == len(b_in):
    for (t_a, ca), (t_b, cb) in zip(a, b_in):
        # Each process stamps its own log after the socket call; under load
        # the phone's "received" may be stamped a little before the
        # caller's "sent". More than a millisecond means the pairing is off.
        if cb not in b_ok or not -0.001 < t_b - t_a < 1:
            parts = []
            break
        parts.append(((got407[ca] - inv1[ca]) * 1000, (t_b - t_a) * 1000, (ok[ca] - b_ok[cb]) * 1000))
if parts:
    inside = sorted(sum(p) for p in parts)
    each = [sorted(p[i] for p in parts) for i in range(3)]
    print(f"{rate:<7} {'in sipd':<9} {'':<9} {'':<7} {'':<8} {pct(inside, .5):<8.2f} {pct(inside, .95):<8.2f} {pct(inside, .99):<8.2f} "
          "= 407 turnaround + INVITE in->out + 200 in->out, p50/p99: "
          + ", ".join(f"{pct(e, .5):.2f}/{pct(e, .99):.2f}" for e in each))
else:
    inside = []
    print(f"{rate:<7} in sipd: not computed ({len(a)} answered calls, {len(b_in)} INVITEs at the phone, "
          "or the two traces do not pair up in order)")
# A difference of percentiles is noisy on a busy machine (it can even go
# negative), so the verdict takes the larger of the two p99 figures.
worst = max(over[2], pct(inside, .99) if inside else over[2])
print(f"{rate:<7} target < 20 ms added per call: {'met' if worst < 20 and len(gosip) == calls else 'NOT met'} "
      f"(p99 {worst:.2f} ms; {len(gosip)}/{calls} calls answered)")
PY
done
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$sipd_pid/status")
echo "sipd peak RSS: $((hwm / 1024)) MiB; mediad one-way relay latency: see media_relay.sh"
