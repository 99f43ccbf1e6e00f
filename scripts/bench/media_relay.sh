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
# Prints mediad's CPU (from /proc/<pid>/stat), packet loss and the one-way
# latency added by the relay. Target: 200 calls, 0.0% loss, under one core,
# SRTP included. Talks only to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${GOSIP_BIN_DIR:-target/release}
SECS=${MEDIA_BENCH_SECS:-10}
for b in mediad mediad-bench; do
  [[ -x $BIN/$b ]] || cargo build --release -p mediad --bins
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dir=$(mktemp -d)
grpc=127.0.0.1:$(free_port)
GOSIP_DATA_DIR=$dir GOSIP_MEDIAD_GRPC=$grpc GOSIP_RTP_BIND=127.0.0.1 \
  GOSIP_RTP_PORTS=${MEDIA_BENCH_PORTS:-21000-21999} RUST_LOG=warn \
  "$BIN/mediad" >"$dir/mediad.log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
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
