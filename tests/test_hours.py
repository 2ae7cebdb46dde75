"""The dry run's market calendar (runner.hours) against known dates.

Every instant is written in UTC by hand: New York is UTC-5 in winter (EST) and UTC-4
from the second Sunday of March to the first Sunday of November (EDT).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from runner.hours import is_open, nyse_early_closes, nyse_holidays, sessions

NS = 1_000_000_000


def utc(text: str) -> int:
    """Epoch ns of a naive ISO time read as UTC."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * NS


def us_stock(at: str) -> bool | None:
    return is_open("STK", "SMART", "USD", utc(at))


def test_nyse_2026_holidays_and_early_closes_as_published() -> None:
    assert sorted(nyse_holidays(2026)) == [
        date(2026, 1, 1), date(2026, 1, 19), date(2026, 2, 16), date(2026, 4, 3),
        date(2026, 5, 25), date(2026, 6, 19), date(2026, 7, 3), date(2026, 9, 7),
        date(2026, 11, 26), date(2026, 12, 25)]
    assert sorted(nyse_early_closes(2026)) == [date(2026, 11, 27), date(2026, 12, 24)]


def test_nyse_2027_observed_holidays() -> None:
    # June 19 and December 25, 2027 are Saturdays: the Fridays before are closed instead;
    # July 4 is a Sunday: Monday July 5 is closed, and July 3 (a Saturday) closes nothing.
    assert sorted(nyse_holidays(2027)) == [
        date(2027, 1, 1), date(2027, 1, 18), date(2027, 2, 15), date(2027, 3, 26),
        date(2027, 5, 31), date(2027, 6, 18), date(2027, 7, 5), date(2027, 9, 6),
        date(2027, 11, 25), date(2027, 12, 24)]
    assert sorted(nyse_early_closes(2027)) == [date(2027, 11, 26)]


@pytest.mark.parametrize(("at", "expected"), [
    ("2026-01-05T14:29:59", False),  # Monday 09:29:59 EST: pre-market
    ("2026-01-05T14:00:00", False),  # 09:00 EST
    ("2026-01-05T14:30:00", True),  # 09:30:00, the open
    ("2026-01-05T20:59:59", True),  # 15:59:59
    ("2026-01-05T21:00:00", False),  # 16:00:00, the close
    ("2026-01-03T15:00:00", False),  # a Saturday
    ("2026-03-09T13:30:00", True),  # 09:30 EDT, the day after clocks went forward
    ("2026-03-09T14:29:59", True),
    ("2026-03-06T14:29:59", False),  # the Friday before, still EST: 09:29:59
    ("2026-04-03T15:00:00", False),  # Good Friday
    ("2026-04-02T15:00:00", True),
    ("2026-07-03T15:00:00", False),  # July 4 is a Saturday: observed Friday July 3
    ("2026-07-02T19:59:59", True),  # Thursday July 2 is a full day (15:59:59 EDT)
    ("2026-11-26T15:00:00", False),  # Thanksgiving
    ("2026-11-27T17:59:59", True),  # the day after: 12:59:59 EST
    ("2026-11-27T18:00:00", False),  # 13:00 EST, the early close
    ("2026-12-24T17:59:59", True),  # Christmas Eve, a Thursday: early close
    ("2026-12-24T18:00:00", False),
    ("2027-12-24T15:00:00", False),  # Christmas is a Saturday: observed Friday Dec 24
    ("2025-07-03T16:59:59", True),  # July 3, 2025 (a Thursday): 12:59:59 EDT
    ("2025-07-03T17:00:00", False),
    ("2021-12-31T15:00:00", True),  # New Year's Day 2022 is a Saturday: not observed
    ("2023-01-02T15:00:00", False),  # New Year's Day 2023 is a Sunday: observed Monday
    ("2021-06-18T15:00:00", True),  # Juneteenth counts from 2022 only
    ("2022-06-20T15:00:00", False),  # June 19, 2022 is a Sunday: observed Monday
    ("2026-01-19T15:00:00", False),  # Martin Luther King Jr. Day
    ("2026-02-16T15:00:00", False),  # Washington's Birthday
    ("2026-05-25T15:00:00", False),  # Memorial Day
    ("2026-09-07T15:00:00", False),  # Labor Day
])
def test_us_stock_regular_hours(at: str, expected: bool) -> None:
    assert us_stock(at) is expected


def test_every_us_exchange_routing_uses_the_nyse_calendar() -> None:
    at = utc("2026-01-05T14:00:00")  # 09:00 New York
    assert [is_open("STK", x, "USD", at) for x in ("NYSE", "NASDAQ", "ARCA")] == [False] * 3


def test_crypto_is_open_around_the_clock() -> None:
    assert is_open("CRYPTO", "PAXOS", "USD", utc("2026-01-03T03:00:00")) is True  # Saturday
    assert is_open("CRYPTO", "PAXOS", "USD", utc("2026-12-25T12:00:00")) is True


@pytest.mark.parametrize(("at", "expected"), [
    ("2026-01-04T22:14:59", False),  # Sunday 17:14:59 EST
    ("2026-01-04T22:15:00", True),  # Sunday 17:15, the week opens
    ("2026-01-07T21:59:59", True),  # Wednesday 16:59:59
    ("2026-01-07T22:00:00", False),  # 17:00: the daily break
    ("2026-01-07T22:15:00", True),  # 17:15: the next session
    ("2026-01-09T21:59:59", True),  # Friday 16:59:59
    ("2026-01-09T22:00:00", False),  # Friday 17:00, the week closes
    ("2026-01-10T15:00:00", False),  # Saturday
    ("2026-07-12T21:15:00", True),  # Sunday 17:15 EDT
])
def test_fx_week_with_its_daily_break(at: str, expected: bool) -> None:
    assert is_open("CASH", "IDEALPRO", "USD", utc(at)) is expected


def test_unknown_instruments_are_unknown_not_closed() -> None:
    at = utc("2026-01-05T15:00:00")
    assert is_open("STK", "TSE", "CAD", at) is None
    assert is_open("STK", "SMART", "EUR", at) is None
    assert is_open("CASH", "SMART", "USD", at) is None
    assert sessions("STK", "LSE", "GBP", at, at) is None


def test_sessions_over_a_holiday_week() -> None:
    # Wednesday Nov 25 .. Monday Nov 30, 2026: Thanksgiving closed, Friday short.
    found = sessions("STK", "SMART", "USD", utc("2026-11-25T00:00:00"),
                     utc("2026-11-30T23:00:00"))
    assert found == [
        (utc("2026-11-25T14:30:00"), utc("2026-11-25T21:00:00")),
        (utc("2026-11-27T14:30:00"), utc("2026-11-27T18:00:00")),
        (utc("2026-11-30T14:30:00"), utc("2026-11-30T21:00:00")),
    ]
