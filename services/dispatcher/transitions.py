"""What an answer or a report means for a message: the pure rules, apart from any SQL or HTTP.

Given where a message stands (its chain, position, tries) and what the provider said about one
attempt, `decide` returns the attempt's new state and the message's new fields. The pipeline applies
them; the tests read them as the product's rules:

- accepted -> `sent` (the attempt waits for its report); delivered -> `delivered`, or
  `delivered_via_fallback` when a later channel (or the provider's own SMS, RSC04) delivered it;
- unreachable / failed -> the next channel of the chain now, or `failed` at its end; but when the
  provider runs the SMS fallback itself (ProviderFallback), wait for its word: RSC02/RSC03 wait,
  RSC04 delivered via fallback, RSC05 (its fallback failed) or RSC01 (not a target) -> our own
  next channel. Never twice (DOMAIN C14);
- transient -> retry later with backoff (<= MAX_TRANSIENT_TRIES on a channel), then the next channel;
- rate_limited -> retry after the provider's Retry-After, not counted as a try;
- outside_hours (Kakao 3022) -> deferred to the next morning, never an SMS at night instead;
- rejected -> `failed` (content/template error: a fallback would carry the same error);
- misconfigured -> the provider's breaker trips (the caller does that) and the chain moves on;
- opted_out -> `skipped` with reason `opted_out` (and the address suppressed by the caller).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from services.dispatcher.providers.base import Outcome, ResendStatus
from services.dispatcher.resilience import DEFAULT_RATE_LIMIT_WAIT_S, MAX_TRANSIENT_TRIES, retry_delay
from shared.clock import zone

KAKAO_OPENS = time(8, 0)

FINAL = frozenset({"delivered", "delivered_via_fallback", "skipped", "failed"})


@dataclass(frozen=True)
class MessageState:
    chain: tuple[str, ...]
    chain_pos: int
    tries: int
    status: str


@dataclass(frozen=True)
class Decision:
    attempt_state: str  # pending (await a report) or done
    status: str | None = None  # None: the message does not change
    chain_pos: int | None = None
    tries: int | None = None
    not_before: datetime | None = None
    reason: str | None = None
    channel: str | None = None  # the channel that delivered / was accepted
    now: bool = False  # the next channel should be tried at once (fallback)
    opted_out: bool = False
    trip_breaker: bool = False

    @property
    def final(self) -> bool:
        return self.status in FINAL


def next_kakao_morning(now: datetime, tz: str) -> datetime:
    local = now.astimezone(zone(tz))
    day = local.date() if local.time() < KAKAO_OPENS else local.date() + timedelta(days=1)
    return datetime.combine(day, KAKAO_OPENS, tzinfo=zone(tz))


@functools.lru_cache(maxsize=64)
def _sent(channel: str) -> Decision:
    """The answer to nearly every submission: one immutable Decision per channel, not one per message."""
    return Decision("pending", status="sent", channel=channel)


def _move_on(state: MessageState, why: str) -> Decision:
    nxt = state.chain_pos + 1
    if nxt < len(state.chain):
        return Decision("done", status="queued", chain_pos=nxt, tries=0, reason=why, now=True)
    return Decision("done", status="failed", reason=why)


def decide(
    state: MessageState,
    *,
    channel: str,
    outcome: Outcome,
    code: str,
    now: datetime,
    tz: str,
    provider_fallback: bool = False,
    resend_status: ResendStatus | None = None,
    retry_after: float | None = None,
    detail: str = "",
) -> Decision:
    if state.status in FINAL:
        return Decision("done")  # a late report never rewrites an outcome
    if outcome is Outcome.accepted:
        return _sent(channel)
    why = f"{channel}: {outcome.value} ({code})"
    if resend_status is ResendStatus.succeeded and provider_fallback:
        fallback = state.chain[state.chain_pos + 1] if state.chain_pos + 1 < len(state.chain) else "sms"
        return Decision("done", status="delivered_via_fallback", channel=fallback, reason=None)
    if outcome is Outcome.delivered:
        status = "delivered" if state.chain_pos == 0 else "delivered_via_fallback"
        return Decision("done", status=status, channel=channel, reason=None)
    if outcome in (Outcome.unreachable, Outcome.failed):
        if provider_fallback and resend_status in (ResendStatus.target, ResendStatus.resending):
            return Decision("pending")  # the provider is sending its SMS: wait for its result
        if provider_fallback and resend_status is ResendStatus.failed:
            return _move_on(state, f"{why}; provider fallback failed (RSC05)")
        return _move_on(state, why)
    if outcome is Outcome.opted_out:
        return Decision("done", status="skipped", reason="opted_out", opted_out=True)
    if outcome is Outcome.transient:
        tries = state.tries + 1
        if tries < MAX_TRANSIENT_TRIES:
            wait = timedelta(seconds=retry_after) if retry_after else retry_delay(tries)
            return Decision("done", status="queued", tries=tries, not_before=now + wait, reason=why)
        return _move_on(state, f"{why}; {tries} tries")
    if outcome is Outcome.rate_limited:
        wait = timedelta(seconds=retry_after or DEFAULT_RATE_LIMIT_WAIT_S)
        return Decision("done", status="queued", not_before=now + wait, reason=why)
    if outcome is Outcome.outside_hours:
        return Decision(
            "done", status="deferred", not_before=next_kakao_morning(now, tz), reason="outside_kakao_hours"
        )
    if outcome is Outcome.rejected:
        return Decision("done", status="failed", reason=f"{why} {detail}".strip()[:255])
    if outcome is Outcome.misconfigured:
        moved = _move_on(state, why)
        return Decision(**{**moved.__dict__, "trip_breaker": True})
    raise ValueError(f"unhandled outcome {outcome}")
