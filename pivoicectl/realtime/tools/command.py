"""A command tool: a program from `[[run.tools]]` run once per call, never through a shell.

The call's arguments (a JSON object, already checked against the tool's schema) go to
the program's stdin and to `PIVOICECTL_TOOL_ARGS`; what it prints on stdout is the
output the model reads, cut at `OUTPUT_CAP_BYTES` (and said so). The program runs in a
session of its own so that a timeout, a cancelled call or `aclose` kills it together with
every child it started (one `killpg`). When the program exits, whatever it left running
in its group is killed as well: a tool that means to start something lasting (music
playing on) must start it in a session of its own (`setsid`, its output sent elsewhere).
Everything is asyncio: the event loop that carries the audio never waits for a tool.

The API key (`OPENAI_API_KEY`) is removed from the program's environment: a tool that
printed its environment would otherwise hand the key to the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pivoicectl.realtime.tools.outcome import ToolResult, one_line

ARGS_VAR = "PIVOICECTL_TOOL_ARGS"
OUTPUT_CAP_BYTES = 16 * 1024
"""What the model reads of a tool's stdout at most; the rest is read and dropped, so a
chatty program finishes instead of blocking on a full pipe."""
STDERR_TAIL_BYTES = 4096
STDERR_TAIL_CHARS = 300
"""How much of stderr's end a failure quotes."""
HIDDEN_VARS = ("OPENAI_API_KEY",)
READ_CHUNK = 65536


@dataclass
class CommandTool:
    name: str
    description: str
    command: tuple[str, ...]
    parameters: Mapping[str, Any]
    timeout_s: float
    env: Mapping[str, str]
    """The environment the program starts with (less `HIDDEN_VARS`, plus `ARGS_VAR`)."""
    _running: set[asyncio.subprocess.Process] = field(default_factory=set, repr=False)

    async def run(self, arguments: Mapping[str, Any]) -> ToolResult:
        payload = json.dumps(arguments)
        env = {k: v for k, v in self.env.items() if k not in HIDDEN_VARS}
        env[ARGS_VAR] = payload
        program = os.path.expanduser(self.command[0])
        try:
            proc = await asyncio.create_subprocess_exec(
                program,
                *self.command[1:],
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except FileNotFoundError:
            return ToolResult.failed(f"{self.name}: program not found: {program}")
        except PermissionError:
            return ToolResult.failed(f"{self.name}: program is not executable: {program}")
        except OSError as exc:
            return ToolResult.failed(f"{self.name}: cannot start {program}: {exc.strerror}")
        self._running.add(proc)
        try:
            try:
                code, (out, out_total), err_tail = await asyncio.wait_for(
                    _talk(proc, payload.encode()), self.timeout_s
                )
            except TimeoutError:
                return ToolResult.failed(f"{self.name}: timed out after {self.timeout_s:g} s")
        finally:
            # A timeout, a cancelled call or a leftover child: the whole group goes.
            if proc.returncode is None or _group_alive(proc.pid):
                kill_group(proc.pid)
                await proc.wait()
            self._running.discard(proc)
        if code != 0:
            return ToolResult.failed(f"{self.name}: {_exit_words(code)}{_tail(err_tail)}")
        text = out.decode("utf-8", errors="replace")
        if out_total > len(out):
            text += f"\n[pivoicectl: output cut to its first {len(out)} bytes of {out_total}]"
        return ToolResult(text if text else json.dumps({"ok": True}))

    async def aclose(self) -> None:
        """Kill every program this tool still runs (and their children)."""
        for proc in list(self._running):
            kill_group(proc.pid)
            await proc.wait()


async def _talk(
    proc: asyncio.subprocess.Process, stdin_bytes: bytes
) -> tuple[int, tuple[bytes, int], bytes]:
    """Feed stdin, read stdout and stderr to their end, wait for the exit status."""
    assert proc.stdin and proc.stdout and proc.stderr
    out, err, _ = await asyncio.gather(
        _read_capped(proc.stdout, OUTPUT_CAP_BYTES),
        _read_tail(proc.stderr, STDERR_TAIL_BYTES),
        _feed(proc.stdin, stdin_bytes),
    )
    return await proc.wait(), out, err


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, int]:
    """The first `cap` bytes until EOF, and how many there were in all."""
    kept = bytearray()
    total = 0
    while chunk := await stream.read(READ_CHUNK):
        total += len(chunk)
        if len(kept) < cap:
            kept += chunk[: cap - len(kept)]
    return bytes(kept), total


async def _read_tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    """The last `keep` bytes until EOF."""
    tail = b""
    while chunk := await stream.read(READ_CHUNK):
        tail = (tail + chunk)[-keep:]
    return tail


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    """Write the arguments and close; a program that exits without reading is fine."""
    try:
        stdin.write(data)
        await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        stdin.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await stdin.wait_closed()


def kill_group(pgid: int) -> None:
    """SIGKILL the process group `pgid` (a program started with start_new_session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the group id now belongs to someone else's processes
        return False
    return True


def _exit_words(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def _tail(stderr: bytes) -> str:
    text = one_line(stderr.decode("utf-8", errors="replace"), 10**9)
    if not text:
        return ""
    if len(text) > STDERR_TAIL_CHARS:
        text = "..." + text[-(STDERR_TAIL_CHARS - 3) :]
    return f": {text}"
