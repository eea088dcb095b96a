"""`run` under systemd, as far as it shows in the process: the notify datagrams on a real
AF_UNIX socket given as NOTIFY_SOCKET, and priority-prefixed lines for the journal.
The simulated room provides the audio; the stand-in server the service session."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli


class NotifyListener:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []

    def drain(self, until_s: float, stop_when=lambda msgs: False) -> list[str]:
        deadline = time.monotonic() + until_s
        while time.monotonic() < deadline and not stop_when(self.texts()):
            try:
                self.messages.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                continue
        return self.texts()

    def texts(self) -> list[str]:
        return [m for _, m in self.messages]

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener(tmp_path):
    n = NotifyListener(tmp_path / "notify")
    yield n
    n.close()


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pivoicectl", "run", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_ready_after_the_session_watchdog_meanwhile_and_stopping_at_exit(room, listener):
    run_cli("setup", env=room.env, check=True)
    env = {**room.env, "NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "1000000"}
    proc = _start(env, "--local", "--duration", "4", "--no-chime")
    texts = listener.drain(20, lambda msgs: any(m.startswith("STOPPING=1") for m in msgs))
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    ready = [i for i, m in enumerate(texts) if m.startswith("READY=1")]
    assert len(ready) == 1, texts
    assert texts[ready[0]] == "READY=1\nSTATUS=listening"
    states = [m for m in texts if m != "WATCHDOG=1"]
    assert states[0].startswith("STATUS=connecting: ws://127.0.0.1:"), states  # then READY
    pings = [t for t, m in listener.messages if m == "WATCHDOG=1"]
    assert len(pings) >= 5, texts  # every 0.5 s over about 4 s
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) < 1.0, gaps  # never near the 1 s watchdog
    assert texts[-1].startswith("STOPPING=1\nSTATUS=stopping: 4 s elapsed"), texts


def test_no_ready_without_a_session_but_the_watchdog_keeps_pinging(listener, shared_room):
    """The service unreachable (no network at boot): not READY, reconnecting, alive."""
    env = {
        **shared_room.env,
        "NOTIFY_SOCKET": str(listener.path),
        "WATCHDOG_USEC": "1000000",
        "OPENAI_API_KEY": "sk-test-" + "x" * 30,
    }
    proc = _start(env, "--url", "ws://127.0.0.1:9/v1/realtime", "--no-chime")
    texts = listener.drain(
        20,
        lambda msgs: (
            any(m.startswith("STATUS=reconnecting") for m in msgs) and msgs.count("WATCHDOG=1") >= 4
        ),
    )
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    texts = listener.drain(2, lambda msgs: any(m.startswith("STOPPING=1") for m in msgs))
    assert not any(m.startswith("READY=1") for m in texts), texts
    assert any(m.startswith("STATUS=reconnecting: ") for m in texts), texts
    assert texts.count("WATCHDOG=1") >= 4
    assert texts[-1] == "STOPPING=1\nSTATUS=stopping: SIGTERM"
    assert "sk-test" not in "".join(texts)


def test_lines_to_the_journal_carry_their_priority(shared_room, tmp_path):
    """Under systemd stdout and stderr are one stream, the journal, which JOURNAL_STREAM
    names by device and inode."""
    err_path = tmp_path / "journal.log"
    with err_path.open("w") as err_file:
        st = os.fstat(err_file.fileno())
        env = {**shared_room.env, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pivoicectl",
                "run",
                "--local",
                "--no-chime",
                "--input-device",
                "no_such_mic",
                "--audio-timeout",
                "1",
            ],
            env=env,
            stdout=err_file,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
            check=False,
        )
    lines = err_path.read_text().splitlines()
    assert proc.returncode == 1, lines
    assert lines[-1].startswith("<3>error: the microphone no_such_mic was not there"), lines
    assert "<6>(waiting for the microphone no_such_mic)" in lines
    # elsewhere (a terminal, a pipe), no prefix
    plain = run_cli(
        "run",
        "--local",
        "--input-device",
        "no_such_mic",
        "--audio-timeout",
        "1",
        env=shared_room.env,
    )
    assert plain.stderr.startswith("error: the microphone no_such_mic"), plain.stderr
