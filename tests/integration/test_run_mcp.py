"""MCP end to end in the simulated room: `run --local` starts the MCP servers of
config.toml, a question makes the stand-in call one of their tools, the SDK server runs
it for real and the answer says what it said; a server that crashes at start is one
status line; a server the service reaches is declared with its header, whose value
never reaches the trace or the console."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pivoicectl.realtime.edges.trace_file import read_trace
from tests.conftest import run_cli
from tests.integration.test_run import RunProcess, voiced_wav

SERVER = Path(__file__).parents[1] / "unit" / "mcp_test_server.py"
SECRET = "docs-token-5f1e9c77"


def test_an_mcp_tool_runs_for_real_and_the_header_secret_stays_out_of_the_trace(room, tmp_path):
    run_cli("setup", env=room.env, check=True)
    server = [sys.executable, str(SERVER)]
    config = Path(room.env["XDG_CONFIG_HOME"]) / "pivoicectl" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "[run]\n"
        'builtin_tools = ["get_local_time"]\n'
        "[[run.mcp]]\n"
        'name = "calc"\n'
        f"command = {json.dumps(server)}\n"
        "[[run.mcp]]\n"
        'name = "broken"\n'
        f"command = {json.dumps([*server, 'crash'])}\n"
        "[[run.mcp]]\n"
        'name = "docs"\n'
        'where = "remote"\n'
        'url = "https://docs.example/mcp"\n'
        'headers_env = { X-Docs-Token = "DOCS_TOKEN" }\n'
    )
    trace = tmp_path / "trace.jsonl"
    run = RunProcess(
        {**room.env, "DOCS_TOKEN": SECRET}, trace,
        "--local", "--no-chime", "--max-turns", "2", "--duration", "60",
        "--local-call-tool", "calc_add", "--local-call-tool-args", '{"a": 2, "b": 40}',
    )  # fmt: skip
    run.wait_for(lambda r: r["type"] == "session", 30, "session.created")
    wav = voiced_wav(tmp_path / "q.wav", 1.5)
    subprocess.run(["paplay", "-d", "sim_air", str(wav)], env=room.env, check=True)
    summary = run.finish(timeout_s=60)
    records = read_trace(trace)

    (call,) = [r for r in records if r["type"] == "tool_call"]
    assert (call["name"], call["ok"], call["output"]) == ("calc_add", True, "42")
    said = [r["text"] for r in records if r["type"] == "assistant"]
    assert any("tool calc_add said: 42" in t for t in said), said
    assert summary["tool_calls"] == 1 and summary["tool_calls_failed"] == 0

    (warning,) = [r for r in records if r["type"] == "tool_warning"]
    assert warning["text"].startswith("MCP server broken left out:")
    assert "(MCP server broken left out:" in run.err  # one status line on the console

    (update,) = [
        r["event"]
        for r in records
        if r["type"] == "send" and r["event"]["type"] == "session.update"
    ]
    tools = update["session"]["tools"]
    names = [t.get("name") or t.get("server_label") for t in tools]
    assert names == ["get_local_time", "calc_add", "calc_fail", "calc_pid", "calc_exit_now",
                     "calc_wait", "calc_picture", "calc_header", "docs"]  # fmt: skip
    assert tools[-1]["headers"] == {"X-Docs-Token": "[REDACTED]"}
    assert SECRET not in trace.read_text()
    assert SECRET not in run.out and SECRET not in run.err
