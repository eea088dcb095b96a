"""What happens to a mic block between the sound card and the WebSocket.

One place composes the device-side decisions so the client loop stays plumbing: the
echo guard (which blocks to send) and the local barge-in detector (whether to
interrupt). When a guard is on, it owns the interrupt decision: behind `gate` nobody
interrupts, behind `vad-gate` its double-talk detector does; a plain VAD on a mic
without a canceller would fire on the assistant's own voice.
"""

from __future__ import annotations

from dataclasses import dataclass

from pivoicectl.realtime.barge_in import BargeInDetector, BargeInSettings
from pivoicectl.realtime.conversation import PlayReport
from pivoicectl.realtime.echo_guard import EchoGuard, EchoGuardSettings


@dataclass(frozen=True)
class MicDecision:
    send: tuple[bytes, ...]
    interrupt_source: str | None = None
    """"local_vad" or "echo_guard" when the person just interrupted the assistant."""


class MicPath:
    """`played(report)` for every playback report, `feed(pcm, now_s, playing)` per mic
    block."""

    def __init__(
        self,
        barge_in: str = "server",
        barge_in_settings: BargeInSettings | None = None,
        guard_settings: EchoGuardSettings | None = None,
    ) -> None:
        guard_settings = guard_settings or EchoGuardSettings()
        self.guard = EchoGuard(guard_settings)
        use_local = barge_in == "local" and guard_settings.mode == "off"
        tuning = barge_in_settings or BargeInSettings()
        self.detector = BargeInDetector(tuning) if use_local else None

    @property
    def active(self) -> bool:
        """Whether anything is decided here (else blocks pass straight through)."""
        return self.detector is not None or self.guard.settings.mode != "off"

    def played(self, report: PlayReport) -> None:
        if report.spans:
            self.guard.reference(report.audible_s, report.level_dbfs)

    def feed(self, pcm: bytes, now_s: float, playing: bool) -> MicDecision:
        decision = self.guard.feed(pcm, now_s, playing)
        if decision.interrupt:
            return MicDecision(decision.send, "echo_guard")
        if self.detector is not None and self.detector.feed(pcm, now_s, playing):
            return MicDecision(decision.send, "local_vad")
        return MicDecision(decision.send)
