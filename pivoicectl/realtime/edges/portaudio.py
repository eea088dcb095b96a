"""The sound-device edge of `run`: microphone blocks out, speaker blocks in.

Two PortAudio streams at 24 kHz mono int16 (the wire format, so no resampling in
Python; the audio server converts). Their callbacks run on PortAudio's thread and
never wait on the network or the event loop:

* input: copies the block and schedules it on the loop (`call_soon_threadsafe`, a
  non-blocking self-pipe write);
* output: pulls exactly one block from the `PlaybackQueue` (one short lock) and appends
  a `PlayReport` to a deque that the loop drains on its own schedule.

The output stream runs only while there is something to play, and a flush (barge-in)
aborts it, which drops what the device and the audio server still hold. Measured in
the simulated room (PortAudio's ALSA `pulse` device): every callback costs about 90 us
of CPU whatever it does, so an always-open 10 ms output stream alone used 0.8 % of a
core; and with the stream kept open, the speaker could only fall silent after the
device buffer (20 ms and more) had played out. Aborting takes under 1 ms; starting a
stream takes 15-20 ms, which is what the first answer's audio waits for.

Starting, stopping and aborting can block, so they run on one small control thread,
never on the event loop or in a callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading
import time
from typing import Any

from pivoicectl.dsp.levels import FLOOR_DBFS, pcm16_dbfs
from pivoicectl.errors import UserError
from pivoicectl.realtime.edges.interfaces import EdgeCounters, MicSink
from pivoicectl.realtime.protocol.events import SAMPLE_RATE_HZ, ms_to_samples
from pivoicectl.realtime.session.playback import PlaybackQueue, PlayReport
from pivoicectl.system.audio_server import server_has_node

_PREFERRED = ("pulse", "pipewire", "default")
"""Devices routed through the audio server (so through source_ec), in order."""

_PULSE_ENV = {"input": "PULSE_SOURCE", "output": "PULSE_SINK"}
"""How PortAudio's ALSA `pulse` device is pointed at one source or sink: libpulse
takes its default device from these variables."""


def resolve_device(sd: Any, wanted: str | None, kind: str) -> int | str | None:
    """A sounddevice device for `wanted`, or the first server-routed device, or
    PortAudio's default.

    `wanted` is a PortAudio index or name (exact, then partial), or the name of a
    source/sink of the audio server (what `pivoicectl devices` lists under the server):
    that one is reached through PortAudio's `pulse` device with PULSE_SOURCE/PULSE_SINK
    set, which is how a user picks, say, the raw mic instead of source_ec.
    """
    devices = list(sd.query_devices())
    key = f"max_{kind}_channels"
    usable = [d for d in devices if d[key] > 0]
    pulse = next((d for d in usable if d["name"].split(" ")[0] == "pulse"), None)
    if wanted:
        if wanted.isdigit():
            return int(wanted)
        for d in usable:
            if d["name"] == wanted or d["name"].split(" ")[0] == wanted:
                return int(d["index"])
        if pulse is not None and server_has_node(wanted, kind):
            os.environ[_PULSE_ENV[kind]] = wanted
            return int(pulse["index"])
        for d in usable:
            if wanted.lower() in d["name"].lower():
                return int(d["index"])
        names = ", ".join(d["name"] for d in usable) or "none"
        raise UserError(
            f"no {kind} device matches {wanted!r}",
            hint=f"PortAudio has: {names}; or name a "
            f"{'source' if kind == 'input' else 'sink'} of the audio server "
            "(see `pivoicectl devices`)",
        )
    for name in _PREFERRED:
        for d in usable:
            if d["name"].split(" ")[0] == name:
                return int(d["index"])
    return None


class SoundDeviceAudio(EdgeCounters):
    """Full-duplex audio through sounddevice, feeding and fed by the conversation."""

    def __init__(
        self,
        playback: PlaybackQueue,
        input_device: str | None = None,
        output_device: str | None = None,
        input_block_ms: int = 20,
        output_block_ms: int = 20,
        keep_output_open: bool = False,
        idle_stop_s: float = 0.5,
    ) -> None:
        self.playback = playback
        self.input_device = input_device
        self.output_device = output_device
        self.input_block = ms_to_samples(input_block_ms)
        self.output_block = ms_to_samples(output_block_ms)
        self.keep_output_open = keep_output_open
        """Never stop the output stream when idle (for devices that click on start)."""
        self.idle_stop_s = idle_stop_s
        """Stop the output stream after this long without assistant audio."""
        super().__init__()
        self._out: Any = None
        self._in: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mic: MicSink | None = None
        self._commands: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._control: threading.Thread | None = None
        self._last_audio_s = 0.0

    # --- callbacks (PortAudio thread) ----------------------------------------------------

    def _on_input(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        if status.input_overflow:
            self.overflows += 1
        loop, mic = self._loop, self._mic
        if loop is None or mic is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(mic, bytes(indata), 0.0)

    def _on_output(self, outdata: Any, frames: int, time_info: Any, status: Any) -> None:
        now = time.monotonic()
        if status.output_underflow:
            self.underflows += 1
        pcm, accounting = self.playback.pull(frames)
        outdata[:] = pcm
        delay = time_info.outputBufferDacTime - time_info.currentTime
        if not 0.0 <= delay < 2.0:  # some backends report 0 or garbage
            delay = self.output_latency_s
        if accounting.spans:
            self._last_audio_s = now
            self.sounding_until_s = now + delay + frames / SAMPLE_RATE_HZ
            level = pcm16_dbfs(pcm)
        else:
            level = FLOOR_DBFS
        self._report(now, now + delay, accounting.spans, accounting.silence_samples, level)

    def _report(
        self, now: float, audible: float, spans: Any, silence_samples: int, level: float
    ) -> None:
        self.reports.append(
            PlayReport(
                callback_s=now,
                audible_s=audible,
                spans=spans,
                silence_samples=silence_samples,
                underflows=self.underflows,
                overflows=self.overflows,
                level_dbfs=level,
            )
        )

    # --- output stream control (control thread) -------------------------------------------

    def _on_playback(self, what: str) -> None:
        """PlaybackQueue listener (loop thread): hand the event to the control thread."""
        self._commands.put(what)

    def _run_control(self) -> None:
        out = self._out
        while True:
            # Polls only while the stream runs (to notice the end of an answer); a
            # stopped stream waits for the next command without waking up.
            timeout = 0.1 if out.active and not self.keep_output_open else None
            try:
                command = self._commands.get(timeout=timeout)
            except queue.Empty:
                command = "tick"
            if command == "quit":
                return
            try:
                if command == "flush":
                    if out.active:
                        out.abort()
                        self.output_aborts += 1
                    # The speaker is silent from here on: a report with no audio in it
                    # tells the conversation so (see Conversation.played).
                    now = time.monotonic()
                    self.sounding_until_s = now
                    self._report(now, now, (), 0, FLOOR_DBFS)
                if not out.active and (self.keep_output_open or self.playback.queued_samples):
                    self._last_audio_s = time.monotonic()
                    out.start()
                    self.output_starts += 1
                elif (
                    out.active
                    and not self.keep_output_open
                    and not self.playback.queued_samples
                    and time.monotonic() - self._last_audio_s > self.idle_stop_s
                ):
                    out.stop()  # plays out what the device holds, then returns
            except Exception:  # a device that fails mid-run: keep serving the input
                self.underflows += 1

    # --- lifecycle (event loop thread) --------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, mic: MicSink) -> None:
        """Open both streams, start the input; device problems are a UserError."""
        from pivoicectl.system.portaudio import load_sounddevice

        sd = load_sounddevice()
        self._loop, self._mic = loop, mic
        in_dev = resolve_device(sd, self.input_device, "input")
        out_dev = resolve_device(sd, self.output_device, "output")
        try:
            wire = {"samplerate": SAMPLE_RATE_HZ, "channels": 1, "dtype": "int16"}
            self._out = sd.RawOutputStream(
                **wire,
                blocksize=self.output_block,
                latency="low",
                device=out_dev,
                callback=self._on_output,
            )
            self._in = sd.RawInputStream(
                **wire,
                blocksize=self.input_block,
                latency="low",
                device=in_dev,
                callback=self._on_input,
            )
            self.output_latency_s = float(self._out.latency)
            self.input_latency_s = float(self._in.latency)
            self._in.start()
        except sd.PortAudioError as exc:
            self.stop()
            raise UserError(
                f"cannot open the sound device: {exc}",
                hint="check `pivoicectl devices` and `pivoicectl doctor`",
            ) from exc
        # A barge-in aborts the stream, dropping what it still buffers: never heard. That
        # is the latency PortAudio reports plus about one block the audio server holds
        # (56-76 ms dropped at a reported 40 ms with 20 ms blocks, bench_playback.py).
        self.playback.set_device_latency_ms(self.unheard_at_abort_ms)
        self.playback.set_listener(self._on_playback)
        self._control = threading.Thread(
            target=self._run_control, name="pivoicectl-output", daemon=True
        )
        self._control.start()
        self._commands.put("tick")  # keep_output_open, or audio queued before start

    @property
    def unheard_at_abort_ms(self) -> int:
        """Estimated audio still buffered (so never heard) when the stream is aborted."""
        return round(self.output_latency_s * 1000 + self.output_block * 1000 / SAMPLE_RATE_HZ)

    def stop(self) -> None:
        """Stop the control thread, stop and close the streams (idempotent)."""
        self._mic = None
        self.playback.set_listener(None)
        control, self._control = self._control, None
        if control is not None:
            self._commands.put("quit")
            control.join(5.0)
        streams = [s for s in (self._out, self._in) if s is not None]
        self._out = self._in = None
        for stream in streams:
            try:
                stream.stop()  # the output plays out the end of the last answer
                stream.close()
            except Exception:  # closing a broken device must not hide the real error
                pass
