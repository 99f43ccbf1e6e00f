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
# RTP at 200 and 500 calls, set up through mediad's gRPC API and through
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
  # Threads: rtpengine's default, one per core, as mediad's tokio runtime.
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
for calls in 200 500; do
  "$BIN/mediad-bench" --data-dir "$dir" --grpc "$grpc" --pid "$pid" --calls "$calls" --secs "$SECS" \
    --summary "$summary" || echo "mediad run at $calls calls failed"
  if [[ -n $anchor ]]; then
    "$BIN/mediad-bench" --rtpengine "$ng" --pid "$rtpe_pid" --calls "$calls" --secs "$SECS" \
      --summary "$summary" || echo "rtpengine run at $calls calls failed"
  fi
done

# One table, then the targets. A missing figure is a dash and fails.
awk -v anchor="${anchor:+rtpengine}" '
  { setup[$1, $2] = $3; cpu[$1, $2] = $4; loss[$1, $2] = $5; lost[$1, $2] = $6; sent[$1, $2] = $7; have[$1, $2] = 1 }
  function f(relay, n, a) { return ((relay, n) in have) ? a[relay, n] : "-" }
  function ratio(n) {
    if (!(("mediad", n) in have) || !(("rtpengine", n) in have)) return "-"
    if (cpu["rtpengine", n] == 0) return "n/a"
    return sprintf("%.2f", cpu["mediad", n] / cpu["rtpengine", n])
  }
  END {
    fmt = "%-5s %14s %11s %12s %17s %14s %15s %6s\n"
    printf fmt, "calls", "mediad_setup_s", "mediad_cpu%", "mediad_loss%", "rtpengine_setup_s", "rtpengine_cpu%", "rtpengine_loss%", "ratio"
    for (i = 1; i <= 2; i++) {
      n = (i == 1) ? 200 : 500
      printf fmt, n, f("mediad", n, setup), f("mediad", n, cpu), f("mediad", n, loss), \
        f("rtpengine", n, setup), f("rtpengine", n, cpu), f("rtpengine", n, loss), ratio(n)
    }
    printf "(ratio: mediad CPU / rtpengine CPU, each in %% of one core over the same measured window)\n"
    n = 200; r = ratio(n)
    ok_setup = (("mediad", n) in have) && setup["mediad", n] < 1.0
    ok_loss = (("mediad", n) in have) && lost["mediad", n] == 0 && sent["mediad", n] > 0
    ok_cpu = (r != "-" && r != "n/a" && r + 0 <= 0.8)
    verdict = (ok_setup && ok_loss && ok_cpu) ? "PASS" : "FAIL"
    if (anchor == "" && ok_setup && ok_loss) verdict = "NOT MEASURED (no rtpengine)"
    printf "target 200 calls set up < 1 s, 0 loss, mediad CPU <= 0.8x rtpengine: %s (setup %s s, lost %s of %s packets, mediad %s%% vs rtpengine %s%% CPU, ratio %s)\n", \
      verdict, f("mediad", n, setup), f("mediad", n, lost), f("mediad", n, sent), f("mediad", n, cpu), f("rtpengine", n, cpu), r
    for (i = 1; i <= 2; i++) {
      n = (i == 1) ? 200 : 500
      if (("rtpengine", n) in have && lost["rtpengine", n] > 0)
        printf "  note: rtpengine lost %s of %s packets at %d calls: its CPU figure is for less relaying\n", lost["rtpengine", n], sent["rtpengine", n], n
    }
    n = 500
    printf "500 calls: reported (mediad: setup %s s, loss %s%%, CPU %s%%; rtpengine: setup %s s, loss %s%%, CPU %s%%; ratio %s)\n", \
      f("mediad", n, setup), f("mediad", n, loss), f("mediad", n, cpu), \
      f("rtpengine", n, setup), f("rtpengine", n, loss), f("rtpengine", n, cpu), ratio(n)
  }' "$summary"
