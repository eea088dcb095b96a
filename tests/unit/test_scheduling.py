"""Reading the audio daemons' scheduling from /proc: real threads of this process, a
real unix socket's listener, and a hand-made /proc tree for the name lookup."""

from __future__ import annotations

import os
import resource
import socket
import threading
from pathlib import Path

from pivoicectl.system import scheduling


def test_parse_stat_counts_fields_from_the_last_parenthesis():
    # A thread name with spaces and a ')' inside: fields are counted after the last ')'.
    rest = ["S"] + ["0"] * 15 + ["-11"] + ["0"] * 20 + ["88", "1"] + ["0"] * 10
    text = "4242 (data) loop 0) " + " ".join(rest)
    assert scheduling.parse_stat(text) == (-11, 88, 1)


def test_a_thread_of_this_process_shows_the_policy_it_set():
    seen: dict[str, object] = {}
    ready, done = threading.Event(), threading.Event()

    def idle_thread() -> None:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # this thread only
        seen["tid"] = threading.get_native_id()
        ready.set()
        done.wait(5)

    worker = threading.Thread(target=idle_thread)
    worker.start()
    try:
        assert ready.wait(5)
        threads = {t.tid: t for t in scheduling.thread_scheduling(os.getpid())}
    finally:
        done.set()
        worker.join()
    assert threads[seen["tid"]].policy == "SCHED_IDLE"
    assert not threads[seen["tid"]].realtime
    main = threads[threading.main_thread().native_id]
    assert main.policy == "SCHED_OTHER" and main.nice == os.getpriority(os.PRIO_PROCESS, 0)


def test_a_gone_process_has_no_threads():
    assert scheduling.thread_scheduling(2**22 + 1) == []


def test_rtprio_limit_matches_getrlimit_and_parses_unlimited():
    soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    expected = 99 if soft == resource.RLIM_INFINITY else soft
    assert scheduling.rtprio_limit(os.getpid()) == expected
    text = (
        "Limit                     Soft Limit           Hard Limit           Units     \n"
        "Max realtime priority     unlimited            unlimited                      \n"
    )
    assert scheduling.parse_rtprio_limit(text) == 99
    assert scheduling.parse_rtprio_limit(text.replace("unlimited", "95", 1)) == 95
    assert scheduling.parse_rtprio_limit("Max open files 1024 1024 files\n") is None


def test_the_listener_of_a_socket_is_found_by_its_credentials(tmp_path: Path):
    path = str(tmp_path / "pipewire-0")
    own_name = Path("/proc/self/comm").read_text().strip()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        assert scheduling.socket_peer_pid(path) == os.getpid()
        assert scheduling.daemon_pids(own_name, path) == [os.getpid()]
    assert scheduling.socket_peer_pid(str(tmp_path / "nothing")) is None


def _fake_process(proc: Path, pid: int, comm: str, runtime: str) -> None:
    d = proc / str(pid)
    (d / "task").mkdir(parents=True)
    (d / "comm").write_text(comm + "\n")
    (d / "environ").write_bytes(f"HOME=/x\0XDG_RUNTIME_DIR={runtime}\0".encode())


def test_without_a_socket_the_daemon_is_found_by_name_owner_and_runtime_dir(tmp_path: Path):
    proc = tmp_path / "proc"
    _fake_process(proc, 100, "pipewire", "/run/user/1000")
    _fake_process(proc, 200, "pipewire", "/tmp/room/run")
    _fake_process(proc, 300, "pipewire-pulse", "/run/user/1000")
    (proc / "self").mkdir()
    uid = os.getuid()
    assert scheduling.daemon_pids("pipewire", None, uid, proc=proc) == [100, 200]
    got = scheduling.daemon_pids("pipewire", None, uid, "/run/user/1000", proc=proc)
    assert got == [100]
    # A runtime dir nobody uses does not hide the daemons there are.
    assert scheduling.daemon_pids("pipewire", None, uid, "/elsewhere", proc=proc) == [100, 200]
    assert scheduling.daemon_pids("pipewire", None, uid + 1, proc=proc) == []
    # A socket whose listener is not that daemon (systemd socket activation): by name.
    assert scheduling.daemon_pids("pipewire", str(tmp_path / "gone"), uid, proc=proc) == [
        100,
        200,
    ]
