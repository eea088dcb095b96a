"""Tools end to end in the simulated room: a question, the stand-in asks for a tool
call, `run` runs it for real, sends its output, and the answer says what it said."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pivoicectl.realtime.edges.trace_file import read_trace
from tests.conftest import run_cli
from tests.integration.test_run import RunProcess, voiced_wav
from tests.integration.test_tools_room import _default_sink_volume


def _config(room, text: str) -> None:
    path = Path(room.env["XDG_CONFIG_HOME"]) / "pivoicectl" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _ask_with_tool(room, tmp_path: Path, tool: str, arguments: str) -> tuple[dict, list[dict]]:
    """One question to `run --local` whose stand-in calls `tool`: (summary, trace)."""
    run_cli("setup", env=room.env, check=True)
    trace = tmp_path / "trace.jsonl"
    run = RunProcess(
        room.env, trace, "--local", "--no-chime", "--max-turns", "2", "--duration", "60",
        "--local-call-tool", tool, "--local-call-tool-args", arguments,
    )  # fmt: skip
    run.wait_for(lambda r: r["type"] == "session", 15, "session.created")
    wav = voiced_wav(tmp_path / "q.wav", 1.5)
    subprocess.run(["paplay", "-d", "sim_air", str(wav)], env=room.env, check=True)
    return run.finish(timeout_s=60), read_trace(trace)


def test_a_command_tool_is_run_and_the_answer_says_what_it_said(room, tmp_path):
    marker = tmp_path / "args.json"
    script = tmp_path / "lights"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "args = sys.stdin.read() + '|' + os.environ['PIVOICECTL_TOOL_ARGS']\n"
        f"open({str(marker)!r}, 'w').write(args)\n"
        "print(json.dumps({'lights': 'on'}))\n"
    )
    script.chmod(0o755)
    _config(
        room,
        "[[run.tools]]\n"
        'name = "garden_lights"\n'
        'description = "Switch the garden lights on or off"\n'
        f"command = [{json.dumps(str(script))}]\n"
        'parameters = { type = "object", properties = { state = { type = "string", '
        'enum = ["on", "off"] } }, required = ["state"] }\n',
    )
    summary, records = _ask_with_tool(room, tmp_path, "garden_lights", '{"state": "on"}')
    assert marker.read_text() == '{"state": "on"}|{"state": "on"}'
    (call,) = [r for r in records if r["type"] == "tool_call"]
    assert call["name"] == "garden_lights" and call["ok"] is True
    assert json.loads(call["output"]) == {"lights": "on"}
    said = [r["text"] for r in records if r["type"] == "assistant"]
    assert any('tool garden_lights said: {"lights": "on"}' in t for t in said), said
    assert summary["tool_calls"] == 1 and summary["tool_calls_failed"] == 0
    sent = [r["event"] for r in records if r["type"] == "send"]
    kinds = [e["type"] for e in sent]
    output_at = kinds.index("conversation.item.create")
    assert kinds[output_at + 1] == "response.create"  # the model is asked to go on
    assert sent[output_at]["item"]["call_id"] == call["call_id"]


def test_set_volume_really_changes_the_speaker_volume(room, tmp_path):
    _summary, records = _ask_with_tool(room, tmp_path, "set_volume", '{"percent": 30}')
    (call,) = [r for r in records if r["type"] == "tool_call"]
    assert call["ok"] is True, call
    _name, volume = _default_sink_volume(room.env["PULSE_SERVER"])
    assert volume == pytest.approx(0.30, abs=0.01)


def test_get_local_time_answers_with_the_devices_clock(room, tmp_path):
    _summary, records = _ask_with_tool(room, tmp_path, "get_local_time", "{}")
    (call,) = [r for r in records if r["type"] == "tool_call"]
    assert call["ok"] is True, call
    told = json.loads(call["output"])
    assert told["date"] == datetime.date.today().isoformat(), told
    said = [r["text"] for r in records if r["type"] == "assistant"]
    assert any("tool get_local_time said:" in t and told["date"] in t for t in said), said
