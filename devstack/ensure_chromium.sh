#!/usr/bin/env bash
# Makes sure a Chromium exists for the console's browser tests (tests/web), on a fresh machine too.
# 1. a chromium already on PATH (or $CHROMIUM) is used as it is;
# 2. on Debian/Ubuntu as root: apt-get install chromium (Playwright's own browser download fails there);
# 3. elsewhere: Playwright's own Chromium (`playwright install chromium`).
set -euo pipefail

if [[ -n "${CHROMIUM:-}" && -x "${CHROMIUM}" ]] || command -v chromium >/dev/null 2>&1 \
    || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [[ -r /etc/debian_version && "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Chromium from the distribution's packages (apt-get)..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  exit 0
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
echo "Installing Playwright's Chromium..."
"${here}/.venv/bin/playwright" install chromium
