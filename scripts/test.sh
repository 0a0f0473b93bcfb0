#!/usr/bin/env bash
# Run the test suite on this machine: installs what the tests need (package, Docker engine, Chromium,
# local base image), then pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  bash .ci/setup-docker.sh
  bash .ci/setup-browser.sh
  bash .ci/setup-runner-python.sh
fi
if docker info >/dev/null 2>&1; then
  # No registry may be reachable: build the base image for service containers locally (quick when present).
  jupyter-deploy-manager build-base-image
fi
exec python3 -m pytest "$@"
