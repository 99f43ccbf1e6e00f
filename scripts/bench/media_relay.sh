#!/usr/bin/env bash
# mediad under load: simultaneous relayed calls (20 ms G.711 both ways), one
# line per run, labelled by its mode:
#   rtp         plain RTP on both legs, 50, 100 and 200 calls
#   srtp        SDES-SRTP (AES_CM_128_HMAC_SHA1_80) on both legs, 100 and 200
#               calls: mediad decrypts what each leg sends and encrypts what
#               it relays to the other; the bench's phones encrypt and
#               decrypt their side, so a packet counts only if it arrives
#               and authenticates (srtp_auth_failures, bench+mediad, must
#               be 0+0)
#   rtp+record  plain RTP with every call recorded, 50, 100 and 200 calls
# Prints mediad's CPU (from /proc/<pid>/stat), the time to set up all the
# calls of the run (every call is set up before any packet flows), packet
# loss and the one-way latency added by the relay. Target: 200 calls, 0.0%
# loss, under one core, SRTP included.
#
# Then mediad beside an anchor, rtpengine (Debian's rtpengine-daemon,
# userspace forwarding only: no kernel module), in the same run, one after
# the other, with the same bench traffic and the same CPU accounting
# (utime+stime of the whole process over the same measured window): plain
# RTP at 200 calls (three pairs, alternating; the verdict takes the median
# pair) and 500 calls (one pair), set up through mediad's gRPC API and through
# rtpengine's ng protocol (offer + answer per call). One table, then the
# targets: 200 calls set up within one second with 0 packets lost and
# mediad's CPU at most 0.8x rtpengine's; 500 calls reported. Without
# rtpengine (not installed and not root to install it) only the anchor
# columns are left empty. Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${GOSIP_BIN_DIR:-target/release}
SECS=${MEDIA_BENCH_SECS:-10}
# 500 calls take 1000 even ports (a pair per call) from mediad's pool and
# about 2000 (RTP and RTCP per leg) from rtpengine's; the ranges are
# disjoint from each other and from the kernel's ephemeral ports (32768+),
# where the bench's phones bind.
MEDIAD_PORTS=${MEDIA_BENCH_PORTS:-20000-23999}
RTPENGINE_PORTS=${MEDIA_BENCH_RTPENGINE_PORTS:-24000-29999}
for b in mediad mediad-bench; do
  [[ -x $BIN/$b ]] || cargo build --release -p mediad --bins
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_udp_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir=$(mktemp -d)
pid=
rtpe_pid=
cleanup() {
  if [[ -n $rtpe_pid ]]; then kill -TERM "$rtpe_pid" 2>/dev/null || true; wait "$rtpe_pid" 2>/dev/null || true; fi
  if [[ -n $pid ]]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
grpc=127.0.0.1:$(free_port)
GOSIP_DATA_DIR=$dir GOSIP_MEDIAD_GRPC=$grpc GOSIP_RTP_BIND=127.0.0.1 \
  GOSIP_RTP_PORTS=$MEDIAD_PORTS RUST_LOG=warn \
  "$BIN/mediad" >"$dir/mediad.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/${grpc%:*}/${grpc#*:}) 2>/dev/null && break
  sleep 0.05
done
echo "mediad relay, ${SECS} s per run, $(nproc) cores; target: 200 calls, 0.0% loss, under one core"
for run in "rtp 50" "rtp 100" "rtp 200" "srtp 100" "srtp 200" \
  "rtp+record 50" "rtp+record 100" "rtp+record 200"; do
  read -r mode calls <<<"$run"
  case $mode in
    rtp) flag=() ;;
    srtp) flag=(--srtp) ;;
    rtp+record) flag=(--record) ;;
  esac
  "$BIN/mediad-bench" --data-dir "$dir" --grpc "$grpc" --pid "$pid" --calls "$calls" --secs "$SECS" "${flag[@]}"
done
rec=$(find "$dir/recordings" -name '*.wav' | wc -l)
echo "recordings written: $rec ($(du -sh "$dir/recordings" | cut -f1))"

# --- The anchor: rtpengine ---------------------------------------------------
# ng ping: "<cookie> d7:command4:pinge", answered "<cookie> d6:result4:ponge".
ng_ping() {
  python3 - "$1" <<'EOF'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
try:
    s.sendto(b"p1 d7:command4:pinge", (host, int(port)))
    sys.exit(0 if s.recv(256) == b"p1 d6:result4:ponge" else 1)
except OSError:
    sys.exit(1)
EOF
}
# Starts rtpengine on a free ng port and waits until it answers a ping;
# prints why not and returns 1 when it cannot.
start_rtpengine() {
  if ! command -v rtpengine >/dev/null; then
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
      echo "rtpengine: installing rtpengine-daemon with apt-get"
      { DEBIAN_FRONTEND=noninteractive apt-get install -y -q rtpengine-daemon ||
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q rtpengine-daemon; }; } \
        >"$dir/apt.log" 2>&1 || true
    fi
    if ! command -v rtpengine >/dev/null; then
      echo "rtpengine: not installed (apt-get install rtpengine-daemon, as root); anchor rows skipped"
      return 1
    fi
  fi
  ng=127.0.0.1:$(free_udp_port)
  # --config-file=none: not the package's /etc/rtpengine/rtpengine.conf
  #   (interface any, kernel table 0, fixed CLI/HTTP ports, recording).
  # --table=-1: no kernel forwarding; every packet goes through userspace,
  #   as every packet goes through mediad.
  # --delete-delay=0: a deleted call is gone at once, none left over for
  #   the next run.
  # --log-level=4: warnings, as mediad's RUST_LOG=warn.
  # Threads: each relay's default: rtpengine one per core, mediad one media
  #   thread (GOSIP_MEDIA_THREADS).
  rtpengine --config-file=none --foreground --table=-1 --interface=127.0.0.1 \
    --listen-ng="$ng" --port-min="${RTPENGINE_PORTS%-*}" --port-max="${RTPENGINE_PORTS#*-}" \
    --delete-delay=0 --log-stderr --log-level=4 >"$dir/rtpengine.log" 2>&1 &
  rtpe_pid=$!
  for _ in $(seq 100); do
    if ! kill -0 "$rtpe_pid" 2>/dev/null; then
      echo "rtpengine: exited at start-up; anchor rows skipped:"
      sed 's/^/  /' "$dir/rtpengine.log" | tail -5
      rtpe_pid=
      return 1
    fi
    ng_ping "$ng" && return 0
    sleep 0.1
  done
  echo "rtpengine: no answer to an ng ping on $ng; anchor rows skipped"
  return 1
}

summary=$dir/side_by_side.txt
: >"$summary"
echo
if start_rtpengine; then
  anchor=$(rtpengine --version 2>&1 | sed -n 's/^Version: *//p')
  echo "mediad vs rtpengine $anchor (userspace), plain RTP, ${SECS} s per run, same traffic and CPU accounting"
else
  anchor=
  echo "mediad alone, plain RTP, ${SECS} s per run"
fi
# 200 calls: PAIRS runs of each, alternating, so that a slow moment of the
# machine (a shared VM's neighbours) falls on one pair, not on the verdict,
# which takes the median pair. 500 calls: one pair, reported.
PAIRS=${MEDIA_BENCH_PAIRS:-3}
for calls in $(printf '200 %.0s' $(seq "$PAIRS")) 500; do
  "$BIN/mediad-bench" --data-dir "$dir" --grpc "$grpc" --pid "$pid" --calls "$calls" --secs "$SECS" \
    --summary "$summary" || echo "mediad run at $calls calls failed"
  if [[ -n $anchor ]]; then
    "$BIN/mediad-bench" --rtpengine "$ng" --pid "$rtpe_pid" --calls "$calls" --secs "$SECS" \
      --summary "$summary" || echo "rtpengine run at $calls calls failed"
  fi
done

# One table (a row per pair), then the targets. A missing figure is a dash
# and fails.
awk -v anchor="${anchor:+rtpengine}" '
  {
    k = ++runs[$1, $2]; key = $1 SUBSEP $2 SUBSEP k
    setup[key] = $3; cpu[key] = $4; loss[key] = $5; lost[key] = $6; sent[key] = $7; have[key] = 1
    if (k > pairs[$2]) pairs[$2] = k
  }
  function f(relay, n, k, a) { return ((relay, n, k) in have) ? a[relay, n, k] : "-" }
  function ratio(n, k) {
    if (!(("mediad", n, k) in have) || !(("rtpengine", n, k) in have)) return "-"
    if (cpu["rtpengine", n, k] == 0) return "n/a"
    return sprintf("%.2f", cpu["mediad", n, k] / cpu["rtpengine", n, k])
  }
  function row(n, k) {
    printf fmt, n "#" k, f("mediad", n, k, setup), f("mediad", n, k, cpu), f("mediad", n, k, loss), \
      f("rtpengine", n, k, setup), f("rtpengine", n, k, cpu), f("rtpengine", n, k, loss), ratio(n, k)
  }
  END {
    fmt = "%-6s %14s %11s %12s %17s %14s %15s %6s\n"
    printf fmt, "calls", "mediad_setup_s", "mediad_cpu%", "mediad_loss%", "rtpengine_setup_s", "rtpengine_cpu%", "rtpengine_loss%", "ratio"
    for (k = 1; k <= pairs[200]; k++) row(200, k)
    for (k = 1; k <= pairs[500]; k++) row(500, k)
    printf "(ratio: mediad CPU / rtpengine CPU, each in %% of one core over the same measured window; calls#k is the k-th pair)\n"
    # The 200-call verdict: every mediad run set up in time without loss,
    # and the median pair ratio (a pair without a ratio counts as failing).
    n = 200; ok_setup = pairs[n] > 0; ok_loss = ok_setup; m = 0; bad = 0
    for (k = 1; k <= pairs[n]; k++) {
      if (!(("mediad", n, k) in have)) { ok_setup = 0; ok_loss = 0; continue }
      if (setup["mediad", n, k] >= 1.0) ok_setup = 0
      if (lost["mediad", n, k] != 0 || sent["mediad", n, k] == 0) ok_loss = 0
      r = ratio(n, k)
      if (r == "-" || r == "n/a") bad++; else rs[++m] = r + 0
    }
    for (i = 2; i <= m; i++) { v = rs[i]; for (j = i - 1; j >= 1 && rs[j] > v; j--) rs[j + 1] = rs[j]; rs[j + 1] = v }
    total = m + bad
    med = (total > 0 && bad <= int((total - 1) / 2)) ? sprintf("%.2f", rs[int((total + 1) / 2)]) : "-"
    ok_cpu = (med != "-" && med + 0 <= 0.8)
    verdict = (ok_setup && ok_loss && ok_cpu) ? "PASS" : "FAIL"
    if (anchor == "" && ok_setup && ok_loss) verdict = "NOT MEASURED (no rtpengine)"
    all = ""; for (k = 1; k <= pairs[n]; k++) all = all (k > 1 ? " " : "") ratio(n, k)
    printf "target 200 calls set up < 1 s, 0 loss, mediad CPU <= 0.8x rtpengine: %s (%d pairs: every mediad run set up in < 1 s: %s, lost 0 packets: %s; ratios %s, median %s)\n", \
      verdict, pairs[n], ok_setup ? "yes" : "no", ok_loss ? "yes" : "no", all, med
    for (k = 1; k <= pairs[200]; k++) lostnote(200, k)
    for (k = 1; k <= pairs[500]; k++) lostnote(500, k)
    n = 500
    printf "500 calls: reported (mediad: setup %s s, loss %s%%, CPU %s%%; rtpengine: setup %s s, loss %s%%, CPU %s%%; ratio %s)\n", \
      f("mediad", n, 1, setup), f("mediad", n, 1, loss), f("mediad", n, 1, cpu), \
      f("rtpengine", n, 1, setup), f("rtpengine", n, 1, loss), f("rtpengine", n, 1, cpu), ratio(n, 1)
  }
  function lostnote(n, k) {
    if (("rtpengine", n, k) in have && lost["rtpengine", n, k] > 0)
      printf "  note: rtpengine lost %s of %s packets in pair %d at %d calls: its CPU figure is for less relaying\n", lost["rtpengine", n, k], sent["rtpengine", n, k], k, n
  }' "$summary"
