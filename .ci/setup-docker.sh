#!/usr/bin/env bash
# Idempotent: install and start a Docker engine on this host (Debian), as root.
set -euo pipefail
log() { printf '[setup-docker] %s\n' "$*" >&2; }

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  log "installing docker.io and debootstrap from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io debootstrap >/dev/null
fi

if docker info >/dev/null 2>&1; then
  log "engine already answering"
  exit 0
fi

log "starting dockerd in the background"
mkdir -p /var/log
nohup dockerd >/var/log/dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "engine up"
    exit 0
  fi
  sleep 1
done
log "dockerd did not answer within 60 s; last log lines:"
tail -n 30 /var/log/dockerd.log >&2 || true
exit 1
