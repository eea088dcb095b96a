"""Utterance cutting and self-trigger detection on synthetic signals."""

from __future__ import annotations

import numpy as np

from pivoicectl.commands.parrot import Capture, heard_own_fraction
from pivoicectl.dsp.loopback import UtteranceDetector, check_self_trigger
from pivoicectl.dsp.signals import speech_like

RATE = 16000


def _int16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)


def test_detector_cuts_one_utterance_with_preroll():
    rng = np.random.default_rng(0)
    room = rng.standard_normal(RATE) * 1e-3
    talk = rng.standard_normal(RATE) * 0.05
    x = _int16(np.concatenate([room, talk, room]))
    det = UtteranceDetector(RATE)
    found = [u for i in range(0, x.size - 319, 320) if (u := det.feed(x[i : i + 320]))]
    assert len(found) == 1
    u = found[0]
    assert abs(u.speech_start_s - 1.0) <= 0.04
    assert abs(u.start_s - 0.8) <= 0.04  # 200 ms pre-roll
    assert 2.0 <= u.end_s <= 2.3


def test_a_click_is_not_an_utterance():
    x = np.zeros(RATE, dtype=np.int16)
    x[8000:8160] = 10000
    det = UtteranceDetector(RATE)
    assert not [i for i in range(0, x.size, 320) if det.feed(x[i : i + 320])]


def test_self_trigger_needs_timing_and_correlation():
    played = speech_like(2.0, RATE, -20.0)
    echo = np.concatenate([np.zeros(800), 0.25 * played])[: played.size]
    other = np.random.default_rng(5).standard_normal(played.size) * 0.1  # another voice
    yes = check_self_trigger(echo, 1.05, played, 1.0, RATE)
    assert yes.self_trigger and yes.correlates and yes.during_playback
    late = check_self_trigger(echo, 5.0, played, 1.0, RATE, grace_s=0.5)
    assert late.correlates and not late.self_trigger
    person = check_self_trigger(other, 1.5, played, 1.0, RATE)
    assert person.during_playback and not person.correlates and not person.self_trigger


def test_heard_own_fraction_takes_the_worst_round():
    def cap(rnd, dur, st=True):
        return Capture(0, dur, -30, st, True, st, False, rnd)

    caps = [cap(1, 0.4), cap(2, 1.0), cap(2, 1.5), cap(2, 9.0, st=False)]
    assert heard_own_fraction(caps, 4.0) == 2.5 / 4.0
    assert heard_own_fraction([], 4.0) == 0.0
