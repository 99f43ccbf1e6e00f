#!/bin/sh
# The image's entrypoint: when started as root (the default), give the data
# dir to the gosip user (uid 10001) if it is not already, then run the
# daemon as that user. A bind-mounted ./data is owned by the host user who
# created it, and the daemons could not create gosip.db there otherwise.
# Started as another user (compose `user:`), it just runs the command.
set -eu
DATA=${GOSIP_DATA_DIR:-/app/data}
UID_GOSIP=${GOSIP_UID:-10001}
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$DATA"
  if [ "$(stat -c %u "$DATA")" != "$UID_GOSIP" ]; then
    echo "gosip-entrypoint: giving $DATA to uid $UID_GOSIP (it was owned by uid $(stat -c %u "$DATA"))" >&2
    chown -R "$UID_GOSIP:$UID_GOSIP" "$DATA"
  fi
  chmod 0700 "$DATA"
  exec setpriv --reuid="$UID_GOSIP" --regid="$UID_GOSIP" --clear-groups -- "$@"
fi
exec "$@"
