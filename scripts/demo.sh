#!/usr/bin/env bash
# One command to set up and run the main job on the simulated room, on a fresh Debian
# machine:  sudo scripts/demo.sh
# It starts a private PipeWire with a simulated speaker, mic and echo path, shows doctor
# failing, runs `pivoicectl setup`, shows doctor passing, measures the cancellation,
# proves with `parrot --self-test` that nothing loops, then runs the assistant against
# the built-in parrot server while a simulated person talks to it, and stops the room
# again. Nothing touches your real audio session.
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
echo; echo "== measure: the echo cancellation in numbers =="
$pv measure --duration 4
echo; echo "== parrot --self-test: does it hear itself? =="
$pv parrot --self-test
echo; echo "== run --local: a simulated person talks to the assistant (built-in parrot server) =="
$pv run --local --max-turns 1 --duration 30 &
run_pid=$!
sleep 4
$pv sim talk --say "Hello assistant. Can you hear me, without hearing yourself?"
wait "$run_pid"
