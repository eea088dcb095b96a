"""The libpulse edge around its count: when it ticks, what it writes when, what it hands
the client, what a barge-in flushes. Driven through its public face only: `start` on a
loop, the `PlaybackQueue` it plays (deltas pushed, `interrupt`), `relaxed_ms`, and its
counters and reports.

Why a fake server here: the question is the edge's timing, which a real server cannot
be made to show on demand (a delta 40 ms before a tick, a server that stalls). So the
libpulse context is a fake that records every write and mic read with its time, and the
loop runs on a virtual clock (`virtual_loop`), which the edge reads too: the times
below are exact. The count's arithmetic is in test_speaker_clock.py, the real server in
tests/integration/test_pulse_edge.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from pivoicectl.dsp.levels import FLOOR_DBFS
from pivoicectl.realtime.edges.pulse import PulseAudioEdge
from pivoicectl.realtime.protocol.events import ms_to_samples
from pivoicectl.realtime.session.playback import PlaybackQueue, PlayedSpan
from tests.unit import virtual_loop

DEVICE_S = 0.002
BLOCK_BYTES = 960
"""A 20 ms mic block."""


class FakeServer:
    """The libpulse context, with its two streams in one: every write, flush, timing
    request and mic read is recorded with its time (ms since the edge started)."""

    alive = True

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._t0 = clock()
        self.writes: list[tuple[float, float]] = []
        """(when, how many ms of audio)."""
        self.flushes: list[float] = []
        self.timing_asked: list[float] = []
        self.reads: list[float] = []
        """When the mic was read: once every tick."""
        self.server_says_s: float | None = None
        self.blocks_per_read = 0.0

    def ms(self) -> float:
        return round((self._clock() - self._t0) * 1000, 3)

    # libpulse.Context

    def record(self, name: str, device: str | None, rate: int, fragment_bytes: int):
        return self

    def playback(self, name: str, device: str | None, rate: int, buffer_bytes: int):
        return self

    def pump(self) -> None:
        pass

    def close(self) -> None:
        pass

    # the mic stream

    def on(self, event: str, callback: Callable[[], None]) -> None:
        pass

    def measured_latency_s(self) -> float:
        return 0.010

    def read_available(self) -> bytes:
        self.reads.append(self.ms())
        return bytes(round(BLOCK_BYTES * self.blocks_per_read))

    # the speaker stream

    def playback_timing(self, max_age_s: float) -> tuple[float, float | None]:
        return DEVICE_S, self.server_says_s

    def request_timing(self) -> None:
        self.timing_asked.append(self.ms())

    def write(self, pcm: bytes) -> None:
        self.writes.append((self.ms(), round(len(pcm) / 48, 1)))

    def flush(self) -> None:
        self.flushes.append(self.ms())


@dataclass
class Rig:
    edge: PulseAudioEdge
    server: FakeServer
    queue: PlaybackQueue
    t0: float
    handed: list[tuple[float, int, float]] = field(default_factory=list)
    """Mic blocks handed to the client: (when in ms, size, age in s)."""

    async def at(self, ms: float) -> None:
        """Run the loop until `ms` after the edge started."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.t0 + ms / 1000 - loop.time())

    def delta(self, ms: int) -> None:
        """An answer's delta arrives (the queue tells the edge when it was empty)."""
        self.queue.push("item", "resp", bytes(ms_to_samples(ms) * 2))


def run_edge(
    script: Callable[[Rig], Awaitable[None]],
    queued_ms: int = 0,
    relaxed_ms: int = 0,
    blocks_per_read: float = 0.0,
    on_mic: Callable[[PulseAudioEdge], None] | None = None,
) -> Rig:
    """Start an edge (20 ms blocks, 60 ms lead) on a fake server and a virtual clock,
    with `queued_ms` of an answer already queued, and run `script` beside it."""

    async def main() -> Rig:
        loop = asyncio.get_running_loop()
        server = FakeServer(loop.time)
        server.blocks_per_read = blocks_per_read
        queue = PlaybackQueue()
        edge = PulseAudioEdge(queue, clock=loop.time, open_context=lambda name: server)
        edge.relaxed_ms = relaxed_ms
        rig = Rig(edge, server, queue, loop.time())
        if queued_ms:
            rig.delta(queued_ms)

        def mic(pcm: bytes, age_s: float) -> None:
            rig.handed.append((server.ms(), len(pcm), age_s))
            if on_mic is not None:
                on_mic(edge)

        edge.start(loop, mic)
        await script(rig)
        return rig

    return virtual_loop.run(main())


def test_ticks_come_as_seldom_as_the_client_allows_and_the_lead_outlasts_the_wait():
    async def script(rig: Rig) -> None:
        await rig.at(150)
        rig.edge.relaxed_ms = 40  # someone talks: speech batches
        await rig.at(305)

    rig = run_edge(script, queued_ms=1000, relaxed_ms=100)
    server = rig.server
    # The first tick a block after the start, then 100 ms apart; 40 ms once allowed.
    assert server.reads == [20, 120, 220, 260, 300]
    # 200 ms (a 100 ms tick's lead) at once, topped up to it; 100 ms held at 220 is more
    # than a 40 ms tick's 80, so nothing until 260 (60 ms held), and so on.
    assert server.writes == [(20, 200), (120, 100), (260, 20), (300, 40)]


def test_an_answer_that_starts_between_slow_ticks_is_written_at_once_to_outlast_the_wait():
    async def script(rig: Rig) -> None:
        await rig.at(50)
        rig.delta(300)  # the next tick is 70 ms away
        assert rig.server.writes == [(50, 200)]
        await rig.at(121)

    rig = run_edge(script, relaxed_ms=100)
    assert rig.server.reads == [20, 120]  # the tick stays where it was


def test_blocks_read_together_are_handed_over_with_their_age():
    async def script(rig: Rig) -> None:
        await rig.at(30)

    rig = run_edge(script, blocks_per_read=5.5)  # 5 blocks and half of the next
    # Each block's last sample came before the blocks after it and the half block.
    assert [(t, size) for t, size, _ in rig.handed] == [(20, BLOCK_BYTES)] * 5
    ages = [age for _, _, age in rig.handed]
    assert ages == pytest.approx([0.090, 0.070, 0.050, 0.030, 0.010])


def test_a_tick_that_slows_down_while_audio_waits_comes_back_before_the_lead_runs_out():
    """The client's speech hangover ends in the middle of an answer: the top-up kept the
    40 ms tick's lead (80 ms), then the mic blocks let the tick slow to 100 ms."""

    def quiet_now(edge: PulseAudioEdge) -> None:
        edge.relaxed_ms = 100

    async def script(rig: Rig) -> None:
        await rig.at(65)

    rig = run_edge(script, queued_ms=1000, relaxed_ms=40, blocks_per_read=2, on_mic=quiet_now)
    # Not 100 ms on (the server would run dry 20 ms before it), but a margin (40 ms)
    # before the 80 ms run out; that tick tops up to the 100 ms tick's lead.
    assert rig.server.reads == [20, 60]
    assert rig.server.writes == [(20, 80), (60, 160)]


def test_a_delta_shortly_before_the_tick_carries_it_and_pushes_the_timer_back():
    async def script(rig: Rig) -> None:
        await rig.at(180)  # the tick is due in 40 ms, under half a period
        rig.delta(100)
        assert rig.server.writes == []  # not inside the delta's handling...
        assert rig.server.reads == [20, 120]
        await asyncio.sleep(0)
        assert rig.server.writes == [(180, 100)]  # ...but in the same pass of the loop
        assert rig.server.reads == [20, 120, 180]  # and the mic blocks with it
        await rig.at(300)

    rig = run_edge(script, relaxed_ms=100, blocks_per_read=1)
    # The timer's own tick a period (and a 10 ms slack) after this one.
    assert rig.server.reads == [20, 120, 180, 290]
    assert [t for t, _, _ in rig.handed] == [20, 120, 180, 290]


def test_deltas_a_period_apart_carry_every_tick_and_the_timer_never_fires():
    async def script(rig: Rig) -> None:
        for n in range(1, 8):
            # Each delta a period after the last, give or take the wakeup's jitter.
            at_ms = 20 + 100 * n + (-3 if n % 2 else 4)
            await rig.at(at_ms)
            rig.delta(100)
            await asyncio.sleep(0)
            assert rig.server.reads[-1] == at_ms, f"delta {n} did not carry the tick"
        await rig.at(740)

    rig = run_edge(script, relaxed_ms=100)
    assert rig.server.reads == [20, 117, 224, 317, 424, 517, 624, 717]
    assert [t for t, _ in rig.server.writes] == rig.server.reads[1:]


def test_a_burst_of_deltas_brings_the_tick_forward_once():
    async def script(rig: Rig) -> None:
        await rig.at(100)
        for _ in range(3):  # a service that sends faster than real time
            rig.delta(100)
        await asyncio.sleep(0)
        assert rig.server.reads == [20, 100]
        await rig.at(130)
        rig.delta(100)  # audio still waits: the timer's tick takes this one too
        await rig.at(211)

    rig = run_edge(script, relaxed_ms=100)
    assert rig.server.reads == [20, 100, 210]
    assert rig.server.writes == [(100, 200), (210, 110)]


def test_each_write_is_reported_block_by_block_when_it_will_be_heard():
    async def script(rig: Rig) -> None:
        await rig.at(30)

    rig = run_edge(script, queued_ms=1000)
    reports = rig.edge.drain_reports()
    assert [round((r.audible_s - rig.t0) * 1000, 3) for r in reports] == [22, 42, 62]
    assert all(r.callback_s == pytest.approx(rig.t0 + 0.020) for r in reports)
    assert [r.spans for r in reports] == [(PlayedSpan("item", "resp", 480),)] * 3
    assert rig.edge.output_latency_s == pytest.approx(0.062)
    assert rig.edge.sounding_until_s == pytest.approx(rig.t0 + 0.082)


def test_a_barge_in_flushes_what_the_server_holds_and_counts_it_unheard():
    plans = []

    async def script(rig: Rig) -> None:
        await rig.at(50)  # 80 ms written by now (60 at 20, 20 at 40): 50 ms unplayed
        plans.append(rig.queue.interrupt())
        assert rig.edge.unheard_at_abort_ms == 50
        await rig.at(70)
        plans.append(rig.queue.interrupt())  # again, with nothing at the server
        rig.queue.push("item_2", "resp_2", bytes(ms_to_samples(100) * 2))
        await rig.at(81)

    rig = run_edge(script, queued_ms=1000)
    edge, server = rig.edge, rig.server
    assert server.flushes == [50, 70]  # always flushed, even when the count says dry
    assert edge.output_aborts == 1  # but only the first cut audio off
    assert plans[0] is not None and plans[0].audio_end_ms == 80 - 50
    assert plans[1] is None
    silent = [r for r in edge.drain_reports() if not r.spans]
    assert [round((r.callback_s - rig.t0) * 1000, 3) for r in silent] == [50, 70]
    assert all(r.level_dbfs == FLOOR_DBFS for r in silent)
    # The next answer starts the speaker again, without an underrun.
    assert server.writes[-1] == (70, 60)
    assert (edge.output_starts, edge.underflows) == (2, 0)


def test_the_servers_own_figure_is_asked_for_while_audio_is_out_and_wins_when_it_holds_more():
    async def script(rig: Rig) -> None:
        await rig.at(55)
        rig.server.server_says_s = 0.100  # it stalled: at 80 it holds 100 ms, not 40
        await rig.at(85)
        rig.server.server_says_s = None
        await rig.at(205)

    rig = run_edge(script, queued_ms=1000, relaxed_ms=30)  # 30 ms ticks: a 70 ms lead
    assert rig.server.reads == [20, 50, 80, 110, 140, 170, 200]
    assert rig.server.timing_asked == [20, 110, 200]  # every 80 ms at most, not every tick
    assert rig.edge.server_lags == 1
    # Nothing at 80 (the server's 100 ms is more than the lead) nor at 110 (70 held by
    # the count that followed it); topped up from 140 on.
    assert rig.server.writes == [(20, 70), (50, 30), (140, 30), (170, 30), (200, 30)]
