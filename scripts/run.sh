#!/usr/bin/env bash
# Starts the five GoSIP daemons, restarts one that dies (and says so), and
# stops them all on Ctrl-C. Usage: scripts/run.sh [bin-dir]
set -uo pipefail
BIN=${1:-target/release}
export GOSIP_DATA_DIR=${GOSIP_DATA_DIR:-./data}
export GOSIP_HTTP_PORT=${GOSIP_HTTP_PORT:-8080}
export GOSIP_SIP_PORT=${GOSIP_SIP_PORT:-5060}
export GOSIP_SIPS_PORT=${GOSIP_SIPS_PORT:-5061}
export GOSIP_WEB_DIR=${GOSIP_WEB_DIR:-web-ui/dist}
mkdir -p "$GOSIP_DATA_DIR/logs"
DAEMONS=(sipd mediad twiliod notifyd webd)
declare -A PID

start() {
  "$BIN/$1" >>"$GOSIP_DATA_DIR/logs/$1.log" 2>&1 &
  PID[$1]=$!
}

stop_all() {
  trap - INT TERM
  echo; echo "stopping GoSIP..."
  for p in "${PID[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait
  echo "stopped."
  exit 0
}
trap stop_all INT TERM

for d in "${DAEMONS[@]}"; do start "$d"; done
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$GOSIP_HTTP_PORT/api/system/health" 2>/dev/null | grep -q '"status":"ok"' && break
  sleep 0.1
done
if [ -n "${GOSIP_DEMO:-}" ]; then
  # The Twilio stand-in: configures GoSIP to use it, then plays scripted
  # inbound calls (voicemail, spam, anonymous) against the running system.
  "$BIN/twilio-standin" --configure-db "$GOSIP_DATA_DIR" --demo --every 120 \
    --gosip "http://127.0.0.1:$GOSIP_HTTP_PORT" >>"$GOSIP_DATA_DIR/logs/twilio-standin.log" 2>&1 &
  PID[standin]=$!
  echo "demo: Twilio stand-in on http://127.0.0.1:4011 (log: $GOSIP_DATA_DIR/logs/twilio-standin.log)"
fi
cat <<MSG
GoSIP is running.
  Web UI:  http://127.0.0.1:$GOSIP_HTTP_PORT/
  SIP:     udp+tcp port $GOSIP_SIP_PORT, tls port $GOSIP_SIPS_PORT
  Data:    $GOSIP_DATA_DIR (logs in $GOSIP_DATA_DIR/logs/)
MSG
# Until the setup wizard is done, webd requires the one-time token it wrote
# here (so a stranger who reaches the port first cannot become admin).
if [ -s "$GOSIP_DATA_DIR/setup-token" ]; then
  echo "  Setup:   open http://127.0.0.1:$GOSIP_HTTP_PORT/setup?token=$(cat "$GOSIP_DATA_DIR/setup-token")"
fi
echo "Press Ctrl-C to stop."

declare -A BACKOFF
while true; do
  sleep 1
  for d in "${DAEMONS[@]}"; do
    if ! kill -0 "${PID[$d]}" 2>/dev/null; then
      wait "${PID[$d]}"; rc=$?
      b=${BACKOFF[$d]:-1}
      echo "$(date -u +%FT%TZ) $d exited (code $rc); restarting in ${b}s. Last log lines:" >&2
      tail -n 5 "$GOSIP_DATA_DIR/logs/$d.log" >&2
      sleep "$b"
      BACKOFF[$d]=$(( b < 30 ? b * 2 : 30 ))
      start "$d"
    fi
  done
done
