"""The waiting loop of `system.audio_ready` on a fake clock: what it says, when it gives up."""

from __future__ import annotations

import pytest

from pivoicectl.errors import UserError
from pivoicectl.system.audio_ready import POLL_S, AudioNeeds, wait_for_audio


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_each_new_thing_is_said_once_and_the_wait_is_measured():
    t = FakeTime()
    answers = iter(["the audio server"] * 8 + ["the echo canceller (source_ec)"] * 4 + [None])
    seen: list[str] = []
    waited = wait_for_audio(
        AudioNeeds(), 60.0, seen.append, lambda _n: next(answers), t.clock, t.sleep
    )
    assert seen == ["waiting for the audio server", "waiting for the echo canceller (source_ec)"]
    assert waited == pytest.approx(12 * POLL_S)


def test_it_gives_up_at_the_deadline_with_exit_1():
    t = FakeTime()
    with pytest.raises(UserError, match=r"the audio server was not there within 3 s") as e:
        wait_for_audio(
            AudioNeeds(), 3.0, lambda _s: None, lambda _n: "the audio server", t.clock, t.sleep
        )
    assert e.value.exit_code == 1 and t.now - 100.0 == pytest.approx(3.0, abs=POLL_S)
