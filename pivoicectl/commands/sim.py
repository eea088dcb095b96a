"""`pivoicectl sim`: start, stop, inspect and talk into the simulated room."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivoicectl import render
from pivoicectl.errors import UserError
from pivoicectl.sim import instance
from pivoicectl.sim import room as roomlib


def _paths(sim_dir: Path | None) -> instance.SimPaths:
    return instance.SimPaths((sim_dir or instance.default_root()).absolute())


@dataclass(frozen=True)
class SimEnv:
    root: str
    env: dict[str, str]


@dataclass(frozen=True)
class SimStatus:
    root: str
    running: bool
    daemons: dict[str, bool]
    room: dict[str, Any] | None
    expected_erl_db: float | None
    nodes: dict[str, bool] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


def up(
    sim_dir: Path | None, room: roomlib.RoomSettings, wireplumber_delay_s: float = 0.0
) -> SimEnv:
    try:
        room.validate()
    except ValueError as e:
        raise UserError(f"bad room setting: {e}", "see `pivoicectl sim up --help`") from e
    paths = _paths(sim_dir)
    with render.err().status(render.plain(f"starting the simulated room in {paths.root} …")):
        instance.up(paths, room, wireplumber_delay_s=wireplumber_delay_s)
    render.err().print(
        f"[green]simulated room up[/] in {render.esc(paths.root)}: delay {room.delay_ms} ms, "
        f"gain {room.gain}, rt60 {room.rt60_s} s "
        f"(ERL {roomlib.expected_erl_db(room):.1f} dB). Stop it with `pivoicectl sim down`."
    )
    return SimEnv(str(paths.root), instance.environment(paths))


def env(sim_dir: Path | None) -> SimEnv:
    paths = _paths(sim_dir)
    if not any(instance.running_daemons(paths).values()):
        raise UserError(f"no simulated room runs in {paths.root}", "start one: `pivoicectl sim up`")
    return SimEnv(str(paths.root), instance.environment(paths))


def render_env(result: SimEnv, json_out: bool) -> None:
    if json_out:
        render.print_json(result)
        return
    for key, value in result.env.items():
        print(f"export {key}={shlex.quote(value)}")


def down(sim_dir: Path | None, keep: bool = False) -> None:
    paths = _paths(sim_dir)
    if not paths.instance_file.exists():
        render.err().print(render.plain(f"no simulated room in {paths.root}: nothing to stop"))
        return
    stopped = instance.down(paths, remove=not keep)
    what = ", ".join(stopped) if stopped else "nothing was running"
    kept = f"; kept {paths.root}" if keep else ""
    render.err().print(render.plain(f"simulated room down ({what}){kept}"))


def restart(sim_dir: Path | None) -> None:
    paths = _paths(sim_dir)
    instance.restart(paths)
    render.err().print(render.plain(f"simulated room restarted in {paths.root}"))


def status(sim_dir: Path | None) -> SimStatus:
    paths = _paths(sim_dir)
    daemons = instance.running_daemons(paths)
    data = instance.read_instance(paths)
    room_dict = data.get("room")
    erl = None
    if room_dict:
        erl = round(roomlib.expected_erl_db(roomlib.RoomSettings(**room_dict)), 2)
    running = all(daemons.values())
    nodes: dict[str, bool] = {}
    if running:
        from pivoicectl.system.audio_server import AudioServer

        with AudioServer.connect(env=instance.environment(paths)) as server:
            names = {n.name for n in server.sources() + server.sinks()}
        for n in (roomlib.SPEAKER, roomlib.AIR, roomlib.MIC, "source_ec"):
            nodes[n] = n in names
    return SimStatus(
        root=str(paths.root),
        running=running,
        daemons=daemons,
        room=room_dict,
        expected_erl_db=erl,
        nodes=nodes,
        env=instance.environment(paths) if running else {},
    )


def render_status(s: SimStatus, json_out: bool) -> None:
    if json_out:
        render.print_json(s)
        return
    c = render.out()
    state = "[green]running[/]" if s.running else "[red]not running[/]"
    c.print(f"simulated room in {render.esc(s.root)}: {state}")
    for name, alive in s.daemons.items():
        c.print(render.plain(f"  {name:15} {'up' if alive else 'down'}"))
    if s.room:
        r = s.room
        c.print(
            render.plain(
                f"  echo path: delay {r['delay_ms']} ms, gain {r['gain']}, rt60 {r['rt60_s']} s, "
                f"reverb {r['reverb_db']} dB → ERL {s.expected_erl_db} dB"
            )
        )
    for name, present in s.nodes.items():
        c.print(render.plain(f"  node {name:12} {'present' if present else 'absent'}"))
    if s.running:
        c.print('  point commands at it with: eval "$(pivoicectl sim env)"')


def _speak(text: str, out: Path) -> None:
    if shutil.which("espeak-ng") is None:
        raise UserError("espeak-ng is not installed", "sudo apt-get install espeak-ng")
    subprocess.run(["espeak-ng", "-w", str(out), text], check=True, timeout=60)


def talk(sim_dir: Path | None, wav: Path | None, say: str | None, wait: bool = True) -> None:
    """Play into the room's air, where only the microphone hears it, like a person would."""
    if (wav is None) == (say is None):
        raise UserError("give either a WAV file or --say TEXT", "e.g. pivoicectl sim talk --say hi")
    paths = _paths(sim_dir)
    if not instance.running_daemons(paths).get("pipewire-pulse"):
        raise UserError(f"no simulated room runs in {paths.root}", "start one: `pivoicectl sim up`")
    tmpdir = None
    if say is not None:
        tmpdir = tempfile.mkdtemp(prefix="pivoicectl-talk-")
        wav = Path(tmpdir) / "say.wav"
        _speak(say, wav)
    assert wav is not None
    from pivoicectl.system.wavfile import read_wav

    read_wav(wav)  # a bad file is a one-line error before anything plays
    env = instance.environment(paths)
    cmd = ["paplay", f"--server={env['PULSE_SERVER']}", f"--device={roomlib.AIR}", str(wav)]
    if shutil.which("paplay") is None:
        raise UserError("paplay is not installed", "sudo apt-get install pulseaudio-utils")
    if wait:
        subprocess.run(cmd, check=True, timeout=600)
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    else:
        subprocess.Popen(cmd, start_new_session=True)
