"""A private PipeWire + WirePlumber + pipewire-pulse, started in its own directory.

The instance owns a root directory with its own runtime dir (sockets, session D-Bus),
config home and state home, so it never touches the user's real session. Its processes
are started detached and recorded in `instance.json`, so a later `pivoicectl` process
(`sim down`, `sim restart` from `setup`) can find and stop them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pivoicectl.errors import UserError
from pivoicectl.sim import room as roomlib
from pivoicectl.system.polling import wait_until
from pivoicectl.system.wavfile import write_wav

DAEMONS = ("pipewire", "wireplumber", "pipewire-pulse")
REQUIRED_BINARIES = {
    "pipewire": "pipewire",
    "pw-metadata": "pipewire-bin",
    "wireplumber": "wireplumber",
    "pipewire-pulse": "pipewire-pulse",
    "dbus-daemon": "dbus-daemon",
}


def default_root() -> Path:
    """Short, per-user default: unix socket paths must stay under 108 bytes."""
    env = os.environ.get("PIVOICECTL_SIM_DIR")
    return Path(env) if env else Path(f"/tmp/pivoicectl-sim-{os.getuid()}")


@dataclass(frozen=True)
class SimPaths:
    """Where one simulated room keeps everything."""

    root: Path

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def ir_wav(self) -> Path:
        return self.root / "room-ir.wav"

    @property
    def instance_file(self) -> Path:
        return self.root / "instance.json"

    @property
    def room_conf(self) -> Path:
        return self.config / "pipewire" / "pipewire.conf.d" / roomlib.ROOM_CONF_NAME

    @property
    def pulse_socket(self) -> Path:
        return self.run / "pulse" / "native"

    @property
    def pipewire_socket(self) -> Path:
        return self.run / "pipewire-0"

    @property
    def bus(self) -> Path:
        return self.run / "bus"


def environment(paths: SimPaths) -> dict[str, str]:
    """The variables that point every audio client (and pivoicectl) at the room."""
    restart = shlex.join(
        [sys.executable, "-m", "pivoicectl", "sim", "restart", "--dir", str(paths.root)]
    )
    return {
        "XDG_RUNTIME_DIR": str(paths.run),
        "XDG_CONFIG_HOME": str(paths.config),
        "XDG_STATE_HOME": str(paths.state),
        "PIPEWIRE_RUNTIME_DIR": str(paths.run),
        "PULSE_SERVER": f"unix:{paths.pulse_socket}",
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={paths.bus}",
        "PIVOICECTL_SIM_DIR": str(paths.root),
        "PIVOICECTL_RESTART_CMD": restart,
    }


def _daemon_env(paths: SimPaths) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSE_", "PIPEWIRE_"))}
    env.update(environment(paths))
    env.pop("PULSE_SERVER")  # pipewire-pulse must not try to reach itself
    env.pop("PIPEWIRE_RUNTIME_DIR")
    env.pop("PIVOICECTL_RESTART_CMD")
    env["PIPEWIRE_DEBUG"] = env.get("PIVOICECTL_SIM_DEBUG", "2")
    # Without this, PipeWire as root warns about and tries realtime scheduling via D-Bus.
    env.setdefault("PIPEWIRE_LOG_SYSTEMD", "false")
    return env


def missing_binaries() -> list[str]:
    return [pkg for exe, pkg in REQUIRED_BINARIES.items() if shutil.which(exe) is None]


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), or None if it is gone or a zombie.

    A pid and its start time name one process for good: pids get reused, and the
    command line is no proof of identity (under an emulator such as qemu-user it starts
    with the interpreter, and a delayed start execs its program later).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the name in (...) may hold spaces
    if fields[0] == "Z":
        return None
    return int(fields[19])


def _alive(pid: int | None, start: int | None) -> bool:
    """True if the process we started as `pid` at `start` still runs."""
    if not pid or start is None:
        return False
    return start_time(pid) == start


def read_instance(paths: SimPaths) -> dict:
    try:
        return json.loads(paths.instance_file.read_text())
    except (OSError, ValueError):
        return {}


def _write_instance(paths: SimPaths, data: dict) -> None:
    tmp = paths.instance_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, paths.instance_file)


def running_daemons(paths: SimPaths) -> dict[str, bool]:
    data = read_instance(paths)
    pids, starts = data.get("pids", {}), data.get("starts", {})
    return {name: _alive(pids.get(name), starts.get(name)) for name in DAEMONS}


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str, paths: SimPaths) -> None:
    if wait_until(predicate, timeout_s):
        return
    raise UserError(
        f"the simulated room did not come up: {what} after {timeout_s:.0f} s",
        f"see the logs in {paths.logs}",
        exit_code=1,
    )


def _spawn(paths: SimPaths, name: str, args: list[str]) -> tuple[int, int | None]:
    log = open(paths.logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            args,
            env=_daemon_env(paths),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=paths.root,
        )
    finally:
        log.close()
    return proc.pid, start_time(proc.pid)


def _start_dbus(paths: SimPaths) -> int:
    if paths.bus.exists():
        paths.bus.unlink()
    out = subprocess.run(
        [
            "dbus-daemon",
            "--session",
            f"--address=unix:path={paths.bus}",
            "--fork",
            "--print-pid",
            "--nopidfile",
        ],
        env=_daemon_env(paths),
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if out.returncode != 0:
        raise UserError(
            f"could not start a session D-Bus for the room: {out.stderr.strip()[:200]}",
            "install dbus-daemon (scripts/install-system-deps.sh)",
            exit_code=1,
        )
    return int(out.stdout.split()[0])


def _room_ready(paths: SimPaths) -> bool:
    """True once WirePlumber has linked the echo path and the mic into the room."""
    from pivoicectl.system.audio_server import AudioServer

    try:
        with AudioServer.connect(env=environment(paths), timeout_s=1.0) as server:
            return server.streams_linked(
                {
                    roomlib.ECHO_IN: f"{roomlib.SPEAKER}.monitor",
                    roomlib.MIC_IN: f"{roomlib.AIR}.monitor",
                },
                {roomlib.ECHO_OUT: roomlib.AIR},
            )
    except UserError:
        return False


_LATE_START = (
    "import os, sys, time; time.sleep(float(sys.argv[1])); os.execvp(sys.argv[2], sys.argv[2:])"
)
"""Runs a program after a delay in the same process (so its pid and start time stay)."""


def start_daemons(
    paths: SimPaths, timeout_s: float = 20.0, wait_linked: bool = True
) -> dict[str, int]:
    """Start pipewire, then wireplumber and pipewire-pulse.

    Returns once their sockets answer, as `systemctl --user restart` does on a Pi (where
    systemd holds the sockets), or with `wait_linked` once WirePlumber has also linked
    the room. WirePlumber starts `wireplumber_delay_s` late when the room asks for it, as
    on a slow boot, where pipewire-pulse answers before any session manager runs.
    """
    data = read_instance(paths)
    delay_s = float(data.get("wireplumber_delay_s", 0.0))
    wireplumber = ["wireplumber"]
    if delay_s > 0:
        wireplumber = [sys.executable, "-c", _LATE_START, str(delay_s), "wireplumber"]
    procs = {"pipewire": _spawn(paths, "pipewire", ["pipewire"])}
    _wait(paths.pipewire_socket.exists, timeout_s, "no PipeWire socket", paths)
    procs["wireplumber"] = _spawn(paths, "wireplumber", wireplumber)
    procs["pipewire-pulse"] = _spawn(paths, "pipewire-pulse", ["pipewire-pulse"])
    data["pids"] = {name: pid for name, (pid, _) in procs.items()}
    data["starts"] = {name: start for name, (_, start) in procs.items()}
    _write_instance(paths, data)
    _wait(paths.pulse_socket.exists, timeout_s, "no pipewire-pulse socket", paths)
    _force_quantum(paths)
    if wait_linked:
        _wait(
            lambda: _room_ready(paths),
            timeout_s + delay_s,
            "WirePlumber did not link the room",
            paths,
        )
    return data["pids"]


def _force_quantum(paths: SimPaths) -> None:
    """Pin the graph period at run time (see room.QUANTUM for why not in the config)."""
    from pivoicectl.system import pw_metadata

    pw_metadata.write(
        "settings", "clock.force-quantum", str(roomlib.QUANTUM), env=environment(paths)
    )


def _terminate(pid: int, start: int | None, timeout_s: float = 5.0) -> None:
    if not _alive(pid, start):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_until(lambda: not _alive(pid, start), timeout_s, interval_s=0.02):
        os.kill(pid, signal.SIGKILL)
    # Reap our own children (the case inside one process, e.g. tests); ignore others.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop_daemons(paths: SimPaths) -> list[str]:
    """Stop the audio daemons (not D-Bus); return the names that were running."""
    data = read_instance(paths)
    pids, starts = data.get("pids", {}), data.get("starts", {})
    stopped = []
    for name in reversed(DAEMONS):
        pid, start = pids.get(name), starts.get(name)
        if _alive(pid, start):
            _terminate(pid, start)
            stopped.append(name)
    data["pids"], data["starts"] = {}, {}
    if paths.instance_file.exists():
        _write_instance(paths, data)
    # Stale sockets would make clients believe a server is there.
    for sock in (paths.pipewire_socket, paths.pulse_socket):
        sock.unlink(missing_ok=True)
    for lock in paths.run.glob("pipewire-0*.lock"):
        lock.unlink(missing_ok=True)
    return stopped


def create(paths: SimPaths, room: roomlib.RoomSettings, wireplumber_delay_s: float = 0.0) -> None:
    """Lay out the directory tree and write the room's config and impulse response."""
    for d in (paths.root, paths.run):
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)
    for d in (paths.config, paths.state, paths.logs, paths.room_conf.parent):
        d.mkdir(parents=True, exist_ok=True)
    write_wav(paths.ir_wav, roomlib.impulse_response(room), room.rate)
    tmp = paths.room_conf.with_suffix(".tmp")
    tmp.write_text(roomlib.pipewire_config(room, paths.ir_wav))
    os.replace(tmp, paths.room_conf)
    data = read_instance(paths)
    data["room"] = room.to_dict()
    data["wireplumber_delay_s"] = wireplumber_delay_s
    _write_instance(paths, data)


def up(
    paths: SimPaths,
    room: roomlib.RoomSettings,
    timeout_s: float = 20.0,
    wireplumber_delay_s: float = 0.0,
) -> dict[str, int]:
    missing = missing_binaries()
    if missing:
        raise UserError(
            f"missing programs for the simulated room: {', '.join(missing)}",
            "run `sudo scripts/install-system-deps.sh` or "
            "`sudo apt-get install pipewire pipewire-pulse wireplumber dbus-daemon`",
        )
    if any(running_daemons(paths).values()):
        raise UserError(
            f"a simulated room is already running in {paths.root}",
            "use it, or stop it with `pivoicectl sim down` first",
        )
    own = {p.name for p in (paths.run, paths.config, paths.state, paths.logs, paths.ir_wav)}
    own.add(paths.instance_file.name)
    foreign = sorted(p.name for p in paths.root.iterdir()) if paths.root.is_dir() else []
    foreign = [n for n in foreign if n not in own]
    if foreign:
        raise UserError(
            f"{paths.root} holds files that are not a simulated room's ({foreign[0]}, ...)",
            "give --dir a new or empty directory",
        )
    create(paths, room, wireplumber_delay_s)
    data = read_instance(paths)
    if not _alive(data.get("dbus_pid"), data.get("dbus_start")):
        data["dbus_pid"] = _start_dbus(paths)
        data["dbus_start"] = start_time(data["dbus_pid"])
        _write_instance(paths, data)
    try:
        pids = start_daemons(paths, timeout_s)
        _choose_mic(paths, timeout_s)
        return pids
    except BaseException:
        down(paths, remove=False)
        raise


def _choose_mic(paths: SimPaths, timeout_s: float) -> None:
    """Make the simulated mic the configured default source, as a USB mic on a Pi is,
    and wait until WirePlumber has saved it, so the room starts as a booted Pi does."""
    from pivoicectl.system import session_manager, wireplumber_state
    from pivoicectl.system.audio_server import AudioServer

    env = environment(paths)
    session_manager.wait_ready(
        [(roomlib.MIC, "source"), (roomlib.SPEAKER, "sink")], timeout_s, "of starting", env
    )
    with AudioServer.connect(env=env) as server:
        server.set_default_source(roomlib.MIC)
        server.set_default_sink(roomlib.SPEAKER)
    saved = paths.state / "wireplumber" / "default-nodes"
    want = {wireplumber_state.SOURCE_KEY: roomlib.MIC, wireplumber_state.SINK_KEY: roomlib.SPEAKER}

    def both_saved() -> bool:
        try:
            found = wireplumber_state.parse_default_nodes(saved.read_text())
        except OSError:
            return False
        return all(found.get(k) == v for k, v in want.items())

    _wait(both_saved, timeout_s, "WirePlumber did not save the default mic", paths)


def restart(paths: SimPaths, timeout_s: float = 20.0) -> dict[str, int]:
    """What `systemctl --user restart pipewire pipewire-pulse wireplumber` does for a Pi:
    it returns once the daemons run, not once WirePlumber is ready or has linked."""
    if not paths.instance_file.exists():
        raise UserError(f"no simulated room in {paths.root}", "start one with `pivoicectl sim up`")
    stop_daemons(paths)
    return start_daemons(paths, timeout_s, wait_linked=False)


def down(paths: SimPaths, remove: bool = True) -> list[str]:
    stopped = stop_daemons(paths)
    data = read_instance(paths)
    dbus_pid, dbus_start = data.get("dbus_pid"), data.get("dbus_start")
    if dbus_pid is not None and _alive(dbus_pid, dbus_start):
        _terminate(dbus_pid, dbus_start)
        stopped.append("dbus-daemon")
    if remove and paths.instance_file.exists():
        # Only what `create` made: a --dir that held other files keeps them.
        for d in (paths.run, paths.config, paths.state, paths.logs):
            shutil.rmtree(d, ignore_errors=True)
        paths.ir_wav.unlink(missing_ok=True)
        paths.instance_file.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            paths.root.rmdir()
    return stopped
