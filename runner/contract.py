"""An order's instrument: the spec's `contract:` block, its checks, and the IB Contract
fields it becomes.

A spec names its instrument either the old way, in `order` (symbol, sec_type STK, CASH or
CRYPTO, exchange, currency), or in a top-level `contract:` with every field IB's Contract
has: sec_type (STK, FUT, OPT, FOP, CASH, CRYPTO, CFD; IND is data only and takes no
order), symbol, exchange, currency, con_id, expiry (IB's lastTradeDateOrContractMonth,
YYYYMM or YYYYMMDD), strike, right, multiplier, local_symbol, trading_class and
primary_exchange. Not both: the instrument is said once.

- The exchange defaults by type: IDEALPRO for CASH, PAXOS for CRYPTO, SMART for STK, OPT
  and CFD; a future or a future's option names its exchange (CME).
- IB decides what matches: a FUT without its expiry, or an option without its strike,
  is asked as it is, and qualification lists the candidates when IB has several
  (runner.ib.qualify). strike and right are for options only, expiry for FUT, OPT, FOP.
- FUT, OPT and FOP name their multiplier (any other type may): notional, the caps and
  TCA are qty x price x multiplier, so the plan knows them before IB is asked, and
  qualification refuses a contract whose multiplier IB says is another, or one IB gives
  a multiplier the spec does not name (runner.ib.qualify).
- STK, FUT, OPT, FOP and CFD trade in whole units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.flags import either
from runner.output import number_text

if TYPE_CHECKING:
    from runner.yamldoc import Doc

SEC_TYPES = ("STK", "FUT", "OPT", "FOP", "CASH", "CRYPTO", "CFD", "IND")
DEFAULT_EXCHANGE = {"CASH": "IDEALPRO", "CRYPTO": "PAXOS", "STK": "SMART", "OPT": "SMART",
                    "CFD": "SMART"}  # FUT and FOP: none, the spec names it
WHOLE_UNITS = frozenset({"STK", "FUT", "OPT", "FOP", "CFD"})
MULTIPLIED = frozenset({"FUT", "OPT", "FOP"})  # the types whose spec names a multiplier
OPTIONS = frozenset({"OPT", "FOP"})
INSTRUMENT_KEYS = ("symbol", "sec_type", "exchange", "currency")  # the old way, in `order`
RIGHTS = {"C": "C", "CALL": "C", "P": "P", "PUT": "P"}


@dataclass(frozen=True, slots=True)
class ContractTerms:
    """The Contract fields beyond symbol, sec_type, exchange and currency ("" / 0 / None:
    not given, so IB's match is wider)."""

    con_id: int = 0
    expiry: str = ""  # IB's lastTradeDateOrContractMonth: YYYYMM or YYYYMMDD
    strike: float | None = None
    right: str = ""  # C | P
    multiplier: float | None = None
    local_symbol: str = ""
    trading_class: str = ""
    primary_exchange: str = ""

    def ib_fields(self) -> list[tuple[str, Any]]:
        """The ib_async Contract fields these set, as sent."""
        fields: list[tuple[str, Any]] = [
            ("conId", self.con_id), ("lastTradeDateOrContractMonth", self.expiry),
            ("strike", self.strike), ("right", self.right),
            ("multiplier", "" if self.multiplier is None else number_text(self.multiplier)),
            ("localSymbol", self.local_symbol), ("tradingClass", self.trading_class),
            ("primaryExchange", self.primary_exchange)]
        return [(name, value) for name, value in fields if value not in (0, "", None)]

    def describe(self) -> str:
        """`conId=... lastTradeDateOrContractMonth=... strike=...`, or "" for none."""
        return " ".join(f"{name}={number_text(v) if isinstance(v, float) else v}"
                        for name, v in self.ib_fields())


NO_TERMS = ContractTerms()


def ib_contract(symbol: str, sec_type: str, exchange: str, currency: str,
                terms: ContractTerms) -> list[tuple[str, Any]]:
    """Every ib_async Contract field runner sets, as sent (qualification's request and
    the plan's `contract`); the others keep ib_async's defaults."""
    return [("secType", sec_type), ("symbol", symbol), ("exchange", exchange),
            ("currency", currency), *terms.ib_fields()]


def merge(doc: Doc, data: dict[str, Any]) -> None:
    """With a `contract:`, the order's symbol, sec_type, exchange and currency are the
    contract's (an order that also gives one is an error); either way the exchange
    defaults by type. In place, on the checked (defaults filled) `data`."""
    order = data.get("order")
    given = doc.data.get("order") if isinstance(doc.data.get("order"), dict) else {}
    contract = data.get("contract")
    if order is None:
        return
    if contract is None:
        if "symbol" not in given:
            doc.error(("order",), "no instrument: add order.symbol (e.g. SPY), or a "
                                  "contract: block (sec_type, symbol, ...)")
        if "exchange" not in given:
            order["exchange"] = DEFAULT_EXCHANGE.get(order["sec_type"], "SMART")
        return
    for key in INSTRUMENT_KEYS:
        if key in given:
            doc.error(("order", key), "the instrument is in contract:; say it once "
                                      f"(remove order.{key})", key=True)
    sec_type = contract["sec_type"]
    order["symbol"], order["sec_type"] = contract["symbol"], sec_type
    order["currency"] = contract.get("currency", "USD")
    exchange = contract.get("exchange", DEFAULT_EXCHANGE.get(sec_type))
    if exchange is None and sec_type != "IND":  # IND: refused by `check`
        doc.error(("contract", "sec_type"), f"{_a(sec_type)} names its exchange: add "
                                            "contract.exchange (e.g. CME)")
    order["exchange"] = exchange or ""


def check(doc: Doc, data: dict[str, Any]) -> None:
    """The fields each type needs and takes (the module docstring)."""
    contract = data.get("contract")
    if contract is None:
        return
    sec_type = contract["sec_type"]
    at = ("contract", "sec_type")
    if sec_type == "IND":
        doc.error(at, "IND is data only: IB takes no order for an index (trade its "
                      "future, FUT, or its options, OPT)")
        return
    if sec_type not in OPTIONS:
        for key in ("strike", "right"):
            if key in contract:
                doc.error(("contract", key), f"is for options ({either(sorted(OPTIONS))}), "
                                             f"not {sec_type}", key=True)
    if sec_type not in MULTIPLIED and "expiry" in contract:
        doc.error(("contract", "expiry"), f"{_a(sec_type)} has no expiry; remove it", key=True)
    expiry = str(contract.get("expiry", ""))
    if expiry and not (len(expiry) in (6, 8) and expiry.isdigit()):  # a YAML number
        doc.error(("contract", "expiry"), f"{expiry} is not YYYYMM or YYYYMMDD (e.g. 202603, "
                                          "the contract month, or 20260320)")
    if sec_type in MULTIPLIED and "multiplier" not in contract:
        doc.error(at, f"{_a(sec_type)} names its multiplier: add contract.multiplier (50 for "
                      "ES, 100 for a US stock option); notional, caps and TCA are "
                      "qty x price x multiplier, and IB's must agree")


def _a(sec_type: str) -> str:
    return f"{'an' if sec_type[0] in 'AEIOU' else 'a'} {sec_type}"


def terms(data: dict[str, Any]) -> ContractTerms:
    """The checked spec's contract fields (NO_TERMS without a `contract:`)."""
    c = data.get("contract")
    if c is None:
        return NO_TERMS
    return ContractTerms(
        con_id=int(c.get("con_id", 0)), expiry=str(c.get("expiry", "")),
        strike=float(c["strike"]) if "strike" in c else None,
        right=RIGHTS[str(c["right"]).upper()] if "right" in c else "",
        multiplier=float(c["multiplier"]) if "multiplier" in c else None,
        local_symbol=c.get("local_symbol", ""), trading_class=c.get("trading_class", ""),
        primary_exchange=c.get("primary_exchange", ""))
