#!/usr/bin/env bash
# One command to set up and pass the tests on a fresh Debian machine:
#   sudo scripts/test.sh            (as root it installs the Debian packages it needs)
#   PIVOICECTL_PW_GEN=bookworm sudo scripts/test.sh   (PipeWire 0.3.65 + WirePlumber 0.4)
# Extra arguments go to pytest, e.g. scripts/test.sh -k setup
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-system-deps.sh
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
echo "pipewire: $(pipewire --version | tail -1); wireplumber: $(wireplumber --version | tail -1)"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
