"""The notify protocol against a real AF_UNIX datagram socket, as systemd reads it."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from pivoicectl.system.sd_notify import MIN_WATCHDOG_PING_S, Notifier


@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, str(path)
    sock.close()


def received(sock: socket.socket) -> list[str]:
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(2)
    return out


def test_ready_status_watchdog_stopping_reach_the_socket(listener):
    sock, path = listener
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    n = Notifier(env)
    assert n.enabled and n.watchdog_interval_s == 15.0
    n.ready("listening")
    n.status("answering")
    n.status("answering")  # the same line twice is sent once
    n.watchdog()
    n.stopping("stopping: Ctrl+C")
    assert received(sock) == [
        "READY=1\nSTATUS=listening",
        "STATUS=answering",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=stopping: Ctrl+C",
    ]


def test_abstract_socket_names_are_supported():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"pivoicectl-test-{uuid.uuid4().hex}"
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


def test_status_lines_are_one_line_and_bounded(listener):
    sock, path = listener
    Notifier({"NOTIFY_SOCKET": path}).status("two\nlines   and " + "x" * 400)
    (msg,) = received(sock)
    assert msg.startswith("STATUS=two lines and x") and "\n" not in msg and len(msg) <= 207


def test_without_notify_socket_nothing_is_sent_and_nothing_fails():
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval_s is None
    n.ready()
    n.status("x")
    n.watchdog()
    n.stopping()


def test_the_watchdog_belongs_to_the_pid_systemd_named():
    assert Notifier({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval_s is None
    assert Notifier({"WATCHDOG_USEC": "junk"}).watchdog_interval_s is None
    fast = Notifier({"WATCHDOG_USEC": "10"})
    assert fast.watchdog_interval_s == MIN_WATCHDOG_PING_S


def test_watchdog_pings_only_with_a_watchdog(listener):
    sock, path = listener
    Notifier({"NOTIFY_SOCKET": path}).watchdog()
    assert received(sock) == []


def test_a_vanished_manager_is_not_an_error(tmp_path):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    n.ready()
    assert n.failed
    n.status("still fine")  # no exception, nothing more tried
