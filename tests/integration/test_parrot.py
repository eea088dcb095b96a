"""`parrot --self-test` against the real PipeWire in the simulated room."""

from __future__ import annotations

import json

from tests.conftest import assert_one_line_error, run_cli


def test_self_test_detects_the_loop_without_the_canceller_and_not_with_it(room):
    assert_one_line_error(run_cli("parrot", "--rounds", "0", env=room.env), 2, "--rounds")
    # Before setup the default source is the raw mic: the parrot hears itself.
    proc = run_cli("parrot", "--self-test", "--json", env=room.env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    r = json.loads(proc.stdout)
    assert r["verdict"] == "echo loop detected" and r["source"] == "sim_mic"
    assert r["heard_own_fraction"] >= 0.5 and r["self_triggers"] >= 1

    run_cli("setup", "--json", env=room.env, check=True)
    proc = run_cli("parrot", "--self-test", "--json", env=room.env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(proc.stdout)
    assert r["verdict"] == "no echo loop" and r["source"] == "source_ec"
    assert r["heard_own_fraction"] < 0.5
