"""Time rules go through the workspace timezone and an injectable clock."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from shared.clock import FrozenClock, is_within_local_window, local_date, local_now, start_of_local_day


def test_frozen_clock_travels_without_sleeping():
    clock = FrozenClock(datetime(2026, 11, 23, 1, 0, tzinfo=UTC))
    clock.advance(timedelta(hours=24))
    assert clock.now() == datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        FrozenClock(datetime(2026, 11, 23))  # naive datetimes are refused


def test_today_starts_at_seoul_midnight_not_utc_midnight():
    # 2026-11-22 15:30 UTC is already 2026-11-23 00:30 in Seoul
    at = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)
    assert local_date(at, "Asia/Seoul").isoformat() == "2026-11-23"
    assert start_of_local_day(at, "Asia/Seoul") == datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
    assert start_of_local_day(at, "Asia/Seoul", days_ago=7) == datetime(2026, 11, 15, 15, 0, tzinfo=UTC)
    assert start_of_local_day(at, "UTC") == datetime(2026, 11, 22, 0, 0, tzinfo=UTC)


def test_local_now_follows_the_clock():
    clock = FrozenClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    assert local_now(clock, "Asia/Seoul").hour == 21


@pytest.mark.parametrize(("utc_hour", "inside"), [(11, False), (12, True), (22, True), (23, False)])
def test_night_window_wraps_midnight(utc_hour, inside):
    # Seoul 21:00-08:00 is 12:00-23:00 UTC
    at = datetime(2026, 11, 23, utc_hour, 0, tzinfo=UTC)
    assert is_within_local_window(at, "Asia/Seoul", time(21), time(8)) is inside
