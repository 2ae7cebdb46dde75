"""The classic commands' instrument flags: --sec-type, --exchange, --currency, --expiry,
--strike, --right, --multiplier, --con-id, --local-symbol, --trading-class,
--primary-exchange. Any of them makes the classic spec name its instrument in a
`contract:` block (runner.contract), with --symbol; without them it is `order.symbol`
as before (a US stock on SMART)."""

from __future__ import annotations

import argparse
from typing import Any

from runner.contract import RIGHTS, SEC_TYPES
from runner.flags import choice, number

# (flag, the contract key, metavar, type, help)
FLAGS: tuple[tuple[str, str, str, Any, str], ...] = (
    ("--sec-type", "sec_type", "TYPE", choice(SEC_TYPES[:-1]),
     f"IB's security type, any case: {', '.join(SEC_TYPES[:-1])} (default: STK)"),
    ("--exchange", "exchange", "EXCH", str.upper, "routing destination (default: SMART; "
     "IDEALPRO for CASH, PAXOS for CRYPTO; a FUT or FOP names its own, e.g. CME)"),
    ("--currency", "currency", "CCY", str.upper, "currency of the prices (default: USD)"),
    ("--expiry", "expiry", "YYYYMM[DD]", str, "FUT, OPT, FOP: the contract month or last "
     "trade date (IB's lastTradeDateOrContractMonth)"),
    ("--strike", "strike", "PRICE", number, "OPT, FOP: the strike"),
    ("--right", "right", "C|P", choice(tuple(RIGHTS)), "OPT, FOP: C (call) or P (put), any "
     "case"),
    ("--multiplier", "multiplier", "N", number, "FUT, OPT, FOP (needed there): units per "
     "contract, e.g. 50 for ES, 100 for a stock option; notional is qty x price x this"),
    ("--con-id", "con_id", "ID", int, "IB's contract id (every other field given must agree)"),
    ("--local-symbol", "local_symbol", "SYM", str, "IB's localSymbol, e.g. ESH6"),
    ("--trading-class", "trading_class", "CLASS", str.upper, "IB's tradingClass"),
    ("--primary-exchange", "primary_exchange", "EXCH", str.upper, "a SMART stock's listing "
     "exchange, e.g. ARCA"),
)


def contract_flags(p: argparse.ArgumentParser) -> None:
    for flag, key, metavar, kind, text in FLAGS:
        spelled = "--" + flag[2:].replace("-", "_")  # --sec_type too
        p.add_argument(*dict.fromkeys((flag, spelled)), dest=key, type=kind, metavar=metavar,
                       help=text)


def with_contract(args: argparse.Namespace, data: dict[str, Any]) -> None:
    """Move the classic spec's instrument into a `contract:` when an instrument flag is
    given (in place); else leave `order.symbol` as it is."""
    given = {key: getattr(args, key) for _, key, *_ in FLAGS
             if getattr(args, key, None) is not None}
    if not given:
        return
    order = data["order"]
    data["contract"] = {"sec_type": "STK", "symbol": order.pop("symbol"), **given}
