#!/usr/bin/env bash
# Validates compose.yaml with docker-compose (no engine needed) and checks the
# resolved file: a service per daemon, the SIP/HTTP/RTP ports (HTTP on
# loopback only), the data volume, restart policy and health checks.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(docker-compose -f compose.yaml config) || { echo "docker-compose config rejected compose.yaml" >&2; exit 1; }
python3 - "$out" <<'PY'
import sys, yaml
c = yaml.safe_load(sys.argv[1])
s = c["services"]
errs = []
for d in ["sipd", "mediad", "twiliod", "notifyd", "webd"]:
    if d not in s: errs.append(f"no service {d}"); continue
    v = s[d]
    if not any(":/app/data" in str(x) or (isinstance(x, dict) and x.get("target") == "/app/data") for x in v.get("volumes", [])):
        errs.append(f"{d}: no ./data:/app/data volume")
    if v.get("restart") != "unless-stopped": errs.append(f"{d}: restart is not unless-stopped")
    if "healthcheck" not in v: errs.append(f"{d}: no healthcheck")
    elif d != "webd" and v["healthcheck"].get("test") != ["CMD", d, "--health"]:
        errs.append(f"{d}: the healthcheck must be the daemon's own `{d} --health`, not webd's summary")
    if v.get("environment", {}).get("GOSIP_DATA_DIR") != "/app/data": errs.append(f"{d}: GOSIP_DATA_DIR")
def published(name):
    """(host_ip or "", "published:target/protocol") of each published port."""
    out = []
    for p in s.get(name, {}).get("ports", []):
        if isinstance(p, dict):
            out.append((p.get("host_ip") or "", f'{p.get("published")}:{p.get("target")}/{p.get("protocol","tcp")}'))
            continue
        p = str(p) if "/" in str(p) else f"{p}/tcp"
        parts = p.split(":")
        out.append((parts[0], ":".join(parts[1:])) if len(parts) == 3 else ("", p))
    return out
def ports(name):
    return [p for _, p in published(name)]
if "5060:5060/udp" not in ports("sipd"): errs.append("sipd: 5060/udp not published")
if "5060:5060/tcp" not in ports("sipd"): errs.append("sipd: 5060/tcp not published")
if "8080:8080/tcp" not in ports("webd"): errs.append("webd: 8080/tcp not published")
if any(ip not in ("127.0.0.1", "::1") for ip, p in published("webd") if p == "8080:8080/tcp"):
    errs.append("webd: 8080 must be published on 127.0.0.1 only (the TLS proxy in front reaches it there)")
if not any(p.endswith("/udp") and p.startswith("10000") for p in ports("mediad")): errs.append("mediad: RTP range not published")
if errs:
    print("\n".join(errs), file=sys.stderr); sys.exit(1)
PY
