#!/usr/bin/env bash
# Debian packages the test suite needs. Installed by the project's own files, never by hand.
# Benchmarks need more (b3sum, rsync, nginx): see bench/README.md and scripts/bench-deps.sh.
set -euo pipefail
NEEDED=(chromium faketime systemd tinyproxy)   # tinyproxy: the proxy tests (test/e2e/proxy); chromium: the dashboard browser test (playwright-core); faketime: the key drills (test/e2e/keys-*); systemd: systemd-analyze verify of the service units (test/cli/service)
missing=()
for p in "${NEEDED[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then echo "system-deps: missing ${missing[*]}; install them as root: apt-get install -y ${missing[*]}" >&2; exit 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
