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
never on the event loop or in a callback. That thread also notices a lost device or
audio server and brings the streams back. Measured in the room: when PipeWire restarts,
PortAudio's ALSA host ends both streams within milliseconds (`active` turns false and
the finished callback runs); closing them and opening new ones on the same device works
once the server is back, with no PortAudio re-initialisation.
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
from pivoicectl.realtime.edges.interfaces import REOPEN_DELAYS_S, EdgeCounters, MicSink
from pivoicectl.realtime.protocol.events import SAMPLE_RATE_HZ, ms_to_samples
from pivoicectl.realtime.session.playback import PlaybackQueue, PlayReport
from pivoicectl.system.audio_ready import AudioNeeds, missing
from pivoicectl.system.audio_server import server_answers, server_has_node
from pivoicectl.system.portaudio import SERVER_ROUTED

INPUT_STALL_S = 2.0
"""No mic block for this long while the input stream should run means the device or the
audio server is gone even though PortAudio did not end the stream (blocks come 50 times a
second). Only a backstop: a restarted audio server ends the streams at once."""

WATCH_EVERY_S = 0.5
"""How often the control thread looks for a stalled input while nothing else wakes it."""

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
    for name in SERVER_ROUTED:
        for d in usable:
            if d["name"].split(" ")[0] == name:
                return int(d["index"])
    return None


class SoundDeviceAudio(EdgeCounters):
    """Full-duplex audio through sounddevice, feeding and fed by the conversation."""

    reopen_delays_s: tuple[float, ...] = REOPEN_DELAYS_S
    """Waits between attempts to reopen the streams (an attribute so a test can shorten
    them)."""

    def __init__(
        self,
        playback: PlaybackQueue,
        input_device: str | None = None,
        output_device: str | None = None,
        input_block_ms: int = 20,
        output_block_ms: int = 20,
        keep_output_open: bool = False,
        idle_stop_s: float = 0.5,
        audio_timeout_s: float = 60.0,
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
        self.audio_timeout_s = audio_timeout_s
        """Give up ("gone") when the device has not come back within this long."""
        self.error: str | None = None
        """Why the streams are down, while they are."""
        super().__init__()
        self._sd: Any = None
        self._devices: dict[str, int | str | None] = {}
        self._out: Any = None
        self._in: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mic: MicSink | None = None
        self._commands: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._control: threading.Thread | None = None
        self._last_audio_s = 0.0
        # Recovery state, owned by the control thread once it runs.
        self._generation = 0
        """Counts the stream pairs opened, so a late "ended" from a closed pair is ignored."""
        self._last_input_s = 0.0
        self._lost_s: float | None = None
        self._gone = False
        self._attempts = 0
        self._next_attempt_s = 0.0
        self._reopen_needs: AudioNeeds | None = None
        """What must be there before a reopen when the streams go through the audio server
        (None: they do not): a stream on a missing node quietly goes to the default, and
        right after a restart the default is the raw mic, not source_ec."""

    # --- callbacks (PortAudio thread) ----------------------------------------------------

    def _on_input(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        self._last_input_s = time.monotonic()
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

    # --- streams ----------------------------------------------------------------------

    def _open_streams(self) -> None:
        """Open both streams on the resolved devices and start the input; raises
        sounddevice's PortAudioError, leaving no stream open."""
        sd = self._sd
        generation = self._generation + 1
        wire = {"samplerate": SAMPLE_RATE_HZ, "channels": 1, "dtype": "int16"}
        try:
            self._out = sd.RawOutputStream(
                **wire,
                blocksize=self.output_block,
                latency="low",
                device=self._devices["output"],
                callback=self._on_output,
            )
            self._in = sd.RawInputStream(
                **wire,
                blocksize=self.input_block,
                latency="low",
                device=self._devices["input"],
                callback=self._on_input,
                # PortAudio calls this when the stream ends by itself (the device or the
                # audio server went away) as well as when it is stopped or closed.
                finished_callback=lambda: self._commands.put(f"ended {generation}"),
            )
            self.output_latency_s = float(self._out.latency)
            self.input_latency_s = float(self._in.latency)
            self._generation = generation
            self._last_input_s = time.monotonic()
            self._in.start()
        except sd.PortAudioError:
            self._close_streams()
            raise

    def _close_streams(self, play_out: bool = False) -> None:
        """Close both streams (idempotent); a broken device's errors are not ours to raise."""
        self._generation += 1
        streams = [s for s in (self._out, self._in) if s is not None]
        self._out = self._in = None
        for stream in streams:
            try:
                if play_out:
                    stream.stop()  # the output plays out the end of the last answer
                stream.close()
            except Exception:  # closing a broken device must not hide why it broke
                pass

    def _note_reopen_needs(self) -> None:
        """For each stream that goes through the audio server: the node
        PULSE_SOURCE/PULSE_SINK names, else the server's default (so the session manager)."""
        sd = self._sd
        nodes: dict[str, str | None] = {"input": None, "output": None}
        routed = defaults = False
        for kind, device in self._devices.items():
            info = (
                sd.query_devices(device, kind)
                if device is not None
                else sd.query_devices(kind=kind)
            )
            if str(info["name"]).split(" ")[0] not in SERVER_ROUTED:
                continue
            routed = True
            nodes[kind] = os.environ.get(_PULSE_ENV[kind]) or None
            defaults = defaults or nodes[kind] is None
        if routed:
            self._reopen_needs = AudioNeeds(
                nodes["input"], nodes["output"], session_manager=defaults
            )

    def _devices_ready(self) -> bool:
        return self._reopen_needs is None or missing(self._reopen_needs) is None

    # --- control thread -------------------------------------------------------------------

    def _on_playback(self, what: str) -> None:
        """PlaybackQueue listener (loop thread): hand the event to the control thread."""
        self._commands.put(what)

    def _run_control(self) -> None:
        while True:
            try:
                command = self._commands.get(timeout=self._control_timeout())
            except queue.Empty:
                command = "tick"
            if command == "quit":
                return
            if self._lost_s is not None or self._gone:
                if command == "flush":
                    self._fall_silent()
                self._maybe_reopen()
                continue
            why = self._why_lost(command)
            if why:
                self._lose(why)
                continue
            try:
                self._control_output(command)
            except self._sd.PortAudioError as exc:
                self._lose(f"the output stream failed: {exc}")

    def _control_timeout(self) -> float | None:
        if self._gone:
            return None
        if self._lost_s is not None:
            return max(0.0, self._next_attempt_s - time.monotonic())
        if self._out.active and not self.keep_output_open:
            return 0.1  # to notice the end of an answer
        return WATCH_EVERY_S  # to notice a stalled input

    def _why_lost(self, command: str) -> str | None:
        if command.startswith("ended ") and int(command.split()[1]) != self._generation:
            return None  # a stream closed earlier
        if not self._in.active:
            return "the input stream ended"
        if time.monotonic() - self._last_input_s > INPUT_STALL_S:
            return f"no mic audio for {INPUT_STALL_S:g} s"
        return None

    def _control_output(self, command: str) -> None:
        out = self._out
        if command == "flush":
            if out.active:
                out.abort()
                self.output_aborts += 1
            self._fall_silent()
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

    def _fall_silent(self) -> None:
        """The speaker is silent from now on: a report with no audio in it tells the
        conversation so (see Conversation.played)."""
        now = time.monotonic()
        self.sounding_until_s = now
        self._report(now, now, (), 0, FLOOR_DBFS)

    def _lose(self, why: str) -> None:
        """The device or the audio server went away: close the streams, tell the client,
        and try to reopen them until they are back or `audio_timeout_s` has passed."""
        self.error = f"sound device lost ({why})"
        self._close_streams()
        self._fall_silent()
        now = time.monotonic()
        self._lost_s = now
        self._attempts = 0
        self._next_attempt_s = now + self.reopen_delays_s[0]
        self._tell("lost", self.error)

    def _maybe_reopen(self) -> None:
        now = time.monotonic()
        if self._gone or self._lost_s is None or now < self._next_attempt_s:
            return
        away_s = now - self._lost_s
        if away_s > self.audio_timeout_s:
            self._gone = True
            self._lost_s = None
            self._tell(
                "gone",
                f"the sound device did not come back within {self.audio_timeout_s:g} s "
                f"({self.error})",
            )
            return
        if self._devices_ready():
            try:
                self._open_streams()
            except self._sd.PortAudioError:
                pass
            else:
                self._lost_s = None
                self.error = None
                self._tell("back", f"sound device back after {away_s:.1f} s")
                self._commands.put("tick")  # start the output if an answer is queued
                return
        self._attempts += 1
        delays = self.reopen_delays_s
        self._next_attempt_s = time.monotonic() + delays[min(self._attempts, len(delays) - 1)]

    def _tell(self, state: str, text: str) -> None:
        """Hand a state change to the event loop (from the control thread)."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self._tell_listener, state, text)

    def _tell_listener(self, state: str, text: str) -> None:
        if self.state_listener is not None and self._mic is not None:
            self.state_listener(state, text)

    # --- lifecycle (event loop thread) --------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop, mic: MicSink) -> None:
        """Open both streams, start the input; device problems are a UserError."""
        from pivoicectl.system.portaudio import load_sounddevice

        self._sd = sd = load_sounddevice()
        self._loop, self._mic = loop, mic
        self._devices = {
            "input": resolve_device(sd, self.input_device, "input"),
            "output": resolve_device(sd, self.output_device, "output"),
        }
        try:
            self._open_streams()
            if server_answers():
                self._note_reopen_needs()
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
        self._close_streams(play_out=True)
