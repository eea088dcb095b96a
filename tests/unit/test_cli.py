"""The CLI surface: version, help, and errors that need no audio server."""

from __future__ import annotations

from pivoicectl import __version__
from tests.conftest import assert_one_line_error, clean_env, run_cli


def test_version():
    proc = run_cli("--version", env=clean_env())
    assert proc.returncode == 0 and proc.stdout.strip() == f"pivoicectl {__version__}"


def test_help_lists_commands_with_examples():
    proc = run_cli("--help", env=clean_env())
    assert proc.returncode == 0
    for cmd in ("setup", "devices", "doctor", "sim"):
        assert cmd in proc.stdout
    setup_help = run_cli("setup", "--help", env=clean_env()).stdout
    assert "--dry-run" in setup_help and "--undo" in setup_help and "Examples" in setup_help


def test_malformed_aec_arg_is_refused_before_touching_the_server(tmp_path):
    env = clean_env(XDG_RUNTIME_DIR=str(tmp_path))
    assert_one_line_error(run_cli("setup", "--aec-arg", "nonsense", env=env), 2, "KEY=VALUE")


def test_unknown_option_is_a_usage_error():
    proc = run_cli("setup", "--no-such-flag", env=clean_env())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_out_of_range_timeout_is_a_usage_error():
    proc = run_cli("setup", "--timeout", "0", env=clean_env())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_sim_commands_without_a_room(tmp_path):
    env = clean_env(PIVOICECTL_SIM_DIR=str(tmp_path / "none"))
    assert_one_line_error(run_cli("sim", "env", env=env), 2, "no simulated room")
    assert_one_line_error(run_cli("sim", "restart", env=env), 2, "no simulated room")
    down = run_cli("sim", "down", env=env)
    assert down.returncode == 0 and "nothing to stop" in down.stderr
