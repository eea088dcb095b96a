"""The audio server edge of `run`: mic and speaker through libpulse, on the event loop.

One timer on the asyncio loop, every `block_ms` (20 ms), does all the audio work in a
single wakeup: it lets libpulse read what the server sent, hands the recorded mic
blocks to the client, and tops up the speaker. There is no audio thread and no callback
per block: the mic and speaker cost 0.45-0.57 % of a core, against 0.31-0.37 % for a bare
20 ms loop timer and about 1.3 % for PortAudio's (see `libpulse`).

The speaker side keeps `lead_ms` (60 ms) of audio in the server's buffer for the stream and no
more; the rest waits in the `PlaybackQueue`. So a barge-in loses little: it empties the
queue and flushes the server's buffer (`pa_stream_flush`), and the truncation counts
what was handed over minus what the server still held at that instant (its latency
minus the device's part, which plays out regardless). A new answer is written as soon
as its first delta is queued, not at the next tick.

The stream stays connected between answers: with 20 ms pre-buffering the server waits,
silent, for the next write and does not wake the client meanwhile.

While nothing plays, the client may let the tick slow down (`relaxed_ms`: the
uplink's quiet batch, 100 ms, in a quiet room; its speech batch, 40 ms, while someone
talks): those blocks wait that long for their send anyway, and the server keeps
recording meanwhile, so they arrive together and nothing is lost. Most of the client's
CPU on a VM is the wakeups themselves. A delta queued for the speaker brings the 20 ms
tick back at once: the lead stays 60 ms while anything plays. (A lead that grew with a
slow tick, 200 ms at 100 ms, was tried: the truncation then missed what the speaker
played by up to 60 ms in the barge-in test, against a few ms with 60 ms.)

How much the server holds comes from the edge's own count, not from libpulse's latency:
the server plays in real time from each write until its buffer runs dry, so the time it
will run dry follows from what was written and when. libpulse's latency is interpolated
between timing updates and went wrong both ways when the buffer ran dry between late
deltas: 0 ms reported while the server held 400 ms (the edge wrote ahead, and the echo
guard saw nothing playing while the speaker still talked), and 113 ms while it held 65.
The count agreed with the server's own read index to -4..+9 ms (511 ticks). While audio
is out, every 80 ms the edge asks the server for its indices, and a fresh reply that
says it holds more than the count (a server that stalled) wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
import time
from collections.abc import Callable
from typing import Any

from pivoicectl.dsp.levels import FLOOR_DBFS
from pivoicectl.errors import UserError
from pivoicectl.realtime.audio_io import EdgeCounters, server_has_node
from pivoicectl.realtime.conversation import PlayReport
from pivoicectl.realtime.echo_guard import pcm_level_dbfs
from pivoicectl.realtime.events import BYTES_PER_SAMPLE, SAMPLE_RATE_HZ, ms_to_samples
from pivoicectl.realtime.playback import PlaybackQueue, PlayedSpan

MicSink = Callable[[bytes], None]

TIMING_EVERY_S = 0.08
"""How often the server's own indices are asked for while audio is out."""
SERVER_LAG_S = 0.015
"""How far the server's own count may exceed the edge's before it wins (its read index
moves a period at a time: -4..+9 ms apart in steady playback)."""

SERVER_BUFFER_S = 2.0
"""Room the server keeps for the speaker stream; only `lead_ms` of it is ever used."""


class PulseAudioEdge(EdgeCounters):
    """Full-duplex audio through the audio server's own protocol, driven by the loop."""

    def __init__(
        self,
        playback: PlaybackQueue,
        input_device: str | None = None,
        output_device: str | None = None,
        block_ms: int = 20,
        lead_ms: int | None = None,
    ) -> None:
        self.playback = playback
        self.input_device = input_device
        self.output_device = output_device
        self.block_ms = block_ms
        self.block_bytes = ms_to_samples(block_ms) * BYTES_PER_SAMPLE
        self.lead_s = (lead_ms if lead_ms is not None else 2 * block_ms + 20) / 1000
        """Speaker audio kept at the server. The loop must come back within this, or the
        speaker runs dry. Not more: the truncation and the conversation's bookkeeping
        count per item what left the queue, and the closer that is to what was heard the
        less rests on the estimate of what the server held (with 140 ms the parrot's
        100 ms chunks all went straight to the server and barge-in saw nothing queued)."""
        super().__init__()  # output_latency_s: after the last write (lead plus device)
        self._drain_s = 0.0
        """When (monotonic) the server will have played all written audio but for the
        device's own part; in the past when its buffer is dry."""
        self._device_s = 0.0
        self._timer_at_s = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_timing_s = 0.0
        self.unheard_at_abort_ms = 0
        """Audio the last barge-in flushed from the server (never heard)."""
        self.server_lags = 0
        """Top-ups where the server's own indices said it held more than the count."""
        self.error: str | None = None
        self._context: Any = None
        self._mic_stream: Any = None
        self._speaker: Any = None
        self._mic: MicSink | None = None
        self._pending = bytearray()
        self._timer: asyncio.TimerHandle | None = None

    # --- lifecycle (event loop thread) --------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, mic: MicSink) -> None:
        """Connect, open both streams, start the tick; problems are a UserError."""
        from pivoicectl import libpulse

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
            self._context = libpulse.Context("pivoicectl run")
            self._mic_stream = self._context.record(
                "pivoicectl mic", self.input_device, SAMPLE_RATE_HZ, self.block_bytes
            )
            self._speaker = self._context.playback(
                "pivoicectl speaker",
                self.output_device,
                SAMPLE_RATE_HZ,
                int(SERVER_BUFFER_S * SAMPLE_RATE_HZ) * BYTES_PER_SAMPLE,
            )
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
        self._mic_stream.on("overflow", self._on_overflow)
        self._speaker.on("underflow", self._on_underflow)
        self.input_latency_s = self._mic_stream.latency_s() or 0.0
        self.playback.set_listener(self._on_playback)
        self.playback.set_unheard_estimate(self._unheard_ms)
        self._schedule(loop, loop.time() + self.block_ms / 1000)

    def stop(self) -> None:
        """Stop the tick, let the speaker's lead play out, disconnect (idempotent)."""
        self._mic = None
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
                time.sleep(min(0.3, self._held_s(time.monotonic()) + self._device_s))
        context.close()
        self._mic_stream = self._speaker = None

    # --- the tick -------------------------------------------------------------------------

    def _schedule(self, loop: asyncio.AbstractEventLoop, at_s: float) -> None:
        """The next tick at `at_s` on the loop's clock: a plain timer callback (a task
        sleeping in a loop costs a future and two more callbacks per wakeup)."""
        self._timer = loop.call_at(at_s, self._on_timer, loop, at_s)
        self._timer_at_s = at_s
        self._loop = loop

    def _period_s(self, now: float) -> float:
        """`block_ms`, or `relaxed_ms` while the client allows it and nothing is to play."""
        if (
            self.relaxed_ms > self.block_ms
            and self._drain_s < now
            and not self.playback.queued_samples
        ):
            return self.relaxed_ms / 1000
        return self.block_ms / 1000

    def _on_timer(self, loop: asyncio.AbstractEventLoop, due_s: float) -> None:
        if self._context is None:
            return
        self._tick()
        period = self._period_s(time.monotonic())
        next_s = due_s + period
        if next_s < loop.time() - period:  # the loop stalled: start afresh, no catch-up
            next_s = loop.time()
        self._schedule(loop, next_s)

    def _tick(self) -> None:
        """Top up the speaker, then one pump sends that and reads what the server sent;
        then hand over the mic blocks."""
        context = self._context
        if context is None:
            return
        now = time.monotonic()
        self._top_up(now)
        if self._drain_s > now - 0.1 and now >= self._next_timing_s:
            # Audio is out: fresh server indices for the top-ups (not every tick; each
            # request is a round trip through the server).
            self._speaker.request_timing()
            self._next_timing_s = now + TIMING_EVERY_S
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
                self._mic(block)

    def _lost(self, why: str) -> None:
        """The audio server went away: say so once and stop the audio."""
        self.error = f"audio server connection lost ({why}); audio stopped"
        print(self.error, file=sys.stderr)
        self._context = None
        self._mic = None

    def _held_s(self, now: float) -> float:
        """Audio the server holds for the speaker that a flush now would drop."""
        return max(0.0, self._drain_s - now)

    def _top_up(self, now: float) -> None:
        """Write queued audio until the server holds `lead_s` ahead of the speaker."""
        queued = self.playback.queued_samples
        if not queued:
            return
        speaker = self._speaker
        device, reported = speaker.playback_timing(max_age_s=TIMING_EVERY_S + 0.05)
        self._device_s = device
        held = self._held_s(now)
        if reported is not None and reported > held + SERVER_LAG_S:
            held = reported  # the server played less than the count says: it stalled
            self.server_lags += 1
            self._drain_s = now + held
            self.sounding_until_s = self._drain_s + device
        if held <= 0.0:
            self.output_starts += 1  # the first sample is heard after the device's part
        need = math.ceil((self.lead_s - held) * SAMPLE_RATE_HZ)
        if need <= 0:
            return
        pcm, accounting = self.playback.pull(min(need, queued))
        try:
            speaker.write(pcm)
        except Exception as exc:  # a dropped server is reported by the next tick
            self.error = str(exc)
            return
        duration = len(pcm) / BYTES_PER_SAMPLE / SAMPLE_RATE_HZ
        self._drain_s = now + held + duration
        self.sounding_until_s = self._drain_s + device
        self.output_latency_s = held + device + duration
        self._report_written(now, held + device, pcm, accounting.spans)

    def _report_written(self, now: float, latency_s: float, pcm: bytes, spans: Any) -> None:
        """One PlayReport per block of what was written, timed when each is heard, so the
        echo guard and onset mute see the same block-by-block timeline as with
        PortAudio."""
        step = self.block_bytes
        remaining = list(spans)
        for offset in range(0, len(pcm), step):
            block = pcm[offset : offset + step]
            n = len(block) // BYTES_PER_SAMPLE
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
            audible = now + latency_s + offset / BYTES_PER_SAMPLE / SAMPLE_RATE_HZ
            self.reports.append(
                PlayReport(
                    callback_s=now,
                    audible_s=audible,
                    spans=tuple(taken),
                    silence_samples=0,
                    underflows=self.underflows,
                    overflows=self.overflows,
                    level_dbfs=pcm_level_dbfs(block),
                )
            )

    # --- events from libpulse and the queue (event loop thread) ---------------------------

    def _on_playback(self, what: str) -> None:
        if self._context is None:
            return
        now = time.monotonic()
        if what == "audio":
            self._top_up(now)
            loop, soon = self._loop, now + self.block_ms / 1000
            if loop is not None and self._timer is not None and self._timer_at_s > soon:
                self._timer.cancel()  # a slow tick: back to 20 ms before the lead runs out
                self._schedule(loop, soon)
        elif what == "flush":
            # Always flush, even when the count says the server is dry: a skipped flush
            # would let whatever it does hold play on.
            if self._held_s(now) > 0:
                self.output_aborts += 1
            self._speaker.flush()
            self._drain_s = self.sounding_until_s = now
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
        self.unheard_at_abort_ms = round(self._held_s(time.monotonic()) * 1000)
        return self.unheard_at_abort_ms

    def _on_underflow(self) -> None:
        # The buffer running dry at the end of an answer is normal; with audio still
        # queued here it is a real underrun (a late tick). The notice comes late, maybe
        # after the next write, so it says nothing about what the server holds now.
        if self.playback.queued_samples:
            self.underflows += 1

    def _on_overflow(self) -> None:
        self.overflows += 1
