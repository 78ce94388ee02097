#!/usr/bin/env bash
# Debian packages the test suite needs. Installed by the project's own files, never by hand.
# Benchmarks need more (b3sum, rsync, nginx): see bench/README.md and scripts/bench-deps.sh.
set -euo pipefail
# chromium: the dashboard browser test (playwright-core); faketime: the key drills (test/e2e/keys-*);
# python3-aiosmtpd: the SMTP server of the alert e-mail tests; slapd, ldap-utils: the directory login tests
# (a throw-away slapd per test; the package's own service is not used); wine, wine64: the Windows agent
# executable (test/e2e/agent-exe); gcc-mingw-w64-x86-64: the Windows service host (npm run package:agent) and
# the test's .exe installer; wixl: the test's .msi (test/e2e/agent-exe); systemd: systemd-analyze verify of the
# service units (test/cli/service); tinyproxy: the proxy tests (test/e2e/proxy); postgresql: the PostgreSQL
# catalog backend tests (a throw-away cluster per test file, test/helpers/postgres.ts; the package's own service
# is not used).
NEEDED=(chromium faketime python3-aiosmtpd slapd ldap-utils wine wine64 gcc-mingw-w64-x86-64 wixl systemd tinyproxy postgresql)
missing=()
for p in "${NEEDED[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then echo "system-deps: missing ${missing[*]}; install them as root: apt-get install -y ${missing[*]}" >&2; exit 1; fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi
