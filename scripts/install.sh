#!/usr/bin/env bash
# Install jupyter-deploy (editable) with what the examples and tests need. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e '.[notebook,test]'
