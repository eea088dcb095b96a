"""The stand-in's "model", the repeater: it answers with the user's own utterance.

Repeating the user's audio makes every answer's content known to a test (the bytes it
sent), its length controllable (how long the user spoke) and its arrival checkable
sample by sample, which a synthetic voice would not give. With nothing to repeat it
answers with a short tone. Pure: no socket, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pivoicectl.realtime.protocol.events import BYTES_PER_SAMPLE, SAMPLE_RATE_HZ, ms_to_samples
from pivoicectl.standin.settings import LocalServerSettings

AUDIO_TOKENS_PER_S = 10
"""Made-up but plausible: audio tokens per second of audio, each way."""
TOOL_OUTPUT_CHARS = 200
"""How much of a tool's output the transcript of the answer after it repeats."""


@dataclass(frozen=True)
class Answer:
    """What one response says: its audio, its transcript and the input it answers."""

    pcm: bytes
    transcript: str
    input_audio_samples: int


def answer(utterance: bytes, input_audio_samples: int, settings: LocalServerSettings) -> Answer:
    """The answer to a committed turn: `utterance` itself, or a tone when it is empty."""
    if utterance:
        seconds = len(utterance) / BYTES_PER_SAMPLE / SAMPLE_RATE_HZ
        return Answer(utterance, f"(repeater) {seconds:.1f} s of audio", input_audio_samples)
    pcm = tone_pcm(settings.reply_tone_ms, settings.reply_tone_hz)
    return Answer(pcm, "(repeater) nothing to repeat: a tone", 0)


def answer_after_tool(
    name: str,
    output: str,
    utterance: bytes,
    input_audio_samples: int,
    settings: LocalServerSettings,
) -> Answer:
    """The answer once tool `name` returned `output`: the question's audio repeated, the
    transcript first saying what the tool said, so a test sees the output came back."""
    plain = answer(utterance, input_audio_samples, settings)
    said = shorten(output, TOOL_OUTPUT_CHARS)
    rest = plain.transcript.removeprefix("(repeater) ")
    return Answer(
        plain.pcm, f"(repeater) tool {name} said: {said}; then {rest}", plain.input_audio_samples
    )


def shorten(text: str, limit: int) -> str:
    """`text` on one line (control characters and runs of blanks become one space), cut
    to `limit` characters with an ellipsis."""
    line = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return line if len(line) <= limit else line[: limit - 1] + "\u2026"


def heard_transcript(user_audio_samples: int) -> str:
    """The input transcription of a user turn: how much audio was heard."""
    return f"(repeater heard {user_audio_samples / SAMPLE_RATE_HZ:.1f} s of audio)"


@dataclass(frozen=True)
class TokenUsage:
    """Token counts of one response, for `response.done`'s `usage`."""

    input_audio: int
    output_audio: int
    output_text: int


def usage(input_audio_samples: int, output_audio_samples: int, transcript: str) -> TokenUsage:
    """Token counts for a response that heard and said this much."""
    return TokenUsage(
        input_audio=math.ceil(input_audio_samples / SAMPLE_RATE_HZ * AUDIO_TOKENS_PER_S),
        output_audio=math.ceil(output_audio_samples / SAMPLE_RATE_HZ * AUDIO_TOKENS_PER_S),
        output_text=max(1, len(transcript) // 4),
    )


def tone_pcm(duration_ms: int, freq_hz: float) -> bytes:
    """A -20 dBFS sine with 10 ms fades: the answer when there is nothing to repeat."""
    n = ms_to_samples(duration_ms)
    t = np.arange(n) / SAMPLE_RATE_HZ
    tone = 0.1 * np.sin(2 * np.pi * freq_hz * t)
    fade = min(n // 2, ms_to_samples(10))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        tone[:fade] *= ramp
        tone[n - fade :] *= ramp[::-1]
    return (tone * 32767).astype("<i2").tobytes()
