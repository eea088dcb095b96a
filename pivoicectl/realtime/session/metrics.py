"""What `run` reports about a conversation: per-turn latencies and totals.

Kept apart from the state machine so the conversation's rules and the figures it
reports can be read separately; both are pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pivoicectl.realtime.protocol import events as ev

if TYPE_CHECKING:
    from pivoicectl.realtime.session.conversation import Conversation


def _ms(later: float | None, earlier: float | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier) * 1000.0, 1)


@dataclass
class TurnMetrics:
    """One assistant answer: when it came, when it was heard, whether it was cut off.

    Times are monotonic seconds; `to_dict` turns them into the derived latencies.
    `speech_stopped_s` is when the service said the user's turn ended (it waits the VAD
    silence window before saying so, which `vad_silence_ms` adds back for the
    voice-to-voice figure).
    """

    index: int
    response_id: str
    created_s: float
    speech_stopped_s: float | None = None
    vad_silence_ms: int = 0
    item_id: str | None = None
    status: str = "in_progress"
    reason: str | None = None
    first_delta_s: float | None = None
    first_audible_s: float | None = None
    done_s: float | None = None
    received_samples: int = 0
    interrupted_s: float | None = None
    silent_s: float | None = None
    truncate_audio_end_ms: int | None = None
    played_ms_at_interrupt: int | None = None
    received_ms_at_interrupt: int | None = None
    cancel_sent: bool = False
    underflows: int = 0
    overflows: int = 0
    usage: dict[str, Any] | None = None
    complete: bool = False

    @property
    def interrupted(self) -> bool:
        return self.interrupted_s is not None

    def to_dict(self) -> dict[str, Any]:
        response_latency = _ms(self.first_audible_s, self.speech_stopped_s)
        return {
            "turn": self.index,
            "response_id": self.response_id,
            "item_id": self.item_id,
            "status": self.status,
            "reason": self.reason,
            "audio_received_ms": ev.samples_to_ms(self.received_samples),
            "response_latency_ms": response_latency,
            "voice_to_voice_ms": (
                None if response_latency is None else response_latency + self.vad_silence_ms
            ),
            "first_audio_latency_ms": _ms(self.first_audible_s, self.first_delta_s),
            "interrupted": self.interrupted,
            "interrupt_latency_ms": _ms(self.silent_s, self.interrupted_s),
            "truncate_audio_end_ms": self.truncate_audio_end_ms,
            "played_ms_at_interrupt": self.played_ms_at_interrupt,
            "received_ms_at_interrupt": self.received_ms_at_interrupt,
            "cancel_sent": self.cancel_sent,
            "underflows": self.underflows,
            "overflows": self.overflows,
            "usage": self.usage,
        }


def add_usage(total: dict[str, Any], usage: dict[str, Any]) -> None:
    """Sum token counts, recursing into the *_details objects."""
    for key, value in usage.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, dict):
            add_usage(total.setdefault(key, {}), value)


@dataclass(frozen=True)
class ConversationSummary:
    """What `run` prints at the end."""

    turns: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    turns_not_shown: int = 0
    """Earlier turns no longer held in memory (they are in the trace)."""
    invalid_events: int = 0
    """Frames from the service that were dropped as unusable."""


def summarize(conversation: Conversation) -> ConversationSummary:
    """The turns (complete or not), total usage and errors of a conversation."""
    return ConversationSummary(
        turns=[t.to_dict() for t in conversation.turns],
        usage=dict(conversation.usage),
        errors=list(conversation.errors),
        connections=conversation.connections,
        turns_not_shown=conversation.turns_forgotten,
        invalid_events=conversation.invalid_events,
    )
