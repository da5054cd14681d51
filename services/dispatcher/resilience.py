"""Staying polite to providers: a circuit breaker and a rate limit per provider, retry delays.

Circuit breaker: a small explicit one rather than purgatory/aiobreaker. Both libraries count
*exceptions* of a wrapped call and read the wall clock; here a provider is also cut off by an answer
that is not an exception (a `misconfigured` outcome: sender key revoked, channel blocked, which DOMAIN
says stops the campaign at once), and its cool-down must follow the injected clock so a test can
travel past it. It is ~40 lines; the states are the classic three.

Rate limit: aiolimiter's leaky bucket, one per provider, acquired per message of a batch.

Retries: the provider call itself is retried in-process by stamina (exponential backoff with full
jitter, a few quick tries for a connection error or a 5xx); per-message transient answers are retried
durably: the message goes back to `queued` with `not_before` = now + `retry_delay(tries)`, so a
worker restart loses nothing and no job sleeps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from aiolimiter import AsyncLimiter

from shared.clock import Clock

MAX_TRANSIENT_TRIES = 3  # per channel; then the chain moves on (DOMAIN: "retry with backoff (<= 3)")
RETRY_BASE_S = 5.0
RETRY_CAP_S = 300.0
DEFAULT_RATE_LIMIT_WAIT_S = 10.0


def retry_delay(tries: int, *, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter: base * 2^(tries-1), capped, times a factor in [0.5, 1)."""
    raw = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** max(0, tries - 1))
    factor = 0.5 + (rng or random).random() / 2
    return timedelta(seconds=raw * factor)


@dataclass
class CircuitBreaker:
    """closed -> (threshold consecutive failures, or a trip) -> open -> (cool-down) -> half-open:
    one probe call; success closes, failure opens again."""

    clock: Clock
    threshold: int = 5
    cooldown: timedelta = timedelta(seconds=30)
    failures: int = 0
    opened_at: datetime | None = None
    probing: bool = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self.clock.now() - self.opened_at >= self.cooldown:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a call go to the provider now? In half-open, only one probe at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self.probing:
            self.probing = True
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.probing = False

    def failure(self) -> None:
        self.probing = False
        self.failures += 1
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = self.clock.now()

    def trip(self) -> None:
        """Open now (a misconfigured sender: more calls cannot succeed)."""
        self.probing = False
        self.failures = max(self.failures, self.threshold)
        self.opened_at = self.clock.now()


@dataclass
class ProviderGuards:
    """A breaker and a rate limiter per provider name, made on first use (per process)."""

    clock: Clock
    threshold: int = 5
    cooldown: timedelta = timedelta(seconds=30)
    rates: dict[str, float] = field(default_factory=dict)  # provider -> messages per second
    default_rate: float | None = None  # None: unlimited
    _breakers: dict[str, CircuitBreaker] = field(default_factory=dict)
    _limiters: dict[str, AsyncLimiter | None] = field(default_factory=dict)

    def breaker(self, provider: str) -> CircuitBreaker:
        breaker = self._breakers.get(provider)
        if breaker is None:
            breaker = self._breakers[provider] = CircuitBreaker(self.clock, self.threshold, self.cooldown)
        return breaker

    def limiter(self, provider: str) -> AsyncLimiter | None:
        if provider not in self._limiters:
            rate = self.rates.get(provider, self.default_rate)
            # a bucket of a tenth of a second's worth: smooth, yet a batch of 100 fits at >= 1,000/s
            self._limiters[provider] = AsyncLimiter(max(1.0, rate / 10), 0.1) if rate else None
        return self._limiters[provider]

    async def acquire(self, provider: str, count: int) -> None:
        limiter = self.limiter(provider)
        if limiter is None:
            return
        step = max(1, int(limiter.max_rate))
        while count > 0:
            take = min(step, count)
            await limiter.acquire(take)
            count -= take
