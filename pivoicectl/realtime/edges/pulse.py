"""The audio server edge of `run`: mic and speaker through libpulse, on the event loop.

One timer on the asyncio loop does all the audio work in a single wakeup: it lets
libpulse read what the server sent, hands the recorded mic blocks to the client, and
tops up the speaker. There is no audio thread and no callback per block: the mic and
speaker cost 0.45-0.57 % of a core at 20 ms ticks, against 0.31-0.37 % for a bare 20 ms
loop timer and about 1.3 % for PortAudio's (see `libpulse`).

The tick runs every `block_ms` (20 ms) or as seldom as the client allows (`relaxed_ms`:
as seldom as the uplink sends, see `uplink`: 200 ms while the room is quiet and nothing
plays or while someone talks alone, 100 ms in a quiet room while an answer is under
way, 40 ms while someone talks over an answer or stops talking): those blocks wait that
long for their send anyway, and the server keeps recording meanwhile, so they arrive
together and nothing is lost. Most of the client's CPU on a VM is the wakeups
themselves, so a tick due within half a period when an answer's delta arrives runs in
the delta's wakeup and the timer moves a period behind it: while an answer streams at
real-time pace the deltas carry every tick (in the simulated room a conversation's
context switches went from 32-34 to 28-31 a second, its CPU from 1.27-1.41 % to
1.16-1.22 %). Each block read together with others is handed over with its age, so
the decisions taken on it line up with what the speaker played.

The speaker side keeps enough audio in the server's buffer to outlast the wait for the
next tick (`SpeakerClock.lead_for`: a period plus a period's margin, 60 ms at 20 ms
ticks, 200 ms at 100 ms; 400 ms for the first write of an answer that starts during a
200 ms idle tick, until the next tick brings the period down) and no more; the rest
waits in the `PlaybackQueue`. A barge-in empties the queue and flushes the server's
buffer (`pa_stream_flush`), and the truncation counts what was handed over minus what
the server still held at that instant, so a longer lead costs nothing that is heard
(the barge-in test: the truncate within -13..-1 ms of what the speaker played with 200
ms leads). When the client lets the tick slow down while audio waits in the queue, the
next tick still comes a margin before what the server holds runs out: the lead of the
faster tick is all it has until then. A new answer is written as soon as its first
delta is queued, not at the next tick.

The stream stays connected between answers: with 20 ms pre-buffering the server waits,
silent, for the next write and does not wake the client meanwhile.

How much the server holds comes from the edge's own count (`speaker_clock`), not from
libpulse's latency, which went wrong both ways when the buffer ran dry between late
deltas (0 ms reported while the server held 400 ms: the echo guard saw nothing playing
while the speaker still talked). While audio is out, every 80 ms the edge asks the
server for its indices, and a fresh reply that says it holds more than the count (a
server that stalled) wins.

The edge reads the time from `clock` and the libpulse connection from `open_context`,
both `time.monotonic` and `libpulse.Context` unless a test hands it others.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from pivoicectl.dsp.levels import FLOOR_DBFS, pcm16_dbfs
from pivoicectl.errors import UserError
from pivoicectl.realtime.edges.interfaces import REOPEN_DELAYS_S, EdgeCounters, MicSink
from pivoicectl.realtime.edges.speaker_clock import (
    TIMING_EVERY_S,
    SpeakerClock,
    spans_per_block,
)
from pivoicectl.realtime.protocol.events import BYTES_PER_SAMPLE, SAMPLE_RATE_HZ, ms_to_samples
from pivoicectl.realtime.session.playback import PlaybackQueue, PlayReport
from pivoicectl.system.audio_ready import AudioNeeds, missing
from pivoicectl.system.audio_server import server_has_node

RIDE_SLACK_S = 0.01
"""How much later than a period after a delta's tick the timer's own tick comes: deltas
paced a period apart (the local server's, a steady service's) then always come first
and carry every tick, and wakeup jitter does not hand ticks back to the timer."""

SERVER_BUFFER_S = 2.0
"""Room the server keeps for the speaker stream; only the lead (at most a few hundred
ms) of it is ever used."""


class PulseAudioEdge(EdgeCounters):
    """Full-duplex audio through the audio server's own protocol, driven by the loop."""

    def __init__(
        self,
        playback: PlaybackQueue,
        input_device: str | None = None,
        output_device: str | None = None,
        block_ms: int = 20,
        lead_ms: int | None = None,
        audio_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        open_context: Callable[[str], Any] | None = None,
    ) -> None:
        self.playback = playback
        self.clock = clock
        """The edge's time line: the loop's clock (the report times, `sounding_until_s`)."""
        self.open_context = open_context
        """Connects to the audio server (`libpulse.Context`; a test passes a fake)."""
        self.input_device = input_device
        self.output_device = output_device
        self.block_ms = block_ms
        self.block_bytes = ms_to_samples(block_ms) * BYTES_PER_SAMPLE
        lead_s = (lead_ms if lead_ms is not None else 2 * block_ms + 20) / 1000
        self.speaker_clock = SpeakerClock(lead_s)
        """What the server holds ahead of the speaker. Its lead is the least kept there
        (more with slower ticks), not more than the tick needs: the audio at the server
        is counted as playing by the edge (`sounding_until_s`) and as unheard by the
        truncation, both estimates, while what waits in the queue is known exactly."""
        super().__init__()  # output_latency_s: after the last write (lead plus device)
        self.unheard_at_abort_ms = 0
        """Audio the last barge-in flushed from the server (never heard)."""
        self.server_lags = 0
        """Top-ups where the server's own indices said it held more than the count."""
        self.error: str | None = None
        self.audio_timeout_s = audio_timeout_s
        self._lost_s: float | None = None
        """When (`clock`) the audio server went away, while it is away."""
        self._reopen_attempts = 0
        self._reopen_timer: asyncio.TimerHandle | None = None
        self._context: Any = None
        self._mic_stream: Any = None
        self._speaker: Any = None
        self._mic: MicSink | None = None
        self._pending = bytearray()
        self._timer: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due_s = 0.0
        """When (loop clock) the pending tick is due."""
        self._riding = False
        """A tick brought forward by a delta waits to run in this pass of the loop."""

    # --- lifecycle (event loop thread) --------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, mic: MicSink) -> None:
        """Connect, open both streams, start the tick; problems are a UserError."""
        from pivoicectl.system import libpulse

        # The server would quietly connect an unknown name to the default device.
        for name, kind, what in (
            (self.input_device, "input", "source"),
            (self.output_device, "output", "sink"),
        ):
            if name and not server_has_node(name, kind):
                raise UserError(
                    f"the audio server has no {what} named {name!r}",
                    hint="see `pivoicectl devices`; PortAudio names need --audio-backend portaudio",
                )
        try:
            self._open()
        except libpulse.PulseError as exc:
            self.stop()
            named = self.input_device or self.output_device
            raise UserError(
                f"cannot open the audio server streams: {exc}",
                hint=(
                    f"is {named!r} a source/sink in `pivoicectl devices`? "
                    "PortAudio names need --audio-backend portaudio"
                    if named
                    else "check `pivoicectl doctor`"
                ),
            ) from None
        self._mic = mic
        self.playback.set_listener(self._on_playback)
        self.playback.set_unheard_estimate(self._unheard_ms)
        self._loop = loop
        self._schedule(loop, loop.time() + self.block_ms / 1000)

    def _open(self) -> None:
        """Connect and open both streams (on the configured names or the defaults)."""
        from pivoicectl.system import libpulse

        open_context = self.open_context or libpulse.Context
        self._context = open_context("pivoicectl run")
        self._mic_stream = self._context.record(
            "pivoicectl mic", self.input_device, SAMPLE_RATE_HZ, self.block_bytes
        )
        self._speaker = self._context.playback(
            "pivoicectl speaker",
            self.output_device,
            SAMPLE_RATE_HZ,
            int(SERVER_BUFFER_S * SAMPLE_RATE_HZ) * BYTES_PER_SAMPLE,
        )
        self._mic_stream.on("overflow", self._on_overflow)
        self.input_latency_s = self._mic_stream.measured_latency_s() or 0.0
        self._pending.clear()
        self.speaker_clock.restart()

    def stop(self) -> None:
        """Stop the tick, let the speaker's lead play out, disconnect (idempotent)."""
        self._mic = None
        self._lost_s = None
        reopen, self._reopen_timer = self._reopen_timer, None
        if reopen is not None:
            reopen.cancel()
        self.playback.set_listener(None)
        self.playback.set_unheard_estimate(None)
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        context, self._context = self._context, None
        if context is None:
            return
        with contextlib.suppress(Exception):
            if self._speaker is not None:
                held = self.speaker_clock.held_s(self.clock()) + self.speaker_clock.device_s
                time.sleep(min(0.3, held))
        context.close()
        self._mic_stream = self._speaker = None

    # --- the tick -------------------------------------------------------------------------

    def _schedule(self, loop: asyncio.AbstractEventLoop, at_s: float) -> None:
        """The next tick at `at_s` on the loop's clock: a plain timer callback (a task
        sleeping in a loop costs a future and two more callbacks per wakeup)."""
        self._due_s = at_s
        self._timer = loop.call_at(at_s, self._on_timer, loop, at_s)

    def _ride_along(self) -> bool:
        """Bring the tick forward into the wakeup a delta brought, when it is due within
        half a period anyway: True when it will run in this pass of the loop.

        Why: on a VM the wakeup and the caches it finds cold cost more than the tick's own
        work. While an answer streams, deltas and ticks each woke the client about ten
        times a second; riding on the deltas halves the wakeups. The tick runs after the
        delta is handled (`call_soon`), not inside it: its mic blocks may make the client
        stop the answer, which must not happen in the middle of queueing it. The timer is
        pushed back to a period (plus `RIDE_SLACK_S`) after this tick, so it only fires
        when the deltas stop or come slower than the ticks."""
        timer, loop = self._timer, self._loop
        if timer is None or loop is None:
            return False
        if self._riding:
            return True
        now = loop.time()
        if self._due_s - now > self._period_s() / 2:
            return False
        timer.cancel()
        self._riding = True
        self._due_s = now
        self._timer = loop.call_soon(self._on_timer, loop, now + RIDE_SLACK_S)
        return True

    def _period_s(self) -> float:
        """`block_ms`, or `relaxed_ms` while the client allows reading the mic that seldom."""
        return max(self.relaxed_ms, self.block_ms) / 1000

    def _on_timer(self, loop: asyncio.AbstractEventLoop, due_s: float) -> None:
        self._riding = False
        if self._context is None:
            return
        self._tick()
        if self._context is None:
            return  # the server went away during the tick: `_lost` took over
        period = self._period_s()
        next_s = due_s + period
        if next_s < loop.time() - period:  # the loop stalled: start afresh, no catch-up
            next_s = loop.time()
        if self.playback.queued_samples:
            # The top-up sized the lead for the period it knew; the client may have let
            # the tick slow down since (its speech hangover ended while an answer played:
            # 80 ms held, the next tick 100 ms away). Come back before that runs out.
            next_s = min(next_s, max(loop.time(), self.speaker_clock.refill_by_s()))
        self._schedule(loop, next_s)

    def _tick(self) -> None:
        """Top up the speaker, then one pump sends that and reads what the server sent;
        then hand over the mic blocks."""
        context = self._context
        if context is None:
            return
        now = self.clock()
        self._top_up(now)
        if self.speaker_clock.wants_timing(now):  # fresh server indices for the top-ups
            self._speaker.request_timing()
        context.pump()
        if not context.alive:
            self._lost(context.error())
            return
        data = self._mic_stream.read_available()
        if data and self._mic is not None:
            pending = self._pending
            pending += data
            size = self.block_bytes
            while len(pending) >= size:
                block = bytes(pending[:size])
                del pending[:size]
                # Recorded before the blocks still pending and the part-block after them.
                self._mic(block, len(pending) / BYTES_PER_SAMPLE / SAMPLE_RATE_HZ)

    def _lost(self, why: str) -> None:
        """The audio server went away (restarted, upgraded, crashed): stop the audio,
        tell the client, and try to reopen the streams until it is back."""
        self.error = f"audio server connection lost ({why})"
        context, self._context = self._context, None
        self._mic_stream = self._speaker = None
        with contextlib.suppress(Exception):
            if context is not None:
                context.close()
        self._lost_s = self.clock()
        self._reopen_attempts = 0
        self._tell("lost", self.error)
        self._schedule_reopen()

    def _tell(self, state: str, text: str) -> None:
        if self.state_listener is not None:
            self.state_listener(state, text)

    def _schedule_reopen(self) -> None:
        loop = self._loop
        if loop is None:
            return
        delay = REOPEN_DELAYS_S[min(self._reopen_attempts, len(REOPEN_DELAYS_S) - 1)]
        self._reopen_attempts += 1
        self._reopen_timer = loop.call_later(delay, self._reopen)

    def _reopen(self) -> None:
        """One attempt to get the audio back; the next is scheduled if it fails."""
        from pivoicectl.system import libpulse

        self._reopen_timer = None
        if self._lost_s is None or self._mic is None:
            return  # stopped meanwhile
        away_s = self.clock() - self._lost_s
        if away_s > self.audio_timeout_s:
            self._lost_s = None
            self._tell(
                "gone",
                f"the audio server did not come back within {self.audio_timeout_s:g} s "
                f"({self.error})",
            )
            return
        try:
            # A stream on a device that is not there yet would quietly go to the default,
            # and before WirePlumber runs the default is not source_ec yet.
            needs = AudioNeeds(
                self.input_device,
                self.output_device,
                session_manager=not (self.input_device and self.output_device),
            )
            ready = missing(needs) is None
            if ready:
                self._open()
        except (libpulse.PulseError, UserError):
            ready = False
        if not ready or self._context is None:
            if self._context is not None:
                with contextlib.suppress(Exception):
                    self._context.close()
            self._context = self._mic_stream = self._speaker = None
            self._schedule_reopen()
            return
        self._lost_s = None
        self.error = None
        loop = self._loop
        assert loop is not None
        self._schedule(loop, loop.time() + self.block_ms / 1000)
        self._tell("back", f"audio server back after {away_s:.1f} s")

    def _top_up(self, now: float) -> None:
        """Write queued audio until the server holds the lead ahead of the speaker."""
        queued = self.playback.queued_samples
        if not queued:
            return
        speaker = self._speaker
        device, reported = speaker.playback_timing(max_age_s=TIMING_EVERY_S + 0.05)
        count = self.speaker_clock
        plan = count.plan(now, self._period_s(), device, reported)
        self.sounding_until_s = count.sounding_until_s
        self.server_lags += plan.server_lagged
        self.output_starts += plan.started  # heard after the device's own part
        self.underflows += plan.underrun
        if not plan.samples:
            return
        pcm, accounting = self.playback.pull(min(plan.samples, queued))
        try:
            speaker.write(pcm)
        except Exception as exc:  # a dropped server is reported by the next tick
            self.error = str(exc)
            return
        count.wrote(now, plan, len(pcm) // BYTES_PER_SAMPLE, self.playback.queued_samples > 0)
        self.sounding_until_s = count.sounding_until_s
        self.output_latency_s = count.sounding_until_s - now
        self._report_written(now, plan.held_s + device, pcm, accounting.spans)

    def _report_written(self, now: float, latency_s: float, pcm: bytes, spans: Any) -> None:
        """One PlayReport per block of what was written, timed when each is heard, so the
        echo guard and onset mute see the same block-by-block timeline as with
        PortAudio."""
        step = self.block_bytes
        blocks = spans_per_block(spans, len(pcm) // BYTES_PER_SAMPLE, step // BYTES_PER_SAMPLE)
        for offset, taken in zip(range(0, len(pcm), step), blocks, strict=True):
            audible = now + latency_s + offset / BYTES_PER_SAMPLE / SAMPLE_RATE_HZ
            self.reports.append(
                PlayReport(
                    callback_s=now,
                    audible_s=audible,
                    spans=taken,
                    silence_samples=0,
                    underflows=self.underflows,
                    overflows=self.overflows,
                    level_dbfs=pcm16_dbfs(pcm[offset : offset + step]),
                )
            )

    # --- events from libpulse and the queue (event loop thread) ---------------------------

    def _on_playback(self, what: str) -> None:
        if self._context is None:
            return
        now = self.clock()
        if what == "audio":
            if self._ride_along():
                return  # the tick, in this pass, tops up and pumps
            self._top_up(now)  # the lead covers the wait for the next tick, slow or not
        elif what == "flush":
            # Always flush, even when the count says the server is dry: a skipped flush
            # would let whatever it does hold play on.
            self._speaker.flush()
            self.output_aborts += self.speaker_clock.flushed(now)
            self.sounding_until_s = self.speaker_clock.sounding_until_s
            # The speaker is silent from here on (but for the device's own few ms): a
            # report with no audio in it tells the conversation so.
            self.reports.append(
                PlayReport(now, now, (), 0, self.underflows, self.overflows, FLOOR_DBFS)
            )
        self._context.pump()

    def _unheard_ms(self) -> int:
        """Audio written to the server that a flush now would drop (never heard)."""
        if self._speaker is None:
            return 0
        self.unheard_at_abort_ms = self.speaker_clock.unheard_ms(self.clock())
        return self.unheard_at_abort_ms

    def _on_overflow(self) -> None:
        self.overflows += 1
