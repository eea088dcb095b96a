"""The space bar's hold/tap timing (`KeyHoldTracker`) on a simulated clock: timestamps in,
press/release out, with `expire` called at each deadline the way KeyButton's timer does."""

from __future__ import annotations

import itertools
import random

import pytest

from pivoicectl.realtime.edges.ptt_key import KeyHoldTracker, KeyTiming

DEFAULT = KeyTiming()


def play(
    spaces: list[float], until_s: float, tracker: KeyHoldTracker | None = None
) -> tuple[list[tuple[float, bool]], KeyHoldTracker]:
    """Feed the spaces in time order, expiring at every deadline that passes before the
    next one (and up to `until_s`); return the changes as (time, pressed)."""
    t = tracker if tracker is not None else KeyHoldTracker()
    changes: list[tuple[float, bool]] = []

    def run_timer_until(now_s: float) -> None:
        while (deadline := t.deadline_s) is not None and deadline < now_s:
            change = t.expire(deadline)
            if change is not None:
                changes.append((round(deadline, 6), change))

    for s in sorted(spaces):
        run_timer_until(s)
        change = t.space(s)
        if change is not None:
            changes.append((round(s, 6), change))
    run_timer_until(until_s)
    return changes, t


def held(start_s: float, repeat_delay_s: float, interval_s: float, end_s: float) -> list[float]:
    """The spaces a terminal sends while the bar is held from `start_s` to `end_s`."""
    out = [start_s]
    t = start_s + repeat_delay_s
    while t <= end_s:
        out.append(round(t, 6))
        t += interval_s
    return out


def test_hold_with_repeats_talks_from_the_press_until_the_repeats_stop():
    spaces = held(0.0, 0.5, 0.04, 2.0)
    changes, t = play(spaces, 5.0)
    last = spaces[-1]
    assert changes == [(0.0, True), (round(last + DEFAULT.release_gap_s, 6), False)]
    assert t.deadline_s is None and not t.pressed


@pytest.mark.parametrize(
    ("repeat_delay_s", "interval_s"),
    [(0.25, 0.033), (0.5, 0.03), (0.6, 0.04), (0.66, 0.04), (0.75, 0.05)],
)
def test_usual_terminal_repeat_settings_all_hold(repeat_delay_s, interval_s):
    """Linux console, GNOME, KDE, X defaults, and a slow SSH first repeat."""
    changes, _ = play(held(1.0, repeat_delay_s, interval_s, 3.0), 6.0)
    assert [c for _, c in changes] == [True, False]
    assert 3.0 < changes[1][0] <= 3.0 + DEFAULT.release_gap_s + 1e-9


def test_the_press_is_reported_at_once_not_after_the_repeat_delay():
    t = KeyHoldTracker()
    assert t.space(10.0) is True
    assert t.deadline_s == pytest.approx(10.0 + DEFAULT.max_repeat_delay_s)
    assert t.expire(10.5) is None and t.pressed  # too early to decide anything


def test_tap_to_start_tap_to_send():
    changes, t = play([0.0, 3.0], 10.0)
    assert changes == [(0.0, True), (3.0, False)]
    assert not t.pressed and t.deadline_s is None
    # Until the second tap the talk goes on, however long.
    changes, t = play([0.0], 60.0)
    assert changes == [(0.0, True)] and t.pressed and t.deadline_s is None
    # And a third tap starts the next turn.
    changes, _ = play([0.0, 3.0, 6.0], 10.0)
    assert changes == [(0.0, True), (3.0, False), (6.0, True)]


def test_holding_the_bar_to_send_after_a_tap_sends_at_the_press_and_swallows_its_repeats():
    spaces = [0.0, *held(3.0, 0.5, 0.04, 5.0)]
    changes, t = play(spaces, 8.0)
    assert changes == [(0.0, True), (3.0, False)]
    assert not t.pressed and t.deadline_s is None
    # The next press (after the bar went up) starts talking again.
    changes, _ = play([*spaces, 9.0], 12.0)
    assert changes[-1] == (9.0, True)


def test_a_tap_landing_among_a_holds_repeats_does_not_toggle():
    """The terminal sends the same byte for a tap as for a repeat: while the repeats
    flow, any extra space (a second finger, a doubled repeat) just extends the hold."""
    spaces = held(0.0, 0.5, 0.04, 2.0)
    spaces += [1.001, 1.5, 1.5, 1.502]  # doubled and extra spaces inside the hold
    changes, _ = play(spaces, 5.0)
    assert [c for _, c in changes] == [True, False]
    assert changes[1][0] == pytest.approx(2.0 + DEFAULT.release_gap_s, abs=0.04)


def test_a_press_right_after_a_hold_ends_starts_a_new_talk():
    first = held(0.0, 0.5, 0.04, 2.0)
    release_s = first[-1] + DEFAULT.release_gap_s
    second = held(release_s + 0.05, 0.5, 0.04, 4.0)
    changes, _ = play(first + second, 8.0)
    assert [c for _, c in changes] == [True, False, True, False]
    assert changes[2][0] == pytest.approx(release_s + 0.05)


def test_a_hold_shorter_than_the_repeat_delay_is_a_tap_and_two_quick_taps_are_a_short_hold():
    # Released before the first repeat: nothing to tell it from a tap, so it latches.
    changes, t = play([0.0], 2.0)
    assert changes == [(0.0, True)] and t.pressed
    # Two taps inside the repeat delay look like press + first repeat: it sends.
    changes, _ = play([0.0, 0.4], 2.0)
    assert changes == [(0.0, True), (round(0.4 + DEFAULT.release_gap_s, 6), False)]


def test_a_very_long_hold_stays_pressed_and_ends_on_time():
    spaces = held(0.0, 0.5, 0.033, 600.0)  # ten minutes of repeats
    changes, t = play(spaces, 601.0)
    assert [c for _, c in changes] == [True, False]
    assert changes[1][0] == pytest.approx(spaces[-1] + DEFAULT.release_gap_s)
    assert len(t._intervals) <= KeyHoldTracker._INTERVALS_KEPT  # memory stays bounded


def test_jittery_repeats_and_batched_reads_do_not_break_the_hold():
    rng = random.Random(7)
    spaces = [0.0]
    t = rng.uniform(0.4, 0.7)
    while t < 5.0:
        spaces.append(t)
        if rng.random() < 0.1:  # an SSH packet or a busy loop delivers a burst at once
            spaces += [t] * rng.randint(1, 4)
            t += rng.uniform(0.08, 0.12)
        else:
            t += rng.uniform(0.02, 0.075)
    changes, _ = play(spaces, 8.0)
    assert [c for _, c in changes] == [True, False]
    assert spaces[-1] < changes[1][0] <= spaces[-1] + DEFAULT.max_release_gap_s


def test_the_release_gap_follows_a_slow_repeat_rate_within_bounds():
    # 110 ms between repeats, jittered up to 140 ms: a fixed 150 ms gap would be marginal.
    rng = random.Random(3)
    spaces = [0.0]
    t = 0.5
    while t < 4.0:
        spaces.append(t)
        t += rng.uniform(0.1, 0.14)
    changes, tracker = play(spaces, 8.0)
    assert [c for _, c in changes] == [True, False]
    assert tracker.release_gap_s == pytest.approx(3 * 0.12, abs=0.05)
    # Fast repeats keep the floor; absurdly slow ones hit the cap.
    _, fast = play(held(0.0, 0.5, 0.03, 2.0), 3.0)
    assert fast.release_gap_s == DEFAULT.release_gap_s
    slow = KeyHoldTracker()
    slow._intervals.extend([0.4] * 5)
    assert slow.release_gap_s == DEFAULT.max_release_gap_s


def test_spaces_that_queued_during_a_stall_count_as_repeats():
    """KeyButton reads waiting input before expiring; a late space is still a repeat."""
    t = KeyHoldTracker()
    t.space(0.0)
    t.space(0.5)
    t.space(0.54)
    assert t.space(0.9) is None  # 360 ms late (the loop was busy), but no expire ran
    assert t.pressed
    deadline = t.deadline_s
    assert deadline is not None and 0.9 + DEFAULT.release_gap_s <= deadline <= 1.4
    assert t.expire(deadline) is False


def test_expire_before_the_deadline_or_when_idle_changes_nothing():
    t = KeyHoldTracker()
    assert t.expire(100.0) is None and t.deadline_s is None
    t.space(0.0)
    t.space(0.5)
    assert t.expire(0.6) is None and t.pressed
    assert t.expire(0.5 + DEFAULT.release_gap_s) is False
    assert t.expire(1.0) is None


def test_changes_alternate_so_on_change_only_sees_real_changes():
    rng = random.Random(11)
    spaces = sorted(rng.uniform(0, 60) for _ in range(400))
    changes, _ = play(spaces, 70.0)
    states = [c for _, c in changes]
    assert states[0] is True
    assert all(a != b for a, b in itertools.pairwise(states))


def test_timing_is_validated():
    with pytest.raises(ValueError):
        KeyTiming(release_gap_s=0.6, max_release_gap_s=0.5)
    with pytest.raises(ValueError):
        KeyTiming(release_gap_s=0)
    with pytest.raises(ValueError):
        KeyTiming(max_repeat_delay_s=0)
