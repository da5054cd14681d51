"""Time: an injectable clock and the workspace-timezone helpers every time rule goes through."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIMEZONE = "Asia/Seoul"


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that moves only when told to: tests travel in time instead of sleeping."""

    def __init__(self, at: datetime) -> None:
        self._now = _require_aware(at).astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, at: datetime) -> None:
        self._now = _require_aware(at).astimezone(UTC)

    def advance(self, delta: timedelta) -> None:
        self._now += delta


def _require_aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return at


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc


def is_valid_timezone(name: str) -> bool:
    try:
        zone(name)
    except ValueError:
        return False
    return True


def local_now(clock: Clock, tz: str) -> datetime:
    return clock.now().astimezone(zone(tz))


def local_date(at: datetime, tz: str) -> date:
    return _require_aware(at).astimezone(zone(tz)).date()


def start_of_local_day(at: datetime, tz: str, days_ago: int = 0) -> datetime:
    """Midnight (as a UTC instant) of the local day `days_ago` days before the day of `at`.

    "Within N days of today" rules use this: today = 0, in the workspace timezone.
    """
    day = local_date(at, tz) - timedelta(days=days_ago)
    return datetime.combine(day, time.min, tzinfo=zone(tz)).astimezone(UTC)


def is_within_local_window(at: datetime, tz: str, start: time, end: time) -> bool:
    """Whether `at`'s local time falls in [start, end); windows may wrap midnight (21:00-08:00)."""
    local = _require_aware(at).astimezone(zone(tz)).time()
    if start <= end:
        return start <= local < end
    return local >= start or local < end
