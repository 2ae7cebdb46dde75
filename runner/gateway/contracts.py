"""The US stocks the fake gateway knows, and their trading-hours strings.

Anything not in `STOCKS` gets error 200 (no security definition), as a real
gateway answers for a symbol it cannot find.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from runner.gateway.values import Contract

EXCHANGE_TZ = ZoneInfo("America/New_York")
TZ_ID = "US/Eastern"  # the spelling IB puts in contractDetails.timeZoneId
NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Stock:
    symbol: str
    con_id: int
    primary_exchange: str
    long_name: str
    stock_type: str  # COMMON | ETF
    industry: str = ""
    category: str = ""

    def contract(self, exchange: str = "SMART") -> Contract:
        return Contract(
            con_id=self.con_id,
            symbol=self.symbol,
            exchange=exchange or "SMART",
            primary_exchange=self.primary_exchange,
            local_symbol=self.symbol,
            trading_class=self.symbol if self.stock_type == "ETF" else "NMS",
        )


_ROWS = (
    ("SPY", 756733, "ARCA", "SPDR S&P 500 ETF TRUST", "ETF"),
    ("QQQ", 320227571, "NASDAQ", "INVESCO QQQ TRUST SERIES 1", "ETF"),
    ("IWM", 9579970, "ARCA", "ISHARES RUSSELL 2000 ETF", "ETF"),
    ("DIA", 73128548, "ARCA", "SPDR DOW JONES INDUSTRIAL AVRG ETF", "ETF"),
    ("AAPL", 265598, "NASDAQ", "APPLE INC", "COMMON"),
    ("MSFT", 272093, "NASDAQ", "MICROSOFT CORP", "COMMON"),
    ("AMZN", 3691937, "NASDAQ", "AMAZON.COM INC", "COMMON"),
    ("GOOGL", 208813719, "NASDAQ", "ALPHABET INC-CL A", "COMMON"),
    ("META", 107113386, "NASDAQ", "META PLATFORMS INC-CLASS A", "COMMON"),
    ("NVDA", 4815747, "NASDAQ", "NVIDIA CORP", "COMMON"),
    ("TSLA", 76792991, "NASDAQ", "TESLA INC", "COMMON"),
    ("IBM", 8314, "NYSE", "INTL BUSINESS MACHINES CORP", "COMMON"),
)

STOCKS: dict[str, Stock] = {
    sym: Stock(
        sym, con_id, primary, name, kind,
        industry="Funds" if kind == "ETF" else "Technology",
        category="Equity Fund" if kind == "ETF" else "Computers",
    )
    for sym, con_id, primary, name, kind in _ROWS
}
_BY_CON_ID = {s.con_id: s for s in STOCKS.values()}


def find_stock(con_id: int, symbol: str, sec_type: str, currency: str) -> Stock | None:
    """The stock a request means: by conId when given, else by symbol (STK, USD only)."""
    if sec_type not in ("", "STK") or currency not in ("", "USD"):
        return None
    if con_id:
        stock = _BY_CON_ID.get(con_id)
        return stock if stock and symbol in ("", stock.symbol) else None
    return STOCKS.get(symbol.upper())


HOURS_MODES = ("open", "regular", "closed")


def trading_hours(now_ns: int, days: int = 7, mode: str = "regular") -> tuple[str, str]:
    """IB's tradingHours and liquidHours strings for a US stock, from today (New York) on.

    Format as IB sends it since 2018: `20250106:0400-20250106:2000;20250111:CLOSED`.
    Weekends are closed; exchange holidays are not modelled. `mode` "open" makes the
    liquid hours span every whole day (a market that is always open: tests and night
    rehearsals are never out of hours); "closed" closes every day.
    """
    today = datetime.fromtimestamp(now_ns / NS, EXCHANGE_TZ).date()
    span = [today + timedelta(days=i) for i in range(days)]
    if mode == "closed":
        closed = ";".join(f"{d.strftime('%Y%m%d')}:CLOSED" for d in span)
        return closed, closed
    liquid = _whole_days(span) if mode == "open" else _sessions(span, "0930", "1600")
    return _sessions(span, "0400", "2000"), liquid


def _whole_days(span: list[date]) -> str:
    return ";".join(f"{d.strftime('%Y%m%d')}:0000-{(d + timedelta(days=1)).strftime('%Y%m%d')}:0000"
                    for d in span)


def _sessions(span: list[date], start: str, end: str) -> str:
    parts = []
    for d in span:
        ymd = d.strftime("%Y%m%d")
        parts.append(f"{ymd}:CLOSED" if d.weekday() >= 5 else f"{ymd}:{start}-{ymd}:{end}")
    return ";".join(parts)
