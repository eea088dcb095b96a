"""The few libpulse calls `run` streams audio with, through ctypes.

Why not PortAudio here: Debian's PortAudio reaches the audio server through ALSA's
`pulse` plugin, so every 20 ms block wakes two threads (the plugin's mainloop and
PortAudio's) and a Python callback, and hands the block to the event loop, a third
wakeup. On the 2-core VM the benchmarks run on, a bare 20 ms PortAudio mic alone used
0.74-0.84 % of a core and an output stream 0.5 %, more than the 1 % budget for
the whole client. A non-threaded `pa_mainloop` iterated from the event loop's own
20 ms tick does the same work in one wakeup: 0.36-0.43 % of a core for mic and speaker
together (measured the same way, same room).

pulsectl (already a dependency) loads the same library for `setup`; it does not bind the
stream calls, so they are declared here. Only what `pulse_edge` uses is bound.
Everything runs on one thread: a `pa_mainloop` is not thread-safe and is only touched
from the thread that created it.
"""

from __future__ import annotations

import ctypes
import time
from ctypes import (
    POINTER,
    byref,
    c_char_p,
    c_int,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Any

from pivoicectl.errors import UserError

SAMPLE_S16LE = 3
CONTEXT_READY, CONTEXT_FAILED, CONTEXT_TERMINATED = 4, 5, 6
STREAM_READY, STREAM_FAILED, STREAM_TERMINATED = 2, 3, 4
FLAG_INTERPOLATE_TIMING = 0x0002
FLAG_AUTO_TIMING_UPDATE = 0x0008
FLAG_ADJUST_LATENCY = 0x2000
SEEK_RELATIVE = 0
DEFAULT = 0xFFFFFFFF
"""`(uint32_t) -1` in a buffer attribute: let the server choose."""


class SampleSpec(ctypes.Structure):
    _fields_ = [("format", c_int), ("rate", c_uint32), ("channels", c_uint8)]


class BufferAttr(ctypes.Structure):
    _fields_ = [
        ("maxlength", c_uint32),
        ("tlength", c_uint32),
        ("prebuf", c_uint32),
        ("minreq", c_uint32),
        ("fragsize", c_uint32),
    ]


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class TimingInfo(ctypes.Structure):
    _fields_ = [
        ("timestamp", _Timeval),
        ("synchronized_clocks", c_int),
        ("sink_usec", c_uint64),
        ("source_usec", c_uint64),
        ("transport_usec", c_uint64),
        ("playing", c_int),
        ("write_index_corrupt", c_int),
        ("write_index", c_int64),
        ("read_index_corrupt", c_int),
        ("read_index", c_int64),
        ("configured_sink_usec", c_uint64),
        ("configured_source_usec", c_uint64),
        ("since_underrun", c_int64),
    ]


NotifyCallback = ctypes.CFUNCTYPE(None, c_void_p, c_void_p)
"""`pa_stream_notify_cb_t`: (stream, userdata)."""

_PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "pa_mainloop_new": (c_void_p, []),
    "pa_mainloop_free": (None, [c_void_p]),
    "pa_mainloop_get_api": (c_void_p, [c_void_p]),
    "pa_mainloop_iterate": (c_int, [c_void_p, c_int, POINTER(c_int)]),
    "pa_context_new": (c_void_p, [c_void_p, c_char_p]),
    "pa_context_connect": (c_int, [c_void_p, c_char_p, c_int, c_void_p]),
    "pa_context_disconnect": (None, [c_void_p]),
    "pa_context_unref": (None, [c_void_p]),
    "pa_context_get_state": (c_int, [c_void_p]),
    "pa_context_errno": (c_int, [c_void_p]),
    "pa_strerror": (c_char_p, [c_int]),
    "pa_stream_new": (c_void_p, [c_void_p, c_char_p, POINTER(SampleSpec), c_void_p]),
    "pa_stream_connect_record": (c_int, [c_void_p, c_char_p, POINTER(BufferAttr), c_int]),
    "pa_stream_connect_playback": (
        c_int,
        [c_void_p, c_char_p, POINTER(BufferAttr), c_int, c_void_p, c_void_p],
    ),
    "pa_stream_disconnect": (c_int, [c_void_p]),
    "pa_stream_unref": (None, [c_void_p]),
    "pa_stream_get_state": (c_int, [c_void_p]),
    "pa_stream_peek": (c_int, [c_void_p, POINTER(c_void_p), POINTER(c_size_t)]),
    "pa_stream_drop": (c_int, [c_void_p]),
    "pa_stream_write": (c_int, [c_void_p, c_char_p, c_size_t, c_void_p, c_int64, c_int]),
    "pa_stream_flush": (c_void_p, [c_void_p, c_void_p, c_void_p]),
    "pa_stream_get_latency": (c_int, [c_void_p, POINTER(c_uint64), POINTER(c_int)]),
    "pa_stream_get_timing_info": (POINTER(TimingInfo), [c_void_p]),
    "pa_stream_update_timing_info": (c_void_p, [c_void_p, c_void_p, c_void_p]),
    "pa_stream_set_underflow_callback": (None, [c_void_p, NotifyCallback, c_void_p]),
    "pa_stream_set_overflow_callback": (None, [c_void_p, NotifyCallback, c_void_p]),
    "pa_operation_unref": (None, [c_void_p]),
}

_lib: Any = None


def load() -> Any:
    """libpulse with the prototypes above; a UserError when it is not installed."""
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL("libpulse.so.0")
        except OSError as exc:
            raise UserError(
                f"cannot load libpulse: {exc}",
                hint="apt install libpulse0, or use --audio-backend portaudio",
            ) from None
        for name, (restype, argtypes) in _PROTOTYPES.items():
            func = getattr(lib, name)
            func.restype, func.argtypes = restype, argtypes
        _lib = lib
    return _lib


class PulseError(Exception):
    """The audio server refused or dropped something; the message says what."""


class Context:
    """A connection to the audio server on a non-threaded mainloop.

    Nothing happens between `pump` calls: the owner drives it from its own loop, which
    is the point (no thread of its own, no wakeup of its own).
    """

    def __init__(self, client_name: str, timeout_s: float = 5.0) -> None:
        self.lib = load()
        self._mainloop = self.lib.pa_mainloop_new()
        self._context = self.lib.pa_context_new(
            self.lib.pa_mainloop_get_api(self._mainloop), client_name.encode()
        )
        self._streams: list[Stream] = []
        if self.lib.pa_context_connect(self._context, None, 0, None) < 0:
            message = self.error()
            self.close()
            raise PulseError(f"cannot connect to the audio server: {message}")
        try:
            self._wait(
                lambda: self.lib.pa_context_get_state(self._context),
                CONTEXT_READY,
                {CONTEXT_FAILED, CONTEXT_TERMINATED},
                timeout_s,
                "the audio server",
            )
        except PulseError:
            self.close()
            raise

    def error(self) -> str:
        return self.lib.pa_strerror(self.lib.pa_context_errno(self._context)).decode()

    def pump(self) -> None:
        """Dispatch everything pending (socket data, timers) without blocking."""
        while self.lib.pa_mainloop_iterate(self._mainloop, 0, None) > 0:
            pass

    @property
    def alive(self) -> bool:
        return self.lib.pa_context_get_state(self._context) == CONTEXT_READY

    def _wait(self, state: Any, ready: int, failed: set[int], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            self.pump()
            now = state()
            if now == ready:
                return
            if now in failed:
                raise PulseError(f"{what}: {self.error()}")
            if time.monotonic() > deadline:
                raise PulseError(f"{what}: no answer in {timeout_s:g} s")
            time.sleep(0.002)

    def record(self, name: str, device: str | None, rate: int, fragment_bytes: int) -> Stream:
        """A mono s16 record stream delivering about `fragment_bytes` at a time.

        No automatic timing updates: nothing reads its latency after the start
        (`measured_latency_s`), and each update is a round trip through the server that
        the next pump has to handle (10 fewer context switches a second in `run`)."""
        attr = BufferAttr(DEFAULT, DEFAULT, DEFAULT, DEFAULT, fragment_bytes)
        stream = Stream(self, name, rate)
        flags = FLAG_ADJUST_LATENCY | FLAG_INTERPOLATE_TIMING
        stream.connect(
            lambda s: self.lib.pa_stream_connect_record(
                s, device.encode() if device else None, byref(attr), flags
            ),
            device,
        )
        return stream

    def playback(self, name: str, device: str | None, rate: int, buffer_bytes: int) -> Stream:
        """A mono s16 playback stream whose server-side buffer can hold `buffer_bytes`.

        prebuf is 20 ms so a new answer starts as soon as its first write lands, and the
        stream waits (instead of running ahead in silence) when the buffer runs dry.
        """
        prebuf = rate * 2 // 50
        attr = BufferAttr(DEFAULT, buffer_bytes, prebuf, prebuf, DEFAULT)
        stream = Stream(self, name, rate)
        flags = FLAG_INTERPOLATE_TIMING | FLAG_AUTO_TIMING_UPDATE
        stream.connect(
            lambda s: self.lib.pa_stream_connect_playback(
                s, device.encode() if device else None, byref(attr), flags, None, None
            ),
            device,
        )
        return stream

    def close(self) -> None:
        """Disconnect every stream and the context, free the mainloop (idempotent)."""
        for stream in self._streams:
            stream.close()
        self._streams.clear()
        if self._context:
            self.lib.pa_context_disconnect(self._context)
            self.lib.pa_context_unref(self._context)
            self._context = None
        if self._mainloop:
            self.lib.pa_mainloop_free(self._mainloop)
            self._mainloop = None


class Stream:
    """One record or playback stream of a `Context` (same thread only)."""

    def __init__(self, context: Context, name: str, rate: int) -> None:
        self.context = context
        self.lib = context.lib
        spec = SampleSpec(SAMPLE_S16LE, rate, 1)
        self._stream = self.lib.pa_stream_new(context._context, name.encode(), byref(spec), None)
        if not self._stream:
            raise PulseError(f"cannot create stream {name!r}: {context.error()}")
        self._callbacks: list[Any] = []  # ctypes callbacks must outlive the stream
        self._ptr = c_void_p()
        self._size = c_size_t()
        self._usec = c_uint64()
        self._negative = c_int()
        self._bytes_per_s = rate * 2

    def connect(self, call: Any, device: str | None) -> None:
        what = f"{'device ' + repr(device) if device else 'the default device'}"
        if call(self._stream) < 0:
            raise PulseError(f"cannot open {what}: {self.context.error()}")
        self.context._streams.append(self)
        self.context._wait(
            lambda: self.lib.pa_stream_get_state(self._stream),
            STREAM_READY,
            {STREAM_FAILED, STREAM_TERMINATED},
            5.0,
            f"cannot open {what}",
        )

    def on(self, event: str, callback: Any) -> None:
        """Call `callback()` on "underflow" or "overflow" (from `Context.pump`)."""
        setter = getattr(self.lib, f"pa_stream_set_{event}_callback")
        native = NotifyCallback(lambda _stream, _userdata: callback())
        self._callbacks.append(native)
        setter(self._stream, native, None)

    def read_available(self) -> bytes:
        """Everything recorded since the last call (holes read as silence)."""
        parts = []
        while True:
            if self.lib.pa_stream_peek(self._stream, byref(self._ptr), byref(self._size)) < 0:
                break
            size = self._size.value
            if size == 0:
                break
            pointer = self._ptr.value
            parts.append(ctypes.string_at(pointer, size) if pointer else bytes(size))
            self.lib.pa_stream_drop(self._stream)
        return b"".join(parts)

    def write(self, data: bytes) -> None:
        if self.lib.pa_stream_write(self._stream, data, len(data), None, 0, SEEK_RELATIVE) < 0:
            raise PulseError(f"write failed: {self.context.error()}")

    def flush(self) -> None:
        """Drop what the server still holds for this stream (takes effect on `pump`)."""
        operation = self.lib.pa_stream_flush(self._stream, None, None)
        if operation:
            self.lib.pa_operation_unref(operation)

    def latency_s(self) -> float | None:
        """For playback: how long until a sample written now is heard; for record: how
        old the oldest unread sample is. None before the first timing update."""
        if self.lib.pa_stream_get_latency(self._stream, byref(self._usec), byref(self._negative)):
            return None
        return 0.0 if self._negative.value else self._usec.value / 1e6

    def measured_latency_s(self, timeout_s: float = 0.5) -> float | None:
        """`latency_s` after a fresh timing reply (for a stream without automatic
        updates); None if none came within `timeout_s`."""
        self.request_timing()
        deadline = time.monotonic() + timeout_s
        while (latency := self.latency_s()) is None and time.monotonic() < deadline:
            time.sleep(0.002)
            self.context.pump()
        return latency

    def request_timing(self) -> None:
        """Ask the server for fresh read/write indices (the reply lands on a `pump`)."""
        operation = self.lib.pa_stream_update_timing_info(self._stream, None, None)
        if operation:
            self.lib.pa_operation_unref(operation)

    def playback_timing(self, max_age_s: float) -> tuple[float, float | None]:
        """From the last timing reply (one read of it per top-up): the device's part of
        the latency (what plays out even after a flush), and the audio the server held
        then less what it has played since. The second is None unless the reply is
        younger than `max_age_s` and says the stream was playing (a stopped stream may
        have started since).

        Why not `latency_s`: between replies libpulse interpolates as if playback never
        paused and keeps its clock from running backwards, so after the buffer ran dry
        its latency stays short by the length of the gap (0 ms reported with 400 ms
        still buffered was seen). This uses the reply alone.
        """
        info = self.lib.pa_stream_get_timing_info(self._stream)
        if not info:
            return 0.0, None
        t = info.contents
        device = t.sink_usec / 1e6
        if t.write_index_corrupt or t.read_index_corrupt or not t.playing:
            return device, None
        age = time.time() - (t.timestamp.tv_sec + t.timestamp.tv_usec / 1e6)
        if not 0.0 <= age < max_age_s:
            return device, None
        return device, max(0.0, (t.write_index - t.read_index) / self._bytes_per_s - age)

    def close(self) -> None:
        if self._stream:
            self.lib.pa_stream_disconnect(self._stream)
            self.lib.pa_stream_unref(self._stream)
            self._stream = None
