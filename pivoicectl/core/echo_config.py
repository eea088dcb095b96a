"""The echo-cancel config: webrtc options, template choice and rendering. Pure code.

Two templates exist because PipeWire generations differ:
1.x uses `monitor.mode` so every app's sound is the reference; 0.3.x uses an echo-cancel
sink instead, since monitor mode there can crash the daemon before 0.3.68.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from string import Template

from pivoicectl.errors import UserError

SOURCE_NAME = "source_ec"
SINK_NAME = "sink_ec"
EC_CAPTURE_STREAM = "capture.source_ec"

# The boolean options aec-webrtc.cpp reads (PipeWire 0.3.65 and 1.4.2); the webrtc
# library ignores keys it does not know, so we reject them here instead.
KNOWN_AEC_BOOLS = frozenset(
    {
        "webrtc.high_pass_filter",
        "webrtc.noise_suppression",
        "webrtc.voice_detection",
        "webrtc.extended_filter",
        "webrtc.delay_agnostic",
        "webrtc.gain_control",
        "webrtc.experimental_agc",
        "webrtc.experimental_ns",
        "webrtc.beamforming",
        "webrtc.transient_suppression",
    }
)

# Defaults: noise suppression and AGC off keep the near-end talker loudest during
# double talk (measured on 0.3.65: 8-13 dB lost instead of 13-27 dB with its defaults),
# which is what barge-in needs; the extended filter covers reverberant rooms.
DEFAULT_AEC_ARGS: dict[str, bool] = {
    "webrtc.extended_filter": True,
    "webrtc.delay_agnostic": True,
    "webrtc.high_pass_filter": True,
    "webrtc.noise_suppression": False,
    "webrtc.gain_control": False,
}

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_aec_args(items: tuple[str, ...] | list[str]) -> dict[str, bool]:
    """Turn `KEY=VALUE` strings into options, refusing anything malformed or unknown."""
    out: dict[str, bool] = {}
    for item in items:
        if "=" not in item:
            raise UserError(
                f"--aec-arg {item!r} is not KEY=VALUE",
                "e.g. --aec-arg webrtc.noise_suppression=true",
            )
        key, _, value = (s.strip() for s in item.partition("="))
        if key not in KNOWN_AEC_BOOLS:
            raise UserError(
                f"--aec-arg: unknown webrtc option {key!r}",
                "known: " + ", ".join(sorted(KNOWN_AEC_BOOLS)),
            )
        v = value.lower()
        if v not in _TRUE | _FALSE:
            raise UserError(f"--aec-arg {key}: {value!r} is not a boolean", "use true or false")
        out[key] = v in _TRUE
    return out


def generation(pipewire_version: str) -> str:
    """'1.x' for PipeWire 1.0 and later, '0.3' before; the template to use."""
    m = re.match(r"(\d+)\.(\d+)", pipewire_version or "")
    if not m:
        raise UserError(
            f"cannot tell the PipeWire version from {pipewire_version!r}",
            "is the audio server PipeWire? `pactl info | grep 'Server Name'`",
        )
    return "1.x" if int(m.group(1)) >= 1 else "0.3"


@dataclass(frozen=True)
class EchoConfig:
    mic: str
    speaker: str
    pipewire_version: str
    aec_args: dict[str, bool]

    @property
    def generation(self) -> str:
        return generation(self.pipewire_version)

    @property
    def uses_sink(self) -> bool:
        """True when apps must play into sink_ec (0.3.x) for their sound to be cancelled."""
        return self.generation == "0.3"

    def render(self) -> str:
        template = (
            resources.files("pivoicectl.templates")
            .joinpath(f"echo-cancel-{self.generation}.conf")
            .read_text()
        )
        args = "\n".join(
            f"        {k} = {'true' if v else 'false'}" for k, v in sorted(self.aec_args.items())
        )
        return Template(template).substitute(
            pipewire_version=self.pipewire_version,
            mic=_quote(self.mic),
            speaker=_quote(self.speaker),
            aec_args=args,
        )


def _quote(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:@+-]+", name):
        raise UserError(
            f"node name {name!r} has characters PipeWire config cannot hold here",
            "use the node name as `pivoicectl devices` lists it",
        )
    return name


_HEADER = re.compile(r"^# pivoicectl: mic=(\S+) speaker=(\S+)$", re.M)


def written_by_pivoicectl(text: str) -> bool:
    return _HEADER.search(text) is not None


def _target(text: str, props: str) -> str | None:
    m = re.search(
        props + r'\s*=\s*\{[^{}]*?target\.object\s*=\s*"?([^"\s{}]+)"?', _strip_comments(text)
    )
    return m.group(1) if m else None


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def pinned_devices(text: str) -> tuple[str, str] | None:
    """The mic and speaker a config pins, read from its capture and speaker-side props
    (what PipeWire will use, even if someone edited the file by hand)."""
    mic = _target(text, "capture.props")
    speaker = _target(text, "playback.props") or _target(text, "sink.props")
    return (mic, speaker) if mic and speaker else None
