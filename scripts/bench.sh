#!/usr/bin/env bash
# Runs every benchmark in scripts/bench/ against release binaries and prints
# its numbers. Benchmarks talk only to 127.0.0.1.
set -uo pipefail
cd "$(dirname "$0")/.."
export GOSIP_BIN_DIR=${GOSIP_BIN_DIR:-$PWD/target/release}
rc=0
for b in scripts/bench/*.sh; do
  echo "=== $(basename "$b" .sh)"
  bash "$b" || { echo "benchmark $b failed"; rc=1; }
done
exit $rc
