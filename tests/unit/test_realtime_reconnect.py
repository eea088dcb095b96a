"""Reconnect backoff and session renewal timing, with a fake clock."""

from __future__ import annotations

import pytest

from pivoicectl.errors import UserError
from pivoicectl.realtime.session.reconnect import (
    BackoffPolicy,
    Reconnector,
    RenewalPolicy,
    SessionRenewal,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_doubles_up_to_the_cap_without_jitter():
    policy = BackoffPolicy(initial_delay_s=0.5, multiplier=2, max_delay_s=5, jitter_fraction=0)
    r = Reconnector(policy, clock=FakeClock(), uniform=lambda: 0.5)
    assert [r.next_delay_s() for _ in range(7)] == [0.5, 1, 2, 4, 5, 5, 5]
    assert r.attempts == 7


def test_jitter_spreads_within_bounds_and_respects_the_cap():
    policy = BackoffPolicy(initial_delay_s=1, max_delay_s=10, jitter_fraction=0.2)
    assert policy.delay_s(1, 0.0) == pytest.approx(0.8)
    assert policy.delay_s(1, 0.999999) == pytest.approx(1.2, abs=1e-5)
    assert policy.delay_s(1, 0.5) == pytest.approx(1.0)
    assert policy.delay_s(20, 0.999) == 10  # jitter never exceeds the cap
    assert policy.base_delay_s(10_000) == 10  # no float overflow


def test_gives_up_after_max_attempts():
    r = Reconnector(BackoffPolicy(max_attempts=3, jitter_fraction=0), clock=FakeClock())
    assert all(r.next_delay_s() is not None for _ in range(3))
    assert r.exhausted
    assert r.next_delay_s() is None


def test_infinite_attempts_by_default():
    r = Reconnector(BackoffPolicy(jitter_fraction=0), clock=FakeClock())
    delays = [r.next_delay_s() for _ in range(1000)]
    assert all(d == 30 for d in delays[-10:])


def test_stable_connection_resets_the_count_but_a_flapping_one_does_not():
    clock = FakeClock()
    r = Reconnector(BackoffPolicy(jitter_fraction=0, stable_after_s=60), clock=clock)
    r.next_delay_s()
    r.next_delay_s()
    r.connected()
    clock.now += 5  # dropped again after 5 s: still the same outage
    assert r.next_delay_s() == 2.0
    r.connected()
    clock.now += 61  # a minute of good service, then a drop: start over
    assert r.next_delay_s() == 0.5
    assert r.attempts == 1
    r.reset()
    assert r.attempts == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_delay_s": -1},
        {"initial_delay_s": 10, "max_delay_s": 5},
        {"multiplier": 0.5},
        {"jitter_fraction": 1.0},
        {"max_attempts": 0},
    ],
)
def test_bad_backoff_settings_are_user_errors(kwargs):
    with pytest.raises(UserError):
        BackoffPolicy(**kwargs)


def test_renewal_waits_for_an_idle_moment_then_forces():
    clock = FakeClock()
    renewal = SessionRenewal(RenewalPolicy(), clock=clock)
    assert not renewal.should_renew(idle=True)  # no session yet
    renewal.started()
    clock.now += 54 * 60
    assert not renewal.should_renew(idle=True)
    assert renewal.seconds_until_due() == pytest.approx(60)
    clock.now += 60
    assert renewal.should_renew(idle=True)
    assert not renewal.should_renew(idle=False)  # mid-turn: wait
    assert renewal.seconds_until_forced() == pytest.approx(5 * 60 - 30)
    clock.now += 5 * 60 - 30
    assert renewal.should_renew(idle=False)  # 30 s before the limit: renew anyway
    assert renewal.seconds_until_due() == 0
    renewal.started()
    assert not renewal.should_renew(idle=True)
    assert renewal.age_s == 0


def test_renewal_timing_is_configurable():
    clock = FakeClock()
    renewal = SessionRenewal(
        RenewalPolicy(renew_after_s=2, session_limit_s=10, force_before_limit_s=1), clock=clock
    )
    renewal.started()
    clock.now += 2
    assert renewal.should_renew(idle=True)
    assert renewal.policy.force_at_s == 9


@pytest.mark.parametrize(
    "kwargs",
    [
        {"renew_after_s": 3590},
        {"renew_after_s": 0},
        {"renew_after_s": 100, "session_limit_s": 100, "force_before_limit_s": 10},
    ],
)
def test_bad_renewal_settings_are_user_errors(kwargs):
    with pytest.raises(UserError):
        RenewalPolicy(**kwargs)
