"""The PulseAudio-protocol edge: everything pivoicectl asks pipewire-pulse, via pulsectl.

All pulsectl calls live here and come out as plain dataclasses, so the commands and
their tests never see pulsectl objects, and a dead or missing server is always one
`UserError` with a hint instead of a traceback from deep inside libpulse.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pivoicectl.errors import UserError
from pivoicectl.system import paths
from pivoicectl.system.polling import wait_until

EC_GROUP_PREFIX = "echo-cancel"
NOT_RUNNING_HINT = (
    "start it with `systemctl --user start pipewire pipewire-pulse wireplumber`, "
    "or try the simulated room: `eval $(pivoicectl sim up)`"
)
SESSION_MANAGER_HINT = (
    "check `systemctl --user status wireplumber` (start it with "
    "`systemctl --user start wireplumber`)"
)


@dataclass(frozen=True)
class Node:
    """A source or sink as the audio server describes it."""

    name: str
    description: str
    kind: str  # "source" or "sink"
    index: int
    rate: int
    channels: int
    state: str
    default: bool = False
    monitor: bool = False
    echo_cancelled: bool = False
    properties: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def to_dict(self, with_properties: bool = False) -> dict[str, Any]:
        d = {
            "name": self.name,
            "description": self.description,
            "index": self.index,
            "rate": self.rate,
            "channels": self.channels,
            "state": self.state,
            "default": self.default,
            "monitor": self.monitor,
            "echo_cancelled": self.echo_cancelled,
        }
        if with_properties:
            d["properties"] = dict(self.properties)
        return d


@dataclass(frozen=True)
class ServerInfo:
    server_name: str
    server_version: str
    pipewire_version: str | None
    default_sink: str
    default_source: str
    server: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "server_name": self.server_name,
            "server_version": self.server_version,
            "pipewire_version": self.pipewire_version,
            "default_sink": self.default_sink,
            "default_source": self.default_source,
            "server": self.server,
        }


def parse_pipewire_version(server_name: str) -> str | None:
    """'PulseAudio (on PipeWire 1.4.2)' -> '1.4.2'; None for a real PulseAudio."""
    m = re.search(r"PipeWire (\d+\.\d+\.\d+)", server_name)
    return m.group(1) if m else None


def is_echo_cancelled(proplist: dict[str, str], name: str) -> bool:
    group = proplist.get("node.group", "") or proplist.get("node.link-group", "")
    return group.startswith(EC_GROUP_PREFIX) or name == "source_ec"


def _state(value: object) -> str:
    text = str(value)
    m = re.search(r"=(\w+)>", text)
    return m.group(1) if m else text


def server_address() -> str:
    sock = paths.pulse_socket()
    return str(sock) if sock else "(no XDG_RUNTIME_DIR or PULSE_SERVER set)"


def _probe_socket(path: str, timeout_s: float) -> None:
    """Fail fast and clearly when nothing listens on a local pipewire-pulse socket."""
    if not path.startswith("/"):
        return  # a TCP server or libpulse's own defaults: let libpulse find it
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(path)
        except OSError as e:
            raise UserError(
                f"pipewire-pulse is not running (cannot connect to {path})", NOT_RUNNING_HINT
            ) from e


class AudioServer:
    """An open connection to pipewire-pulse."""

    def __init__(self, pulse: Any, address: str) -> None:
        self._pulse = pulse
        self.address = address

    @classmethod
    @contextmanager
    def connect(
        cls, server: str | None = None, timeout_s: float = 2.0, env: Mapping[str, str] | None = None
    ) -> Iterator[AudioServer]:
        """Connect, or raise UserError saying that the server is not running and how to start it."""
        import pulsectl

        if server is None and env is not None:
            server = env.get("PULSE_SERVER")
        address = server or server_address()
        _probe_socket(address.removeprefix("unix:"), timeout_s)
        pulse = pulsectl.Pulse("pivoicectl", server=server, connect=False)
        try:
            try:
                # No pulsectl timeout: its timed connect always waits the whole timeout.
                # The socket probe above already failed fast if nobody listens.
                pulse.connect(autospawn=False, wait=False)
            except (pulsectl.PulseError, OSError) as e:
                raise UserError(
                    f"pipewire-pulse is not running (cannot connect to {address})",
                    NOT_RUNNING_HINT,
                ) from e
            try:
                yield cls(pulse, address)
            except pulsectl.PulseOperationFailed as e:
                # It answers, and says no: not a server that is down.
                raise UserError(
                    f"the audio server refused a request ({e})",
                    "is the session manager running? see `pivoicectl doctor`",
                    exit_code=1,
                ) from e
            except (pulsectl.PulseError, pulsectl.PulseDisconnected) as e:
                raise UserError(
                    f"the audio server stopped answering ({e})", NOT_RUNNING_HINT
                ) from e
        finally:
            pulse.close()

    def info(self) -> ServerInfo:
        si = self._pulse.server_info()
        return ServerInfo(
            server_name=si.server_name,
            server_version=si.server_version,
            pipewire_version=parse_pipewire_version(si.server_name),
            default_sink=si.default_sink_name or "",
            default_source=si.default_source_name or "",
            server=self.address,
        )

    def _node(self, obj: Any, kind: str, default_name: str) -> Node:
        props = {str(k): str(v) for k, v in dict(obj.proplist).items()}
        monitor = kind == "source" and getattr(obj, "monitor_of_sink", 0xFFFFFFFF) != 0xFFFFFFFF
        return Node(
            name=obj.name,
            description=obj.description or "",
            kind=kind,
            index=int(obj.index),
            rate=int(obj.sample_spec.rate),
            channels=int(obj.channel_count),
            state=_state(obj.state),
            default=obj.name == default_name,
            monitor=monitor,
            echo_cancelled=is_echo_cancelled(props, obj.name),
            properties=props,
        )

    def sources(self, info: ServerInfo | None = None) -> list[Node]:
        """All sources; pass `info()` if you already have it, to skip asking for the default."""
        default = (
            self._pulse.server_info().default_source_name if info is None else info.default_source
        )
        return [self._node(s, "source", default) for s in self._pulse.source_list()]

    def sinks(self, info: ServerInfo | None = None) -> list[Node]:
        """All sinks; pass `info()` if you already have it, to skip asking for the default."""
        default = self._pulse.server_info().default_sink_name if info is None else info.default_sink
        return [self._node(s, "sink", default) for s in self._pulse.sink_list()]

    def find(self, name: str, kind: str) -> Node | None:
        nodes = self.sources() if kind == "source" else self.sinks()
        return next((n for n in nodes if n.name == name), None)

    def client_names(self) -> list[str]:
        return [c.proplist.get("application.name", c.name) for c in self._pulse.client_list()]

    def capture_source_of(self, stream_node_name: str) -> str | None:
        """The source a capture stream (by node.name) is reading from, if any."""
        sources = {s.index: s.name for s in self._pulse.source_list()}
        for so in self._pulse.source_output_list():
            if so.proplist.get("node.name") == stream_node_name:
                return sources.get(so.source)
        return None

    def streams_linked(self, captures: dict[str, str], playbacks: dict[str, str]) -> bool:
        """True if each named capture stream reads from, and each playback stream plays
        into, the named node; the way to tell that the session manager did its linking."""
        sources = {s.index: s.name for s in self._pulse.source_list()}
        sinks = {s.index: s.name for s in self._pulse.sink_list()}
        got_c = {
            so.proplist.get("node.name"): sources.get(so.source)
            for so in self._pulse.source_output_list()
        }
        got_p = {
            si.proplist.get("node.name"): sinks.get(si.sink) for si in self._pulse.sink_input_list()
        }
        return all(got_c.get(k) == v for k, v in captures.items()) and all(
            got_p.get(k) == v for k, v in playbacks.items()
        )

    def _set_default(self, kind: str, name: str, timeout_s: float) -> None:
        import pulsectl

        objs = self._pulse.source_list() if kind == "source" else self._pulse.sink_list()
        obj = next((o for o in objs if o.name == name), None)
        if obj is None:
            raise UserError(f"no {kind} named {name!r}", "list them with `pivoicectl devices`")
        try:
            if kind == "source":
                self._pulse.source_default_set(obj)
            else:
                self._pulse.sink_default_set(obj)
        except pulsectl.PulseOperationFailed as e:
            # pipewire-pulse says "Not supported" while no session manager has made the
            # "default" metadata: before WirePlumber runs, or in its first moments.
            raise UserError(
                f"the audio server refused to set the default {kind} to {name!r}: the "
                "session manager (WirePlumber) is not running or not ready",
                SESSION_MANAGER_HINT,
                exit_code=1,
            ) from e

        def current() -> str:
            info = self.info()
            return info.default_source if kind == "source" else info.default_sink

        # The change is asynchronous in PipeWire: read back until it shows.
        if not wait_until(lambda: current() == name, timeout_s):
            raise UserError(
                f"the default {kind} is still {current()!r} {timeout_s:.0f} s after "
                f"setting it to {name!r}",
                "is WirePlumber running? check with `pivoicectl doctor`",
                exit_code=1,
            )

    def set_default_source(self, name: str, timeout_s: float = 5.0) -> None:
        self._set_default("source", name, timeout_s)

    def set_default_sink(self, name: str, timeout_s: float = 5.0) -> None:
        self._set_default("sink", name, timeout_s)


def server_has_node(name: str, kind: str) -> bool:
    """Whether the audio server has a source (input) or sink (output) called `name`."""
    try:
        with AudioServer.connect(timeout_s=1.0) as server:
            return server.find(name, "source" if kind == "input" else "sink") is not None
    except UserError:
        return False


def server_answers(timeout_s: float = 1.0) -> bool:
    """Whether pipewire-pulse answers at all."""
    try:
        with AudioServer.connect(timeout_s=timeout_s):
            return True
    except UserError:
        return False
