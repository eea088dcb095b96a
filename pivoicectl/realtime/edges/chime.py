"""The start-up chime `run` plays before the first turn."""

from __future__ import annotations

from pivoicectl.realtime.protocol.events import ms_to_samples

CHIME_ITEM_ID = "pv_ready_chime"
"""Playback item id of the start-up chime (no server item; never truncated)."""


def ready_chime_pcm(duration_ms: int = 500, level_dbfs: float = -30.0, seed: int = 7) -> bytes:
    """A soft "ready" whoosh: smoothed noise under a raised-cosine envelope, PCM16 24 kHz.

    Why noise: the echo canceller has to hear broadband sound from the speaker before it
    can cancel it; in the simulated room, a freshly started canceller let the onset of
    the assistant's first answer through at about -45 dBFS, enough for the service's VAD
    to take the assistant's own voice for a barge-in. Half a second of this before the
    first turn trains it; users hear a short "ready" sound.
    """
    import numpy as np

    n = ms_to_samples(duration_ms)
    rng = np.random.default_rng(seed)
    noise = np.convolve(rng.standard_normal(n + 3), np.ones(4) / 4, mode="valid")[:n]
    envelope = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / max(1, n - 1))
    wave = noise * envelope
    rms = float(np.sqrt(np.mean(wave**2))) or 1.0
    wave *= 10 ** (level_dbfs / 20) / rms
    return (np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes()
