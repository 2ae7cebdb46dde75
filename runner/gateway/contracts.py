"""Which instrument a request means, and the trading-hours strings of its details.

The table is `instruments.listing(today)`. A request names a contract by conId, or by
symbol (or localSymbol) and whatever else it gives: each field given must agree, each
field left out widens the match, so one request may mean several contracts (contract
details answers all of them; an order or a market-data request is refused as
ambiguous). Nothing matching: error 200, as a real gateway answers.
docs/gateway-instruments.md, "Matching", is the rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from runner.gateway import wire
from runner.gateway.hours import HOURS_MODES, session_hours, trading_hours
from runner.gateway.instruments import STOCKS, Instrument, listing

__all__ = ["HOURS_MODES", "STOCKS", "ContractQuery", "Instrument", "details_for",
           "listed_today", "resolve", "session_hours", "trading_hours"]

EXCHANGE_TZ = ZoneInfo("America/New_York")  # the gateway's date: New York's
NS = 1_000_000_000
_RIGHTS = {"C": "C", "CALL": "C", "P": "P", "PUT": "P"}


@dataclass(frozen=True, slots=True)
class ContractQuery:
    """The 12 contract fields of a request, as sent ("" / 0 when not given)."""

    con_id: int = 0
    symbol: str = ""
    sec_type: str = ""
    expiry: str = ""  # lastTradeDateOrContractMonth: YYYYMM or YYYYMMDD
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    local_symbol: str = ""
    trading_class: str = ""

    @property
    def name(self) -> str:
        """How IB's texts name the request: its symbol (else localSymbol, else conId)."""
        return self.symbol or self.local_symbol or str(self.con_id)


def listed_today(now_ns: int) -> tuple[Instrument, ...]:
    return listing(datetime.fromtimestamp(now_ns / NS, EXCHANGE_TZ).date())


def conflict(i: Instrument, q: ContractQuery) -> tuple[str, str, str] | None:
    """The first field `q` gives that `i` disagrees with: (what, requested, in contract)."""
    checks = (
        ("symbol", q.symbol.upper(), i.symbol),
        ("secType", q.sec_type.upper(), i.sec_type),
        ("expiry", q.expiry.strip(), i.contract_month if len(q.expiry.strip()) == 6
         else i.last_trade),
        ("strike", wire.num(q.strike) if q.strike else "", wire.num(i.strike)),
        ("right", _RIGHTS.get(q.right.upper(), q.right.upper()), i.right),
        ("multiplier", _number(q.multiplier), _number(i.multiplier or "1")),
        ("currency", q.currency.upper(), i.currency),
        ("localSymbol", " ".join(q.local_symbol.split()), " ".join(i.local_symbol.split())),
        ("tradingClass", q.trading_class, i.trading_class),
        ("primaryExchange", q.primary_exchange.upper(), i.primary_exchange),
    )
    for what, asked, has in checks:
        if asked and asked != has:
            return what, asked, has
    exchange = q.exchange.upper()
    if exchange and exchange not in i.valid_exchanges:
        return "exchange", exchange, ",".join(i.valid_exchanges)
    return None


def _number(text: str) -> str:
    try:
        return wire.num(float(text)) if text.strip() else ""
    except ValueError:
        return text


def details_for(q: ContractQuery, table: Iterable[Instrument]) -> list[Instrument]:
    """What reqContractDetails answers: by conId (every other field given must agree),
    else every instrument with that symbol or localSymbol whose fields agree."""
    if q.con_id:
        return [i for i in table if i.con_id == q.con_id and conflict(i, q) is None]
    if not (q.symbol or q.local_symbol):
        return []
    return [i for i in table if conflict(i, q) is None]


def resolve(q: ContractQuery, table: Iterable[Instrument]) -> Instrument | tuple[int, str]:
    """The one instrument an order or a market-data request means, else IB's error for
    the request (code, text): 478 when the conId's contract disagrees with another field
    given, 200 for none or several."""
    table = tuple(table)
    by_id = [i for i in table if q.con_id and i.con_id == q.con_id]
    found = conflict(by_id[0], q) if by_id else None
    if found is not None:
        return wire.CONTRACT_CONFLICT, wire.CONFLICT_TEXT.format(*found)
    candidates = details_for(q, table)
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        return wire.NO_SECURITY, wire.AMBIGUOUS_TEXT.format(q.name)
    return wire.NO_SECURITY, wire.ERROR_TEXT[wire.NO_SECURITY]
