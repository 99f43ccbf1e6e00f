#!/usr/bin/env bash
# Sourced by test scripts: starts the five daemons from $BIN on free loopback
# ports with a temp data dir, waits for health, and stops them on exit.
# Sets GOSIP_URL, GOSIP_TMP and the GOSIP_* env of the daemons.
BIN=${BIN:-target/debug}
GOSIP_TMP=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export GOSIP_DATA_DIR=$GOSIP_TMP/data GOSIP_HTTP_BIND=127.0.0.1 GOSIP_SIP_BIND=127.0.0.1 GOSIP_RTP_BIND=127.0.0.1
export GOSIP_HTTP_PORT=$(free_port) GOSIP_SIP_PORT=$(free_port) GOSIP_SIPS_PORT=$(free_port)
export GOSIP_SIPD_GRPC=127.0.0.1:$(free_port) GOSIP_MEDIAD_GRPC=127.0.0.1:$(free_port)
export GOSIP_TWILIOD_GRPC=127.0.0.1:$(free_port) GOSIP_TWILIOD_HTTP=127.0.0.1:$(free_port)
export GOSIP_NOTIFYD_GRPC=127.0.0.1:$(free_port) GOSIP_SIP_WS=127.0.0.1:$(free_port)
base=$(( 30000 + RANDOM % 20000 / 2 * 2 ))
export GOSIP_RTP_PORTS=$base-$((base + 99))
export GOSIP_WEB_DIR=${GOSIP_WEB_DIR:-web-ui/dist}
mkdir -p "$GOSIP_DATA_DIR"
GOSIP_PIDS=()
for d in sipd mediad twiliod notifyd webd; do
  "$BIN/$d" >>"$GOSIP_TMP/$d.log" 2>&1 &
  GOSIP_PIDS+=($!)
done
gosip_down() {
  for p in "${GOSIP_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$GOSIP_TMP"
}
trap gosip_down EXIT
GOSIP_URL=http://127.0.0.1:$GOSIP_HTTP_PORT
for _ in $(seq 1 300); do
  curl -fsS "$GOSIP_URL/api/system/health" 2>/dev/null | grep -q '"status":"ok"' && break
  sleep 0.1
done
curl -fsS "$GOSIP_URL/api/system/health" | grep -q '"status":"ok"' || {
  echo "GoSIP did not become healthy"; tail -n 20 "$GOSIP_TMP"/*.log; exit 1; }
# The first-run wizard through the API: admin $1 with password $2 and the
# number +15551230000; prints the admin's session cookie value.
gosip_wizard() {
  local jar=$GOSIP_TMP/cookies token
  token=$(cat "$GOSIP_DATA_DIR/setup-token")
  curl -fsS -c "$jar" -H 'X-Requested-With: gosip' -H 'Content-Type: application/json' \
    -d '{"setup_token":"'"$token"'","admin":{"email":"'"$1"'","password":"'"$2"'"},"did":{"number":"+15551230000","name":"Main"}}' \
    "$GOSIP_URL/api/setup" >/dev/null
  awk '$6=="gosip_session"{print $7}' "$jar"
}
