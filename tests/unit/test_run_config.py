"""`run` settings: flags > PIVOICECTL_* / OPENAI_API_KEY > config file > defaults; the
trace never holds the key."""

from __future__ import annotations

import json

import pytest

from pivoicectl.errors import UserError
from pivoicectl.realtime.edges.trace_file import TraceWriter, read_trace
from pivoicectl.realtime.protocol import events as ev
from pivoicectl.realtime.settings import (
    RunSettings,
    env_values,
    load_run_settings,
    merge_run_settings,
    read_config_file,
)


def test_flags_beat_env_beat_file_beat_defaults(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        '[run]\nvoice = "file-voice"\nmodel = "file-model"\nvad = "semantic"\n'
        'transcribe = false\napi_key = "sk-file-0123456789"\nduration = 30\n'
    )
    environ = {"PIVOICECTL_MODEL": "env-model", "PIVOICECTL_VAD": "none", "OPENAI_API_KEY": ""}
    s = load_run_settings({"vad": "server", "voice": None}, cfg, environ)
    assert s.vad == "server"  # flag
    assert s.model == "env-model"  # env over file
    assert s.voice == "file-voice"  # file (the flag was not given)
    assert s.transcribe is False and s.duration_s == 30.0
    assert s.api_key == "sk-file-0123456789"  # empty env var counts as unset
    assert s.url == ev.DEFAULT_BASE_URL  # default
    s = load_run_settings({}, cfg, {"OPENAI_API_KEY": "sk-env-0123456789"})
    assert s.api_key == "sk-env-0123456789"


def test_env_values_are_typed():
    got = env_values({"PIVOICECTL_TRANSCRIBE": "no", "PIVOICECTL_MAX_TURNS": "3"})
    assert got == {"transcribe": False, "max_turns": 3}
    with pytest.raises(UserError, match="boolean"):
        env_values({"PIVOICECTL_TRANSCRIBE": "maybe"})
    with pytest.raises(UserError, match="int"):
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
    bad.write_text("[run]\ntranscribe = 3\n")
    with pytest.raises(UserError, match="bool"):
        read_config_file(bad)


def test_settings_validate_and_map_to_the_session():
    with pytest.raises(UserError, match="--vad"):
        merge_run_settings({"vad": "loud"}, {}, {})
    with pytest.raises(UserError, match="WebSocket URL"):
        RunSettings(url="https://example.com")
    cfg = RunSettings(vad="semantic", transcribe=False, voice="cedar").session_config()
    payload = cfg.session_payload()
    assert payload["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
    assert payload["audio"]["input"]["transcription"] is None
    assert payload["audio"]["output"]["voice"] == "cedar"


def test_the_key_never_shows_in_repr_public_view_or_trace(tmp_path):
    key = "plain-secret-key-without-prefix"
    s = RunSettings(api_key=key)
    assert key not in repr(s) and key not in json.dumps(s.public_view())
    path = tmp_path / "t.jsonl"
    trace = TraceWriter(path, secrets=(key,))
    trace.write({"type": "start", "settings": s.public_view()})
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


def test_run_without_a_key_is_one_line_before_connecting(tmp_path):
    from tests.conftest import assert_one_line_error, clean_env, run_cli

    env = clean_env(XDG_CONFIG_HOME=str(tmp_path))
    assert_one_line_error(run_cli("run", env=env), 2, "no OpenAI API key")
    assert_one_line_error(run_cli("run", "--vad", "loud", env=env), 2, "--vad")
    (tmp_path / "pivoicectl").mkdir()
    (tmp_path / "pivoicectl" / "config.toml").write_text("[run\n")
    assert_one_line_error(run_cli("run", "--local", env=env), 2, "not valid TOML")


@pytest.mark.parametrize(
    ("key", "value", "hint"),
    [
        ("PIVOICECTL_UPLINK_BATCH_MS", "501", "uplink_batch_ms = 501"),
        ("PIVOICECTL_UPLINK_SPEECH_BATCH_MS", "201", "uplink_speech_batch_ms = 201"),
        ("PIVOICECTL_UPLINK_IDLE_BATCH_MS", "1001", "uplink_idle_batch_ms = 1001"),
        ("PIVOICECTL_UPLINK_TALK_BATCH_MS", "-1", "uplink_talk_batch_ms = -1"),
    ],
)
def test_an_uplink_batch_out_of_range_is_one_line_before_anything_starts(
    tmp_path, key, value, hint
):
    from tests.conftest import assert_one_line_error, clean_env, run_cli

    env = clean_env(XDG_CONFIG_HOME=str(tmp_path), **{key: value})
    assert_one_line_error(run_cli("run", "--local", env=env), 2, hint)


@pytest.mark.parametrize(
    ("args", "env", "toml", "needle"),
    [
        (("--echo-erl-db", "inf"), {}, "", "echo_erl_db = inf is not a finite number"),
        ((), {"PIVOICECTL_DURATION": "nan"}, "", "PIVOICECTL_DURATION: duration_s must be"),
        ((), {"PIVOICECTL_ECHO_ERL_DB": "-inf"}, "", "must be a finite number"),
        ((), {}, "[run]\nduration = nan\n", "duration_s must be a finite number, got nan"),
        ((), {}, "[run]\necho_erl_db = inf\n", "echo_erl_db must be a finite number"),
    ],
)
def test_a_value_that_is_not_a_finite_number_is_one_line_wherever_it_comes_from(
    tmp_path, args, env, toml, needle
):
    from tests.conftest import assert_one_line_error, clean_env, run_cli

    if toml:
        (tmp_path / "pivoicectl").mkdir()
        (tmp_path / "pivoicectl" / "config.toml").write_text(toml)
    environ = clean_env(XDG_CONFIG_HOME=str(tmp_path), **env)
    assert_one_line_error(run_cli("run", "--local", *args, env=environ), 2, needle)


def test_a_flag_with_a_range_refuses_nan_as_a_usage_error(tmp_path):
    from tests.conftest import clean_env, run_cli

    proc = run_cli(
        "run", "--local", "--duration", "nan", env=clean_env(XDG_CONFIG_HOME=str(tmp_path))
    )
    assert proc.returncode == 2 and "--duration" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path):
    from tests.conftest import assert_one_line_error, clean_env, run_cli

    (tmp_path / "pivoicectl").mkdir()
    (tmp_path / "pivoicectl" / "config.toml").write_bytes(b'[run]\nvoice = "caf\xe9"\n')
    env = clean_env(XDG_CONFIG_HOME=str(tmp_path))
    assert_one_line_error(run_cli("run", "--local", env=env), 2, "is not UTF-8 text (byte 18)")
