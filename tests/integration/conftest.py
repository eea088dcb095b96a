"""The simulated room as a fixture: a real, private PipeWire per test (or per session).

These tests never skip: a machine without PipeWire fails them with the install hint,
because CI must prove the commands against the real audio server.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pivoicectl.sim import instance
from pivoicectl.sim.room import RoomSettings
from pivoicectl.system.audio_server import AudioServer
from tests.conftest import clean_env

pytestmark = pytest.mark.integration


@dataclass
class Room:
    paths: instance.SimPaths
    env: dict[str, str]

    def info(self):
        with AudioServer.connect(server=self.env["PULSE_SERVER"]) as s:
            return s.info()

    def names(self) -> set[str]:
        with AudioServer.connect(server=self.env["PULSE_SERVER"]) as s:
            return {n.name for n in s.sources() + s.sinks()}

    @property
    def conf_dir(self) -> Path:
        return self.paths.config / "pipewire" / "pipewire.conf.d"

    @property
    def ec_conf(self) -> Path:
        return self.conf_dir / "60-echo-cancel.conf"


def _start(room: RoomSettings | None = None, wireplumber_delay_s: float = 0.0) -> Room:
    missing = instance.missing_binaries()
    if missing:
        pytest.fail(
            f"PipeWire is not installed ({', '.join(missing)}): "
            "run `sudo scripts/install-system-deps.sh`",
            pytrace=False,
        )
    root = Path(tempfile.mkdtemp(prefix="pvsim-", dir="/tmp"))
    paths = instance.SimPaths(root)
    instance.up(paths, room or RoomSettings(), wireplumber_delay_s=wireplumber_delay_s)
    return Room(paths, clean_env(**instance.environment(paths)))


def _stop(room: Room) -> None:
    instance.down(room.paths, remove=False)
    shutil.rmtree(room.paths.root, ignore_errors=True)


@pytest.fixture
def room() -> Iterator[Room]:
    """A fresh room for tests that change it."""
    r = _start()
    try:
        yield r
    finally:
        _stop(r)


LATE_WIREPLUMBER_S = 1.2
"""How late WirePlumber starts in `late_room`: on a booted VM it started 1.1 s after
`systemctl --user restart` returned, while pipewire-pulse already answered."""


@pytest.fixture
def late_room() -> Iterator[Room]:
    """A fresh room whose WirePlumber starts late at every (re)start, as on a slow boot."""
    r = _start(wireplumber_delay_s=LATE_WIREPLUMBER_S)
    try:
        yield r
    finally:
        _stop(r)


@pytest.fixture(scope="session")
def shared_room() -> Iterator[Room]:
    """One room for read-only tests."""
    r = _start()
    try:
        yield r
    finally:
        _stop(r)
