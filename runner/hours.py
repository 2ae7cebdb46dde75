"""Regular trading hours from the exchange's calendar: what a dry run knows of the market.

A dry run has no broker to ask for the contract's liquid hours, so the hours gate and the
simulator ask this module. Rules (the README's simulator section repeats them); times are
New York's (America/New_York, daylight saving time included), sessions are [open, close):

- US stocks (STK in USD on SMART or a US exchange, see `US_STOCK_EXCHANGES`): 09:30–16:00
  on NYSE trading days: weekdays that are not NYSE holidays. Holidays: New Year's Day
  (a Sunday one is observed on Monday; a Saturday one is not observed at all, the NYSE
  keeps December 31 open), Martin Luther King Jr. Day (third Monday of January),
  Washington's Birthday (third Monday of February), Good Friday, Memorial Day (last
  Monday of May), Juneteenth (June 19, from 2022), Independence Day (July 4), Labor Day
  (first Monday of September), Thanksgiving (fourth Thursday of November) and Christmas
  (December 25). Apart from New Year's, a holiday on a Saturday is observed on the Friday
  before and one on a Sunday on the Monday after. Early closes at 13:00: July 3 when it
  is a weekday and not itself the observed Independence Day, the day after Thanksgiving,
  and December 24 when it is a weekday and not itself the observed Christmas. Today's
  rules are applied to every year; one-off closures (national days of mourning, storms)
  are not known.
- CRYPTO: open around the clock, every day.
- CASH (IDEALPRO FX): from Sunday 17:15 to Friday 17:00, with the daily 17:00–17:15
  break modelled: each weekday's session runs from 17:15 the day before to 17:00. FX
  holidays are not known.
- Anything else: None, not known. The hours gate is then skipped and the simulator
  trades every bar; nothing is guessed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
NS = 1_000_000_000
US_STOCK_EXCHANGES = frozenset({"SMART", "NYSE", "NASDAQ", "ISLAND", "ARCA", "NYSEARCA",
                                "AMEX", "NYSEAMEX", "BATS", "BYX", "EDGX", "EDGEA", "IEX",
                                "MEMX", "PEARL", "LTSE", "BEX", "PSX", "CHX", "NYSENAT",
                                "DRCTEDGE", "IBKRATS"})
NYSE_OPEN = time(9, 30)
NYSE_CLOSE = time(16, 0)
NYSE_EARLY_CLOSE = time(13, 0)
FX_OPEN = time(17, 15)  # the day before the session's date
FX_CLOSE = time(17, 0)
JUNETEENTH_FROM = 2022
SATURDAY, SUNDAY = 5, 6

Window = tuple[datetime, datetime]  # one session, [open, close), New York time
Calendar = Callable[[date], list[Window]]  # a trading date's sessions


def sessions(sec_type: str, exchange: str, currency: str, start_ns: int,
             end_ns: int) -> list[tuple[int, int]] | None:
    """The regular sessions that overlap [start_ns, end_ns], as (open_ns, close_ns) in
    time order; None when the instrument's calendar is not known."""
    calendar = calendar_for(sec_type, exchange, currency)
    if calendar is None:
        return None
    first, last = _ny_date(start_ns) - timedelta(days=1), _ny_date(end_ns) + timedelta(days=1)
    out = []
    for offset in range((last - first).days + 1):
        for opens, closes in calendar(first + timedelta(days=offset)):
            window = (_ns(opens), _ns(closes))
            if window[0] <= end_ns and window[1] > start_ns:
                out.append(window)
    return out


def is_open(sec_type: str, exchange: str, currency: str, at_ns: int) -> bool | None:
    """Whether `at_ns` falls inside a regular session; None: the calendar is not known."""
    found = sessions(sec_type, exchange, currency, at_ns, at_ns)
    if found is None:
        return None
    return any(opens <= at_ns < closes for opens, closes in found)


def calendar_for(sec_type: str, exchange: str, currency: str) -> Calendar | None:
    """The session rule of an instrument (module rules), or None when it is not known."""
    if sec_type == "CRYPTO":
        return _crypto_sessions
    if sec_type == "CASH" and exchange == "IDEALPRO":
        return _fx_sessions
    if sec_type == "STK" and currency == "USD" and exchange in US_STOCK_EXCHANGES:
        return _nyse_sessions
    return None


def nyse_close(day: date) -> time | None:
    """The NYSE's closing time on `day` (16:00, or 13:00 on an early close); None when
    the exchange does not open that day (a weekend or a holiday)."""
    if day.weekday() >= SATURDAY or day in nyse_holidays(day.year):
        return None
    return NYSE_EARLY_CLOSE if day in nyse_early_closes(day.year) else NYSE_CLOSE


@functools.cache
def nyse_holidays(year: int) -> frozenset[date]:
    """The weekdays of `year` on which the NYSE is closed (module rules)."""
    days = {
        _third_monday(year, 1), _third_monday(year, 2), _easter(year) - timedelta(days=2),
        _last_monday(year, 5), _observed(date(year, 7, 4)), _first_monday(year, 9),
        _fourth_thursday(year, 11), _observed(date(year, 12, 25)),
    }
    new_year = date(year, 1, 1)
    if new_year.weekday() != SATURDAY:  # a Saturday New Year's Day is not observed
        days.add(_observed(new_year))
    if year >= JUNETEENTH_FROM:
        days.add(_observed(date(year, 6, 19)))
    return frozenset(days)


@functools.cache
def nyse_early_closes(year: int) -> frozenset[date]:
    """The days of `year` on which the NYSE closes at 13:00 (module rules)."""
    holidays = nyse_holidays(year)
    candidates = (date(year, 7, 3), _fourth_thursday(year, 11) + timedelta(days=1),
                  date(year, 12, 24))
    return frozenset(d for d in candidates if d.weekday() < SATURDAY and d not in holidays)


def _nyse_sessions(day: date) -> list[Window]:
    closes = nyse_close(day)
    return [] if closes is None else [(_at(day, NYSE_OPEN), _at(day, closes))]


def _fx_sessions(day: date) -> list[Window]:
    if day.weekday() >= SATURDAY:
        return []
    return [(_at(day - timedelta(days=1), FX_OPEN), _at(day, FX_CLOSE))]


def _crypto_sessions(day: date) -> list[Window]:
    return [(_at(day, time(0)), _at(day + timedelta(days=1), time(0)))]


def _observed(day: date) -> date:
    """A Saturday holiday is observed on the Friday before, a Sunday one on the Monday."""
    if day.weekday() == SATURDAY:
        return day - timedelta(days=1)
    if day.weekday() == SUNDAY:
        return day + timedelta(days=1)
    return day


def _first_monday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(7 - first.weekday()) % 7)


def _third_monday(year: int, month: int) -> date:
    return _first_monday(year, month) + timedelta(weeks=2)


def _last_monday(year: int, month: int) -> date:
    last = date(year, month + 1, 1) - timedelta(days=1)
    return last - timedelta(days=last.weekday())


def _fourth_thursday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(3 - first.weekday()) % 7, weeks=3)


def _easter(year: int) -> date:
    """Easter Sunday of the Gregorian calendar (the anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (b - (b + 8) // 25 + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    weekday = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * weekday) // 451
    month, day = divmod(h + weekday - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _at(day: date, clock: time) -> datetime:
    return datetime.combine(day, clock, tzinfo=NEW_YORK)


def _ns(moment: datetime) -> int:
    return round(moment.timestamp()) * NS


def _ny_date(at_ns: int) -> date:
    return datetime.fromtimestamp(at_ns // NS, UTC).astimezone(NEW_YORK).date()
