#!/usr/bin/env bash
# Idempotent, as root on Debian: a Python of the manager's X.Y that unprivileged users can run.
# As root, the process runtime runs every service as a user of its own, who cannot reach an
# interpreter under /root (pyenv); Debian's /usr/bin/pythonX.Y serves them instead.
set -euo pipefail
log() { printf '[setup-runner-python] %s\n' "$*" >&2; }
version="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ -x "/usr/bin/python${version}" ]; then
  log "/usr/bin/python${version} present"
  exit 0
fi
log "installing python${version} from Debian"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "python${version}" >/dev/null || log "Debian has no python${version}; isolated runners need one (see docs/internals.md)"
