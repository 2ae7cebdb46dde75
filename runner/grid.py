"""An instrument's grids: the prices IB's market rule allows and the sizes its contract
details allow. Pure: no I/O; runner.ib.grid feeds it what the gateway answers.

Prices. A market rule is a ladder of (lowEdge, increment) bands, lowEdge ascending (IB's
reqMarketRule: `PriceIncrement`). A band applies from its lowEdge (inclusive) up to the
next band's lowEdge; below the first lowEdge the first band applies. A price is on the
grid when it is a whole number of its band's increments, counted from 0, as the fake
gateway counts (runner.gateway.rules). IB's edges are multiples of the increments on both
sides, so counting from 0 and counting from the edge agree; for a ladder whose edges are
not, the nearest prices offered are still ones this reading takes. A negative price (a
spread, a future below 0) is judged by its size, like the fake does.

Sizes. A quantity must be at least minSize and a whole number of sizeIncrement, where
IB gives them: 0, a negative, NaN or IB's "unset" double (1.7976931348623157E308) means
not given, and that part is not checked.

Exact: every number is read as the Decimal of its shortest repr (what the user wrote, as
runner.spec.tick_problem does), so 0.1 + 0.2 cannot fool a check.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal, localcontext
from typing import NamedTuple, ParamSpec, TypeVar

UNSET = 1e308  # IB's unset double is 1.7976931348623157E308; anything this big is unset
# Exact for any two floats: 17 digits each, exponents -324..308 (a quotient of 1e300 by
# 0.01 needs 302 digits; the default 28 would raise DivisionImpossible)
_EXACT = Context(prec=1000)
P = ParamSpec("P")
R = TypeVar("R")


def _exactly(f: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(f)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with localcontext(_EXACT):
            return f(*args, **kwargs)
    return run


class Band(NamedTuple):
    low: Decimal  # lowEdge: from this price up (inclusive)
    step: Decimal  # increment


Ladder = tuple[Band, ...]


def exact(x: float | str) -> Decimal:
    """`x` as the Decimal of its shortest text: 0.1 -> Decimal("0.1")."""
    return Decimal(repr(float(x)))


def text(x: Decimal) -> str:
    """Plain decimal text, no exponent and no trailing zeros: 3000, 0.00005, 1000.5."""
    out = format(x, "f")
    return out.rstrip("0").rstrip(".") if "." in out else out


def given(x: float | str | None) -> Decimal | None:
    """An IB number that says something: None for None, "", 0, <0, NaN, inf, unset."""
    try:
        value = float(x) if x not in (None, "") else math.nan
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value) or value <= 0 or value >= UNSET:
        return None
    return exact(value)


def ladder(pairs: object) -> Ladder | None:
    """A ladder from IB's (lowEdge, increment) pairs (PriceIncrement or tuples of numbers
    or text); None when it says nothing usable (empty, an increment not > 0)."""
    bands: list[Band] = []
    try:
        for low, step in pairs:  # type: ignore[attr-defined]
            increment = given(step)
            if increment is None or not math.isfinite(float(low)):
                return None
            bands.append(Band(exact(low), increment))
    except (TypeError, ValueError):
        return None
    return tuple(sorted(bands)) or None


def band_at(rule: Ladder, price: Decimal) -> int:
    """The index of the band that applies at `price` (by its size)."""
    size, found = abs(price), 0
    for i, b in enumerate(rule):
        if size >= b.low:
            found = i
    return found


@_exactly
def on_grid(rule: Ladder, price: Decimal) -> bool:
    return price % rule[band_at(rule, price)].step == 0


@_exactly
def below(rule: Ladder, p: Decimal) -> Decimal | None:
    """The largest valid price under `p` (>= 0); None when there is none above 0."""
    here = band_at(rule, p)
    for i in range(here, -1, -1):
        step, top = rule[i].step, p if i == here else rule[i + 1].low
        c = (top / step).to_integral_value(ROUND_CEILING) * step - step  # under top
        if i == 0 or c >= rule[i].low:
            return c if c > 0 else None
    return None


@_exactly
def above(rule: Ladder, p: Decimal) -> Decimal:
    """The smallest valid price over `p` (>= 0)."""
    i = band_at(rule, p)
    c = ((p / rule[i].step).to_integral_value(ROUND_FLOOR) + 1) * rule[i].step
    while i + 1 < len(rule) and c >= rule[i + 1].low:  # past the band: the next one's first
        i += 1
        c = (rule[i].low / rule[i].step).to_integral_value(ROUND_CEILING) * rule[i].step
    return c


@_exactly
def price_problem(rule: Ladder, price: float, grid: str, source: str) -> str:
    """Why `price` is not on the grid, in one line, or "" when it is: "3000.5 is not on
    the price grid of 7203 on TSEJ (increment 1 from 3000, market rule 9005): use 3000
    or 3001" (`grid` "of 7203 on TSEJ", `source` "market rule 9005")."""
    p = exact(price)
    if on_grid(rule, p):
        return ""
    b = rule[band_at(rule, p)]
    sign = -1 if p < 0 else 1
    near = sorted(sign * x for x in (below(rule, abs(p)), above(rule, abs(p))) if x is not None)
    applies = f"increment {text(b.step)}" + (f" from {text(b.low)}" if len(rule) > 1 else "")
    return (f"{text(p)} is not on the price grid {grid} ({applies}, {source}): use "
            f"{' or '.join(text(x) for x in near)}")


@_exactly
def size_problem(qty: float, min_size: float | str | None,
                 increment: float | str | None, what: str) -> str:
    """Why `qty` is not a size the instrument takes (`what`: "7203"), or "" when it is:
    under minSize, the smallest size it takes; off sizeIncrement, the sizes either side
    (those not under minSize)."""
    q, least, step = exact(qty), given(min_size), given(increment)
    if least is not None and q < least:
        return (f"qty {text(q)} is below {text(least)}, the minimum size of {what}: use "
                f"{text(_up_to(least, step))}")
    if step is None or q % step == 0:
        return ""
    down = (q / step).to_integral_value(ROUND_FLOOR) * step
    near = [x for x in (down, down + step) if x > 0 and (least is None or x >= least)]
    return (f"qty {text(q)} is not a multiple of {text(step)}, the size increment of "
            f"{what}: use {' or '.join(text(x) for x in near)}")


def _up_to(least: Decimal, step: Decimal | None) -> Decimal:
    """The smallest size >= `least` that is a multiple of `step`."""
    if step is None:
        return least
    return (least / step).to_integral_value(ROUND_CEILING) * step
