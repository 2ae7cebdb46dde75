"""Trading and liquid hours: each market's week, and IB's strings for the next days.

A contract's details carry `tradingHours` and `liquidHours` in its market's time zone
(`timeZoneId`); `instruments.Instrument.schedule` names its market here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

NS = 1_000_000_000

HOURS_MODES = ("open", "regular", "closed")


@dataclass(frozen=True, slots=True)
class Schedule:
    """A market's week. A session (start, end) is HHMM local time; start > end starts the
    day before (CME's 17:00-16:00), start == end spans the whole day."""

    tz: str  # IB's timeZoneId, a tz database name
    trading: tuple[tuple[str, str], ...]
    liquid: tuple[tuple[str, str], ...]
    weekdays: frozenset[int] = frozenset(range(5))  # Monday 0 .. Sunday 6


_WEEK = frozenset(range(7))
SCHEDULES: dict[str, Schedule] = {
    "us_stock": Schedule("US/Eastern", (("0400", "2000"),), (("0930", "1600"),)),
    "us_option": Schedule("US/Eastern", (("0930", "1600"),), (("0930", "1600"),)),
    "us_etf_option": Schedule("US/Eastern", (("0930", "1615"),), (("0930", "1615"),)),
    "cboe_index": Schedule("US/Eastern", (("0930", "1600"),), (("0930", "1600"),)),
    "cme": Schedule("US/Central", (("1700", "1600"),), (("0830", "1600"),)),
    "idealpro": Schedule("US/Eastern", (("1715", "1700"),), (("1715", "1700"),)),
    "paxos": Schedule("US/Eastern", (("0000", "0000"),), (("0000", "0000"),), _WEEK),
    "tse": Schedule("Japan", (("0900", "1130"), ("1230", "1530")),
                    (("0900", "1130"), ("1230", "1530"))),
}


def session_hours(schedule: Schedule, now_ns: int, days: int = 7,
                  mode: str = "regular") -> tuple[str, str]:
    """IB's tradingHours and liquidHours strings from today (the market's date) on.

    Format as IB sends it since 2018: `20250106:0400-20250106:2000;20250111:CLOSED`; a
    session from the evening before reads `20250105:1700-20250106:1600`. Exchange holidays
    are not modelled. `mode` "open" makes the liquid hours span every whole day (a market
    that is always open: tests and night rehearsals are never out of hours); "closed"
    closes every day.
    """
    today = datetime.fromtimestamp(now_ns / NS, ZoneInfo(schedule.tz)).date()
    span = [today + timedelta(days=i) for i in range(days)]
    if mode == "closed":
        closed = ";".join(f"{_ymd(d)}:CLOSED" for d in span)
        return closed, closed
    liquid = (_sessions(span, (("0000", "0000"),), _WEEK) if mode == "open"
              else _sessions(span, schedule.liquid, schedule.weekdays))
    return _sessions(span, schedule.trading, schedule.weekdays), liquid


def trading_hours(now_ns: int, days: int = 7, mode: str = "regular") -> tuple[str, str]:
    """A US stock's trading and liquid hours (04:00-20:00 and 09:30-16:00 New York)."""
    return session_hours(SCHEDULES["us_stock"], now_ns, days, mode)


def _sessions(span: list[date], sessions: tuple[tuple[str, str], ...],
              weekdays: frozenset[int]) -> str:
    parts = []
    for d in span:
        if d.weekday() not in weekdays:
            parts.append(f"{_ymd(d)}:CLOSED")
            continue
        for start, end in sessions:
            opens = d - timedelta(days=1) if start > end else d
            closes = d + timedelta(days=1) if start == end else d
            parts.append(f"{_ymd(opens)}:{start}-{_ymd(closes)}:{end}")
    return ";".join(parts)


def _ymd(d: date) -> str:
    return d.strftime("%Y%m%d")
