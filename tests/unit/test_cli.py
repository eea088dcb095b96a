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


# --- run ------------------------------------------------------------------------------------


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def test_run_help_has_an_option_per_setting_with_the_dataclass_default():
    from pivoicectl.realtime.settings import SETTINGS, RunSettings
    from pivoicectl.realtime.settings.table import value_at

    proc = run_cli("run", "--help", env=clean_env(COLUMNS="400"))
    assert proc.returncode == 0, proc.stderr
    lines = {ln.split()[1]: ln for ln in proc.stdout.splitlines() if ln.startswith("│ --")}
    defaults = RunSettings()
    for row in SETTINGS:
        if not row.flag:
            assert f"--{row.name.replace('_', '-')}" not in lines  # the key: no flag, no `ps`
            continue
        assert row.flag_name in lines, row.flag_name
        value = value_at(defaults, row.path)
        if value is not None and row.negatable:
            assert f"[default: {_shown(value)}]" in lines[row.flag_name], row.flag_name
    assert "[default: 300] [0 to 2000 ms]" in lines["--onset-mute-ms"]
    assert "--json" in lines and "uplink" not in proc.stdout


def test_run_refuses_a_bad_value_in_one_line_naming_the_flag(tmp_path):
    env = clean_env(XDG_CONFIG_HOME=str(tmp_path))
    proc = run_cli("run", "--local", "--onset-mute-ms", "5000", env=env)
    assert_one_line_error(proc, 2, "--onset-mute-ms 5000 is out of range", "use 0 to 2000 ms")
    proc = run_cli("run", "--local", "--gpio-pin", "40", env=env)
    assert_one_line_error(proc, 2, "--gpio-pin 40 is out of range", "a BCM number from 0 to 27")
