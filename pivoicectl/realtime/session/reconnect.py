"""When to reconnect and when to renew the session, as pure logic.

A voice assistant on a shelf runs for days, so losing the connection is routine (Wi-Fi
blips, service restarts) and so is the service's 60-minute session limit. Both are
decided here without sockets or sleeping: the caller injects a clock and a random
source, asks for the next delay or whether to renew, and does the waiting itself. That
keeps the policy testable to the millisecond and the asyncio code free of arithmetic.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from pivoicectl.errors import UserError
from pivoicectl.realtime.protocol.events import SESSION_MAX_S

Clock = Callable[[], float]
"""Monotonic seconds, e.g. `time.monotonic`."""
Uniform = Callable[[], float]
"""A random float in [0, 1), e.g. `random.random`."""


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with jitter between reconnect attempts.

    Attempt n (1-based) waits `initial_delay_s * multiplier**(n-1)`, capped at
    `max_delay_s`, then spread by +/- `jitter_fraction` so that many devices dropped by
    the same outage do not all reconnect in the same instant; the cap also bounds the
    jittered value. A connection that stayed up for `stable_after_s` resets the count,
    so an outage a day later starts again from the short delay. `max_attempts` None
    retries forever (the default for an appliance); a number gives up after that many
    consecutive failures.
    """

    initial_delay_s: float = 0.5
    multiplier: float = 2.0
    max_delay_s: float = 30.0
    jitter_fraction: float = 0.2
    stable_after_s: float = 60.0
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if self.initial_delay_s < 0 or self.max_delay_s < self.initial_delay_s:
            raise UserError(
                "reconnect delays must satisfy 0 <= initial <= max",
                hint=f"got initial {self.initial_delay_s} s, max {self.max_delay_s} s",
            )
        if self.multiplier < 1.0:
            raise UserError("reconnect backoff multiplier must be >= 1", hint="2 is usual")
        if not 0.0 <= self.jitter_fraction < 1.0:
            raise UserError("reconnect jitter must be in [0, 1)", hint="0.2 is usual")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise UserError(
                "reconnect attempts must be at least 1",
                hint="leave it unset to retry forever",
            )

    def base_delay_s(self, attempt: int) -> float:
        """Delay before `attempt` (1-based) without jitter."""
        exponent = max(0, attempt - 1)
        # Cap the exponent before the power: 2**2000 would overflow a float.
        delay = self.initial_delay_s * self.multiplier ** min(exponent, 64)
        return min(self.max_delay_s, delay)

    def delay_s(self, attempt: int, uniform: float) -> float:
        """Delay before `attempt` with jitter from `uniform` in [0, 1)."""
        spread = 1.0 + self.jitter_fraction * (2.0 * uniform - 1.0)
        return min(self.max_delay_s, max(0.0, self.base_delay_s(attempt) * spread))


class Reconnector:
    """Counts consecutive failures and says how long to wait before the next attempt.

    Call `connected()` when a session is established and `next_delay_s()` whenever a
    connection attempt failed or an established connection dropped. None means give up.
    """

    def __init__(
        self,
        policy: BackoffPolicy = BackoffPolicy(),
        clock: Clock = time.monotonic,
        uniform: Uniform = random.random,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._uniform = uniform
        self._attempts = 0
        self._connected_at: float | None = None

    @property
    def attempts(self) -> int:
        """Consecutive failed attempts (or drops) since the last stable connection."""
        return self._attempts

    @property
    def exhausted(self) -> bool:
        """True once `max_attempts` consecutive attempts have failed."""
        limit = self.policy.max_attempts
        return limit is not None and self._attempts >= limit

    def connected(self) -> None:
        """A connection is up; if it lasts `stable_after_s`, the failure count resets."""
        self._connected_at = self._clock()

    def next_delay_s(self) -> float | None:
        """Seconds to wait before reconnecting, or None when the policy gives up."""
        if self._connected_at is not None:
            if self._clock() - self._connected_at >= self.policy.stable_after_s:
                self._attempts = 0
            self._connected_at = None
        if self.exhausted:
            return None
        self._attempts += 1
        return self.policy.delay_s(self._attempts, self._uniform())

    def reset(self) -> None:
        """Forget past failures (e.g. after the user fixed the network by hand)."""
        self._attempts = 0
        self._connected_at = None


@dataclass(frozen=True)
class RenewalPolicy:
    """When to replace a session before the service ends it at 60 minutes.

    Renewal means a fresh connection and `session.update`, which loses the conversation
    context, so it should happen between turns: from `renew_after_s` on, the session is
    renewed at the first idle moment (nobody speaking, no answer playing). If the user
    keeps talking, it is renewed regardless at `force_before_limit_s` before the limit, so
    the service never cuts a sentence in half at the 60-minute mark.
    """

    renew_after_s: float = 55 * 60
    session_limit_s: float = SESSION_MAX_S
    force_before_limit_s: float = 30.0

    def __post_init__(self) -> None:
        force_at = self.session_limit_s - self.force_before_limit_s
        if not 0 < self.renew_after_s <= force_at:
            raise UserError(
                "session renewal must come before the forced renewal point",
                hint=(
                    f"renew after {self.renew_after_s:g} s, but forced renewal is at "
                    f"{force_at:g} s (limit {self.session_limit_s:g} s)"
                ),
            )

    @property
    def force_at_s(self) -> float:
        """Session age at which renewal happens even mid-turn."""
        return self.session_limit_s - self.force_before_limit_s


class SessionRenewal:
    """Tracks one session's age against a `RenewalPolicy`."""

    def __init__(
        self, policy: RenewalPolicy = RenewalPolicy(), clock: Clock = time.monotonic
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._started_at: float | None = None

    def started(self) -> None:
        """A new session began (on `session.created`)."""
        self._started_at = self._clock()

    @property
    def age_s(self) -> float:
        """Seconds since `started()`, 0 before it."""
        return 0.0 if self._started_at is None else self._clock() - self._started_at

    def should_renew(self, idle: bool) -> bool:
        """Whether to renew now; `idle` means no speech and no answer in progress."""
        if self._started_at is None:
            return False
        age = self.age_s
        return age >= self.policy.force_at_s or (idle and age >= self.policy.renew_after_s)

    def seconds_until_due(self) -> float:
        """Seconds until renewal at the next idle moment is allowed (0 if already due)."""
        if self._started_at is None:
            return self.policy.renew_after_s
        return max(0.0, self.policy.renew_after_s - self.age_s)

    def seconds_until_forced(self) -> float:
        """Seconds until renewal happens even mid-turn (0 if already past)."""
        if self._started_at is None:
            return self.policy.force_at_s
        return max(0.0, self.policy.force_at_s - self.age_s)
