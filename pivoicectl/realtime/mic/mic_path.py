"""What happens to a mic block between the sound card and the WebSocket.

One place composes the device-side decisions so the client loop stays plumbing: the
echo guard (which blocks to send) and the local barge-in detector (whether to
interrupt). When a guard is on, it owns the interrupt decision: behind `gate` nobody
interrupts, behind `vad-gate` its double-talk detector does; a plain VAD on a mic
without a canceller would fire on the assistant's own voice.
"""

from __future__ import annotations

from dataclasses import dataclass

from pivoicectl.realtime.mic.barge_in import BargeInDetector, BargeInSettings
from pivoicectl.realtime.mic.echo_guard import EchoGuard, EchoGuardSettings
from pivoicectl.realtime.mic.settings import OnsetMuteSettings
from pivoicectl.realtime.session.playback import PlayReport

__all__ = ["MicDecision", "MicPath", "OnsetMute", "OnsetMuteSettings"]


@dataclass(frozen=True)
class MicDecision:
    send: tuple[bytes, ...]
    interrupt_source: str | None = None
    """"local_vad" or "echo_guard" when the person just interrupted the assistant."""


class OnsetMute:
    """Tracks loud playback from the reports; says when mic blocks are to be muted."""

    def __init__(self, settings: OnsetMuteSettings) -> None:
        self.settings = settings
        self._last_loud_s: float | None = None
        self._onset_s: float | None = None
        self._response_id: str | None = None
        self.blocks_muted = 0

    def played(self, report: PlayReport) -> None:
        if not report.spans or report.level_dbfs < self.settings.loud_dbfs:
            return
        last = self._last_loud_s
        response_id = report.spans[-1].response_id
        if (
            last is None
            or report.audible_s - last > self.settings.quiet_before_s
            or response_id != self._response_id
        ):
            self._onset_s = report.audible_s
        self._response_id = response_id
        self._last_loud_s = report.audible_s

    def mutes(self, now_s: float) -> bool:
        onset = self._onset_s
        return onset is not None and 0.0 <= now_s - onset < self.settings.mute_ms / 1000


class MicPath:
    """`played(report)` for every playback report, `feed(pcm, now_s, playing)` per mic
    block."""

    def __init__(
        self,
        barge_in: str = "server",
        barge_in_settings: BargeInSettings | None = None,
        guard_settings: EchoGuardSettings | None = None,
        onset_settings: OnsetMuteSettings | None = None,
    ) -> None:
        guard_settings = guard_settings or EchoGuardSettings()
        self.guard = EchoGuard(guard_settings)
        use_local = barge_in == "local" and guard_settings.mode == "off"
        tuning = barge_in_settings or BargeInSettings()
        self.detector = BargeInDetector(tuning) if use_local else None
        onset_settings = onset_settings or OnsetMuteSettings()
        self.onset = OnsetMute(onset_settings) if onset_settings.mute_ms > 0 else None

    @property
    def active(self) -> bool:
        """Whether anything is decided here (else blocks pass straight through)."""
        return self.decides_interrupts or self.onset is not None

    @property
    def decides_interrupts(self) -> bool:
        """Whether a mic block can stop the assistant here (it must then be read
        promptly): the local barge-in detector or the echo guard."""
        return self.detector is not None or self.guard.settings.mode != "off"

    def played(self, report: PlayReport) -> None:
        if report.spans:
            self.guard.reference(report.audible_s, report.level_dbfs)
        if self.onset is not None:
            self.onset.played(report)

    def feed(self, pcm: bytes, now_s: float, playing: bool) -> MicDecision:
        decision = self.guard.feed(pcm, now_s, playing)
        if decision.interrupt:
            return MicDecision(decision.send, "echo_guard")
        if self.detector is not None and self.detector.feed(pcm, now_s, playing):
            return MicDecision(decision.send, "local_vad")
        send = decision.send
        if self.onset is not None and send and self.onset.mutes(now_s):
            self.onset.blocks_muted += len(send)
            send = tuple(bytes(len(block)) for block in send)
        return MicDecision(send)
