#!/usr/bin/env bash
# Idempotent: install Debian's Chromium for the browser tests, as root (Playwright cannot download its own).
set -euo pipefail
log() { printf '[setup-browser] %s\n' "$*" >&2; }

if [ -x /usr/bin/chromium ]; then
  log "chromium already installed"
  exit 0
fi

log "installing chromium from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version >&2
