#!/usr/bin/env bash
# Peer tools the benchmarks compare against (Debian packages).
set -euo pipefail
PKGS=(b3sum rsync nginx curl zstd xdelta3)
missing=()
for p in "${PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
