#!/usr/bin/env bash
# Installs the system packages GoSIP's tests need (Debian, as root). Without
# root it checks that they are there and says exactly what is missing.
set -euo pipefail

# With --build: only what building the daemons needs (cmake: mediad's
# Opus codec, libopus, is built from source by the opus crate), for
# `make build`/`make release`/`make run`.
# espeak-ng is also a runtime dependency: mediad speaks voicemail greetings.
if [ "${1:-}" = "--build" ]; then
  PKGS=(cmake)
  WHAT="building GoSIP"
else
  PKGS=(cmake sip-tester baresip chromium firefox-esr coturn docker-compose python3-aiosmtpd sox caddy iproute2 nftables curl openssl espeak-ng tcpdump)
  WHAT="make test"
fi
# The command each package provides, to check without dpkg.
declare -A CMD=([cmake]=cmake [coturn]=turnserver [sip-tester]=sipp [baresip]=baresip [chromium]=chromium [firefox-esr]=firefox-esr [docker-compose]=docker-compose
                [python3-aiosmtpd]="python3 -c 'import aiosmtpd'" [sox]=sox [caddy]=caddy [iproute2]=ip [nftables]=nft [curl]=curl [openssl]=openssl
                [espeak-ng]=espeak-ng [tcpdump]=tcpdump)

# A clean clone grows to about 3 GB (target/debug 2.6 GB, node_modules,
# the schemathesis venv); a full disk shows up much later as a cryptic
# rustc IO failure. Checked before the first build only.
NEED_GB=${GOSIP_NEED_DISK_GB:-4}
free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
if [ "$WHAT" = "make test" ] && [ ! -d target/debug ] && [ -n "$free_kb" ] && [ "$free_kb" -lt $((NEED_GB * 1024 * 1024)) ]; then
  echo "make test needs about ${NEED_GB} GB free disk for target/ (the debug build); $(df -Ph . | awk 'NR==2 {print $4}') free here." >&2
  echo "Free some space (cargo clean in other checkouts, /tmp) and run it again." >&2
  exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
  c=${CMD[$p]}
  if [[ $c == python3* ]]; then
    /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || missing+=("$p")
  else
    command -v "$c" >/dev/null 2>&1 || missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "$WHAT needs these Debian packages: ${missing[*]}" >&2
  echo "Run as root (it installs them with apt-get) or: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null || { echo "apt-get update failed: cannot reach Debian's package mirror" >&2; exit 1; }
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
  || { echo "apt-get install ${missing[*]} failed" >&2; exit 1; }
