"""`pivoicectl service`: the unit it writes (checked by the real systemd-analyze), the key
kept out of it, idempotence, backups, linger, status, logs and remove.

systemctl, loginctl and journalctl are fakes at the command boundary (tests/unit/
systemd_fakes.py); the files and `systemd-analyze verify` are real.
"""

from __future__ import annotations

import json
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from pivoicectl.core.service_unit import UnitSpec, quote_arg, render_unit
from pivoicectl.errors import UserError
from tests.conftest import assert_one_line_error, clean_env, run_cli
from tests.unit.systemd_fakes import FakeSystemd, install_fakes

KEY = "sk-test-" + "k" * 32


@pytest.fixture
def fake(tmp_path) -> FakeSystemd:
    return install_fakes(tmp_path, clean_env())


def unit_file(fake: FakeSystemd) -> Path:
    return Path(fake.env["XDG_CONFIG_HOME"]) / "systemd" / "user" / "pivoicectl.service"


def env_file(fake: FakeSystemd) -> Path:
    return Path(fake.env["XDG_CONFIG_HOME"]) / "pivoicectl" / "service.env"


def verify(unit: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The real systemd-analyze: exit 0 even for a bad line, so stderr must be empty."""
    runtime = tmp_path / "verify-run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: run `sudo scripts/install-system-deps.sh`"
    return subprocess.run(
        [tool, "verify", "--user", str(unit)],
        env={**clean_env(), "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# ----------------------------------------------------------------------------- the unit text


@pytest.mark.parametrize(
    "arg",
    ["marin", "two words", 'say "hi"', "100%", "$HOME", "back\\slash", "semi;colon", "it's"],
)
def test_exec_start_words_split_back_into_the_same_arguments(arg):
    word = quote_arg(arg)
    (parsed,) = shlex.split(word)  # systemd's split, for the escapes quote_arg uses
    assert parsed.replace("%%", "%").replace("$$", "$") == arg


def test_control_characters_in_an_argument_are_refused():
    with pytest.raises(UserError, match="control character"):
        quote_arg("a\nExecStartPre=/bin/rm")


def test_the_unit_runs_this_installation_after_the_audio_server_and_holds_no_key():
    text = render_unit(
        UnitSpec(("/home/pi/venv/bin/pivoicectl",), ("--voice", "marin"), Path("/k/service.env"))
    )
    assert "ExecStart=/home/pi/venv/bin/pivoicectl run --voice marin\n" in text
    assert "After=pipewire.service pipewire-pulse.service wireplumber.service" in text
    assert "Type=notify" in text and "WatchdogSec=" in text
    assert "Restart=on-failure" in text and "RestartPreventExitStatus=2" in text
    assert "EnvironmentFile=-/k/service.env" in text
    assert "sk-" not in text
    with pytest.raises(ValueError, match="absolute"):
        render_unit(UnitSpec(("pivoicectl",)))


def test_the_written_unit_passes_systemd_analyze_verify(fake, tmp_path):
    proc = run_cli(
        "service", "install", "--", "--local", "--voice", "a b", env=fake.env, check=True
    )
    unit = unit_file(fake)
    assert unit.exists(), proc.stdout
    checked = verify(unit, tmp_path)
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    # the check can fail: a bad line is reported on stderr
    bad = tmp_path / "bad" / "pivoicectl.service"
    bad.parent.mkdir()
    bad.write_text(unit.read_text().replace("RestartSec=5", "RestartSec=soon"))
    assert "RestartSec" in verify(bad, tmp_path).stderr or "soon" in verify(bad, tmp_path).stderr


# ----------------------------------------------------------------------------- install


def test_install_writes_enables_starts_and_a_second_install_changes_nothing(fake):
    first = run_cli("service", "install", "--json", "--", "--local", env=fake.env, check=True)
    r = json.loads(first.stdout)
    assert r["changed"] and r["state"] == "active"
    assert fake.changing_calls() == [
        "--user daemon-reload",
        "--user enable pivoicectl.service",
        "--user restart --no-block pivoicectl.service",
    ]
    exec_line = next(ln for ln in unit_file(fake).read_text().splitlines() if "ExecStart" in ln)
    assert shlex.split(exec_line.split("=", 1)[1])[1:] == ["run", "--local"]
    program = Path(shlex.split(exec_line.split("=", 1)[1])[0])
    assert program.is_absolute() and program.exists()

    before = len(fake.changing_calls())
    again = run_cli("service", "install", "--", "--local", env=fake.env, check=True)
    assert "nothing to change" in again.stdout
    assert len(fake.changing_calls()) == before


def test_a_different_unit_is_backed_up_and_the_new_options_restart_it(fake):
    run_cli("service", "install", "--", "--local", env=fake.env, check=True)
    unit = unit_file(fake)
    unit.write_text(unit.read_text() + "# the user's own line\n")
    r = json.loads(
        run_cli(
            "service",
            "install",
            "--json",
            "--",
            "--local",
            "--voice",
            "cedar",
            env=fake.env,
            check=True,
        ).stdout
    )
    assert r["backup_path"] and "# the user's own line" in Path(r["backup_path"]).read_text()
    assert "--voice cedar" in unit.read_text()
    assert fake.changing_calls()[-2:] == [
        "--user daemon-reload",
        "--user restart --no-block pivoicectl.service",
    ]


def test_dry_run_prints_the_unit_and_changes_nothing(fake):
    proc = run_cli("service", "install", "--dry-run", "--", "--local", env=fake.env, check=True)
    assert "ExecStart=" in proc.stdout and "would: write" in proc.stdout
    assert not unit_file(fake).exists()
    assert fake.changing_calls() == []


def test_a_key_from_the_environment_goes_to_a_0600_file_never_the_unit_or_output(fake):
    env = {**fake.env, "OPENAI_API_KEY": KEY}
    proc = run_cli("service", "install", "--json", env=env, check=True)
    keyfile = env_file(fake)
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    assert f"OPENAI_API_KEY={KEY}" in keyfile.read_text()
    assert KEY not in unit_file(fake).read_text()
    assert f"EnvironmentFile=-{keyfile}" in unit_file(fake).read_text()
    assert KEY not in proc.stdout + proc.stderr
    assert all(KEY not in call for call in fake.calls())


def test_a_key_in_the_config_file_needs_no_key_file_and_a_loose_mode_is_reported(fake):
    config = Path(fake.env["XDG_CONFIG_HOME"]) / "pivoicectl" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[run]\napi_key = "{KEY}"\n')
    config.chmod(0o644)
    proc = run_cli("service", "install", env=fake.env, check=True)
    assert not env_file(fake).exists()
    assert "EnvironmentFile" not in unit_file(fake).read_text()
    assert f"chmod 600 {config}" in proc.stdout
    assert KEY not in proc.stdout


def test_no_key_and_bad_options_are_one_line_errors_with_exit_2(fake):
    assert_one_line_error(run_cli("service", "install", env=fake.env), 2, "no API key")
    assert_one_line_error(
        run_cli("service", "install", "--", "--local", "--bogus", env=fake.env), 2, "--bogus"
    )
    assert_one_line_error(
        run_cli("service", "install", "--", "--local", "--max-turns", "x", env=fake.env), 2
    )
    assert not unit_file(fake).exists()
    assert fake.changing_calls() == []


def test_without_a_user_manager_install_says_so_and_writes_nothing(fake):
    (Path(fake.env["XDG_RUNTIME_DIR"]) / "systemd" / "private").unlink()
    assert_one_line_error(
        run_cli("service", "install", "--", "--local", env=fake.env), 1, "user manager"
    )
    assert not unit_file(fake).exists()


def test_a_failing_systemctl_is_one_line_with_its_reason(fake):
    fake.set(fail=["enable"])
    assert_one_line_error(
        run_cli("service", "install", "--", "--local", env=fake.env), 1, "Access denied"
    )


# ----------------------------------------------------------------------------- linger


def test_linger_off_is_said_plainly_with_the_command(fake):
    fake.set(linger=False)
    proc = run_cli("service", "install", "--", "--local", env=fake.env, check=True)
    assert "sudo loginctl enable-linger pi" in proc.stdout
    assert "loginctl enable-linger pi" not in fake.calls()


def test_enable_linger_turns_it_on_and_reports_a_refusal(fake):
    fake.set(linger=False)
    run_cli("service", "install", "--enable-linger", "--", "--local", env=fake.env, check=True)
    assert "loginctl enable-linger pi" in fake.calls() and fake.state()["linger"] is True
    fake.set(linger=False, linger_allowed=False)
    unit_file(fake).unlink()
    proc = run_cli(
        "service", "install", "--enable-linger", "--", "--local", env=fake.env, check=True
    )
    assert "enable-linger failed" in proc.stdout and "sudo loginctl enable-linger pi" in proc.stdout


# ----------------------------------------------------------------------------- status, logs, remove


def test_status_reports_state_status_line_last_exit_and_log(fake):
    proc = run_cli("service", "status", "--json", env=fake.env)
    assert proc.returncode == 1 and json.loads(proc.stdout)["installed"] is False
    run_cli("service", "install", "--", "--local", env=fake.env, check=True)
    fake.props(
        ActiveState="failed",
        SubState="failed",
        StatusText="waiting for the audio server",
        ExecMainStatus="2",
        ExecMainCode="1",
        Result="exit-code",
        NRestarts="3",
    )
    fake.set(journal=["2026-12-03T06:00:00 pi pivoicectl[1]: error: bad key [red]x[/]"])
    proc = run_cli("service", "status", "--json", env=fake.env)
    s = json.loads(proc.stdout)
    assert proc.returncode == 1 and not s["ok"]
    assert s["active"] == "failed" and s["status_text"] == "waiting for the audio server"
    assert s["last_exit"].startswith("2 (a configuration") and s["restarts"] == "3"
    text = run_cli("service", "status", env=fake.env)
    assert "[red]x[/]" in text.stdout  # the journal is data, not markup
    fake.props(ActiveState="active", SubState="running", ExecMainStatus="0", ExecMainCode="0")
    assert run_cli("service", "status", env=fake.env).returncode == 0


def test_logs_reads_the_units_journal(fake):
    fake.set(journal=["one", "two"])
    proc = run_cli("service", "logs", "-n", "5", env=fake.env, check=True)
    assert proc.stdout.split() == ["one", "two"]
    assert fake.calls()[-1] == "journalctl --user --unit pivoicectl.service --lines 5 --no-pager"
    assert_one_line_error(run_cli("service", "logs", "-n", "0", env=fake.env), 2, "-n 0")


def test_remove_stops_disables_backs_up_and_removes_the_key_file(fake):
    env = {**fake.env, "OPENAI_API_KEY": KEY}
    run_cli("service", "install", env=env, check=True)
    dry = run_cli("service", "remove", "--dry-run", env=env, check=True)
    assert "would: " in dry.stdout and unit_file(fake).exists() and env_file(fake).exists()
    r = json.loads(run_cli("service", "remove", "--json", env=env, check=True).stdout)
    assert not unit_file(fake).exists() and not env_file(fake).exists()
    assert Path(r["backup_path"]).exists()
    assert fake.changing_calls()[-2:] == [
        "--user disable --now pivoicectl.service",
        "--user daemon-reload",
    ]
    again = run_cli("service", "remove", env=env, check=True)
    assert "nothing to remove" in again.stdout


def test_doctor_reports_the_service_and_a_readable_key_file(fake):
    def check(env, id_):
        report = json.loads(run_cli("doctor", "--json", env=env).stdout)
        return next(c for c in report["checks"] if c["id"] == id_)

    assert check(fake.env, "assistant-service")["status"] == "skip"
    env = {**fake.env, "OPENAI_API_KEY": KEY}
    run_cli("service", "install", env=env, check=True)
    fake.props(UnitFileState="enabled", ActiveState="active", StatusText="listening")
    assert check(fake.env, "assistant-service")["status"] == "pass"
    fake.props(ActiveState="failed", Result="watchdog")
    failed = check(fake.env, "assistant-service")
    assert failed["status"] == "fail" and "watchdog" in failed["detail"]
    key = check(fake.env, "api-key")  # the service's key file counts, mode 0600
    assert key["status"] == "pass" and KEY not in json.dumps(key)
    env_file(fake).chmod(0o644)
    loose = check(fake.env, "api-key")
    assert loose["status"] == "warn" and loose["fix"] == f"chmod 600 {env_file(fake)}"


def test_values_are_checked_as_run_checks_them_with_the_config_but_not_this_shell(fake):
    assert_one_line_error(
        run_cli("service", "install", "--", "--local", "--onset-mute-ms", "5000", env=fake.env),
        2,
        "--onset-mute-ms 5000",
    )
    config = Path(fake.env["XDG_CONFIG_HOME"]) / "pivoicectl" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('[run]\nvad = "loud"\n')
    assert_one_line_error(run_cli("service", "install", "--", "--local", env=fake.env), 2, "loud")
    config.write_text('[run]\ntoken_url = "https://backend.example/v1/realtime/session"\n')
    env = {**fake.env, "PIVOICECTL_VAD": "loud"}  # not the service's: only noted
    proc = run_cli("service", "install", env=env, check=True)  # a token backend: no key
    assert "PIVOICECTL_* variables of this shell do not reach the service" in proc.stdout
    assert not env_file(fake).exists()
