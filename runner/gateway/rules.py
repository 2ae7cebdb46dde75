"""IB's market rules as the fake gateway knows them: price ladders by rule id.

A contract's details name one rule id per valid exchange (`marketRuleIds`); reqMarketRule
(91) answers a rule's ladder as (lowEdge, increment) pairs: from a price of lowEdge up,
prices move in steps of increment. A price is on the grid when it is a whole number of
its band's increments (counted from 0: IB's band edges are multiples of both the
increments either side). Ids 26, 67 and 239 are the ones IB's contract details show for
such instruments in public captures; the 9000s are the fake's own numbering.
docs/gateway-instruments.md lists them.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

Ladder = tuple[tuple[str, str], ...]  # (lowEdge, increment), as IB's text, lowEdge ascending

US_STOCK = 26  # US stocks (and a CFD on one): 0.01
CME_INDEX_FUTURE = 67  # ES / MES: 0.25 index points
IDEALPRO_EUR = 239  # EUR.USD: 0.00005
IDEALPRO_JPY = 9001  # USD.JPY: 0.005
OPT_PENNY_ALL = 9002  # SPY options: 0.01 at every price (penny program, whole class)
OPT_PENNY = 9003  # AAPL options: 0.01 below 3.00, 0.05 from 3.00
ES_OPTION = 9004  # ES options: 0.05 up to 5.00 (reduced tick), 0.25 above
TSE_TOPIX100 = 9005  # Tokyo, TOPIX 100 constituents (JPX tick table)
PAXOS_BTC = 9006  # BTC on PAXOS: 0.25
INDEX_CFD = 9007  # IBUS500: 0.1
INDEX = 9008  # SPX (data only): 0.01

MARKET_RULES: dict[int, Ladder] = {
    US_STOCK: (("0", "0.01"),),
    CME_INDEX_FUTURE: (("0", "0.25"),),
    IDEALPRO_EUR: (("0", "0.00005"),),
    IDEALPRO_JPY: (("0", "0.005"),),
    OPT_PENNY_ALL: (("0", "0.01"),),
    OPT_PENNY: (("0", "0.01"), ("3", "0.05")),
    ES_OPTION: (("0", "0.05"), ("5", "0.25")),
    TSE_TOPIX100: (("0", "0.1"), ("1000", "0.5"), ("3000", "1"), ("10000", "5"),
                   ("30000", "10"), ("100000", "50"), ("300000", "100"), ("1000000", "500"),
                   ("3000000", "1000"), ("10000000", "5000"), ("30000000", "10000")),
    PAXOS_BTC: (("0", "0.25"),),
    INDEX_CFD: (("0", "0.1"),),
    INDEX: (("0", "0.01"),),
}


def min_tick(rule_id: int) -> str:
    """The smallest increment of a rule, as IB's text: what contract details call minTick."""
    return min((inc for _, inc in MARKET_RULES[rule_id]), key=Decimal)


def increment_at(rule_id: int, price: Decimal) -> Decimal:
    """The step of prices at `price` (by its size: a negative price uses its band too)."""
    step = Decimal(MARKET_RULES[rule_id][0][1])
    for low, inc in MARKET_RULES[rule_id]:
        if abs(price) >= Decimal(low):
            step = Decimal(inc)
    return step


def on_grid(rule_id: int, price: float) -> bool:
    """Whether `price` (its shortest decimal text, as the client sent it) is on the rule's
    grid. A price that is not a finite number is not."""
    try:
        exact = Decimal(repr(float(price)))
        return exact % increment_at(rule_id, exact) == 0
    except (InvalidOperation, ValueError):
        return False
