#!/usr/bin/env bash
# The main job on a fresh machine: install, start a manager, deploy the iris model from its notebook,
# call it from another notebook, print the answers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec python3 examples/run_demo.py "$@"
