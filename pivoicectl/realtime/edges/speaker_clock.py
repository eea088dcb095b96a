"""The libpulse edge's count of the speaker audio the server holds, and what follows
from it: how much to write to keep the lead, when what was handed over will have been
heard, what a flush now would drop, and which block of a write each answer's spans
fall in.

Why a count of its own and not libpulse's latency: the server plays in real time from
each write until its buffer runs dry, so when it will run dry follows from what was
written and when. libpulse's latency is interpolated between timing updates and went
wrong both ways when the buffer ran dry between late deltas (0 ms reported while the
server held 400 ms, 113 ms while it held 65); the count agreed with the server's own
read index to -4..+9 ms over 511 ticks. A fresh reply from the server that says it holds
more than the count (a server that stalled) wins.

Pure arithmetic: every method takes the time (`now`, seconds on the edge's clock) and
nothing here talks to the server, so the edge (`pulse.py`) does the I/O and these rules
are tested on their own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pivoicectl.realtime.protocol.events import SAMPLE_RATE_HZ
from pivoicectl.realtime.session.playback import PlayedSpan

TIMING_EVERY_S = 0.08
"""How often the server's own indices are asked for while audio is out."""
SERVER_LAG_S = 0.015
"""How far the server's own count may exceed the edge's before it wins (its read index
moves a period at a time: -4..+9 ms apart in steady playback)."""
MARGIN_S = 0.04
"""The least audio the server is to hold beyond the wait for the next tick (wakeups come
late; the server's graph takes its audio a quantum at a time)."""
AUDIO_OUT_S = 0.1
"""Audio counts as out (the server's indices worth asking for) until this long after
the count says the server ran dry."""


@dataclass(frozen=True)
class TopUp:
    """What a top-up at one instant is to do (`SpeakerClock.plan`)."""

    held_s: float
    """Audio the server holds now: the count, or the server's own figure when it won."""
    samples: int
    """How many samples to write now to keep the lead (0: none)."""
    started: bool
    """The server was dry: what is written now starts the speaker again."""
    underrun: bool
    """Dry while audio waited in the queue at the last top-up: the tick came too late.
    Counted from the count, not from the server's underflow notices: those are read at
    the next pump, up to a tick late, and were counted whenever the next answer's audio
    was queued by then (2-6 a bench run, against 6 ms of silence at the speaker in all)."""
    server_lagged: bool
    """The server's own indices said it held more than the count."""


class SpeakerClock:
    """What the server holds ahead of the speaker, from what was written and when."""

    def __init__(self, lead_s: float) -> None:
        self.lead_s = lead_s
        """The least audio kept at the server, whatever the tick."""
        self.drain_s = 0.0
        """When the server will have played all written audio but for the device's own
        part; in the past when its buffer is dry."""
        self.device_s = 0.0
        """The device's own part of the latency, as the server last reported it."""
        self.sounding_until_s = 0.0
        """When the audio written so far will have been heard (the device's part
        included); the flush instant after a flush."""
        self._left_queued = False
        self._next_timing_s = 0.0

    def restart(self) -> None:
        """Fresh streams: nothing is held, and the server's indices are due at once."""
        self.drain_s = 0.0
        self._next_timing_s = 0.0

    def lead_for(self, period_s: float) -> float:
        """Audio to keep at the server with ticks `period_s` apart: a period plus a
        period's margin (at least `MARGIN_S`), and never less than `lead_s`."""
        return max(self.lead_s, period_s + max(period_s, MARGIN_S))

    def held_s(self, now: float) -> float:
        """Audio the server holds for the speaker that a flush now would drop."""
        return max(0.0, self.drain_s - now)

    def unheard_ms(self, now: float) -> int:
        """`held_s` in whole milliseconds: what a barge-in now leaves unheard."""
        return round(self.held_s(now) * 1000)

    def wants_timing(self, now: float) -> bool:
        """Whether to ask the server for its indices now: audio is out and the last ask
        is `TIMING_EVERY_S` old (each ask is a round trip through the server)."""
        if self.drain_s > now - AUDIO_OUT_S and now >= self._next_timing_s:
            self._next_timing_s = now + TIMING_EVERY_S
            return True
        return False

    def plan(self, now: float, period_s: float, device_s: float, reported_s: float | None) -> TopUp:
        """What to write now, with ticks `period_s` apart; `device_s` and `reported_s`
        (what the server says it holds, None without a fresh reply) from the server's
        last timing. A server figure that wins moves the count at once."""
        self.device_s = device_s
        held = self.held_s(now)
        lagged = reported_s is not None and reported_s > held + SERVER_LAG_S
        if lagged:
            assert reported_s is not None
            held = reported_s
            self.drain_s = now + held
            self.sounding_until_s = self.drain_s + device_s
        started = held <= 0.0
        need = math.ceil((self.lead_for(period_s) - held) * SAMPLE_RATE_HZ)
        return TopUp(
            held_s=held,
            samples=max(0, need),
            started=started,
            underrun=started and self._left_queued,
            server_lagged=lagged,
        )

    def wrote(self, now: float, top_up: TopUp, samples: int, left_queued: bool) -> None:
        """`samples` of the `top_up` went to the server at `now`; `left_queued`: audio
        still waits in the queue for the next top-up."""
        self._left_queued = left_queued
        self.drain_s = now + top_up.held_s + samples / SAMPLE_RATE_HZ
        self.sounding_until_s = self.drain_s + self.device_s

    def flushed(self, now: float) -> bool:
        """The server's buffer was flushed at `now`: the speaker is silent from here on.
        True when it held audio (an answer was cut off, not one that had played out)."""
        aborted = self.held_s(now) > 0
        self.drain_s = self.sounding_until_s = now
        self._left_queued = False
        return aborted

    def refill_by_s(self) -> float:
        """The latest the next top-up may come while audio waits in the queue: a margin
        before what the server holds runs out."""
        return self.drain_s - MARGIN_S


def spans_per_block(
    spans: Sequence[PlayedSpan], n_samples: int, block_samples: int
) -> list[tuple[PlayedSpan, ...]]:
    """The spans of a write of `n_samples`, cut into the blocks of `block_samples` it is
    reported in (the last one may be shorter), in order: so the echo guard and the
    onset mute see the same block-by-block timeline as with PortAudio."""
    remaining = list(spans)
    blocks: list[tuple[PlayedSpan, ...]] = []
    for offset in range(0, n_samples, block_samples):
        n = min(block_samples, n_samples - offset)
        taken: list[PlayedSpan] = []
        while n and remaining:
            span = remaining[0]
            take = min(n, span.samples)
            taken.append(PlayedSpan(span.item_id, span.response_id, take))
            n -= take
            if take == span.samples:
                remaining.pop(0)
            else:
                remaining[0] = PlayedSpan(span.item_id, span.response_id, span.samples - take)
        blocks.append(tuple(taken))
    return blocks
