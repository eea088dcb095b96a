#!/usr/bin/env bash
# One command to set up and run the main job on the simulated room, on a fresh Debian
# machine:  sudo scripts/demo.sh
# It starts a private PipeWire with a simulated speaker, mic and echo path, shows doctor
# failing, runs `pivoicectl setup`, shows doctor passing, lists the devices, and stops
# the room again. Nothing touches your real audio session.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-system-deps.sh
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e .
pv=.venv/bin/pivoicectl

room="$(mktemp -d /tmp/pivoicectl-demo-XXXXXX)"
trap '$pv sim down --dir "$room" >/dev/null 2>&1 || true' EXIT
eval "$($pv sim up --dir "$room")"

echo; echo "== doctor before setup (failures expected) =="
$pv doctor || true
echo; echo "== setup =="
$pv setup
echo; echo "== setup again: nothing to change =="
$pv setup
echo; echo "== doctor after setup =="
$pv doctor
echo; echo "== devices =="
$pv devices
