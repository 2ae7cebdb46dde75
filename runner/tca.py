"""Transaction-cost analysis: pure functions, no I/O (DESIGN §6).

Signs: s = +1 for BUY, -1 for SELL, so every cost figure is positive when the order paid
(bought above / sold below the benchmark). Prices come from `bars` (runner/bars.py):
arrival = the close of the last bar that ended at or before the instant (no look-ahead).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

BPS = 1e4
TERMINAL = ("FILL", "CANCEL", "REJ")  # an order's final state is its last of these


class Bars(Protocol):
    def arrival_at(self, t_ns: int) -> float | None: ...

    def vwap_between(self, t0_ns: int, t1_ns: int) -> float | None: ...

    def volume_between(self, t0_ns: int, t1_ns: int) -> float: ...


def side_sign(side: str) -> int:
    if side not in ("BUY", "SELL"):
        raise ValueError(f"side must be BUY or SELL, got {side!r}")
    return 1 if side == "BUY" else -1


def _bps(sign: int, price: float, benchmark: float | None) -> float | None:
    if not benchmark:
        return None
    return sign * (price - benchmark) / benchmark * BPS


def implementation_shortfall_bps(
    sign: int, qty: float, fill_qty: float, avg_px: float, arrival: float, end_px: float
) -> float:
    """Perold's IS with decision price = arrival: the unfilled part is charged at the
    price when the order ended (the opportunity cost of not trading it)."""
    filled = fill_qty * (avg_px - arrival)
    unfilled = (qty - fill_qty) * (end_px - arrival)
    return sign * (filled + unfilled) / (qty * arrival) * BPS


def snapshot(
    side: str,
    qty: float,
    fill_qty: float,
    avg_px: float | None,
    commission: float | None,
    intent_ns: int,
    first_fill_ns: int | None,
    end_ns: int,
    bars: Bars | None,
) -> dict[str, float | None] | None:
    """The PNL_SNAPSHOT figures of one finished order, keyed like the ledger columns;
    None unless it filled something and the arrival price is known."""
    if bars is None or fill_qty <= 0 or qty <= 0 or avg_px is None:
        return None
    arrival = bars.arrival_at(intent_ns)
    if not arrival:
        return None
    s = side_sign(side)
    vwap = bars.vwap_between(intent_ns, end_ns)
    end_px = bars.arrival_at(end_ns) or arrival
    volume = bars.volume_between(intent_ns, end_ns)
    return {
        "arrival_px": arrival,
        "avg_px": avg_px,
        "fill_qty": fill_qty,
        "fill_ratio": fill_qty / qty,
        "shortfall_bps": _bps(s, avg_px, arrival),
        "vwap_px": vwap,
        "vwap_slippage_bps": _bps(s, avg_px, vwap),
        "is_bps": implementation_shortfall_bps(s, qty, fill_qty, avg_px, arrival, end_px),
        "fees_bps": None if commission is None else commission / (fill_qty * avg_px) * BPS,
        "participation": fill_qty / volume if volume else None,
        "ms_to_first_fill": None if first_fill_ns is None else (first_fill_ns - intent_ns) / 1e6,
        "ms_to_done": (end_ns - intent_ns) / 1e6,
        "commission": commission,
    }


# ----------------------------------------------------------------------------- summary

ORDER_KEYS = ("run_id", "tag")
_LAST = ("avg_px", "arrival_px", "shortfall_bps", "vwap_slippage_bps", "commission")
ORDER_FIELDS = (*ORDER_KEYS, "symbol", "side", "qty", "state", "fill_qty", *_LAST)
_COLUMNS = ("ts", "seq", "event", "symbol", "side", "qty", "fill_qty", *_LAST)
NEEDED = (*ORDER_KEYS, *_COLUMNS)  # the ledger columns `summarize` reads


def summarize(table: pa.Table | pd.DataFrame) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One row per (run_id, tag) order, in order of first appearance, and the totals.

    Per order: symbol/side/qty as first given, state = last of FILL/CANCEL/REJ (else
    OPEN), fill_qty = the largest cumulative fill (0 if none), and the last value seen of
    avg_px, arrival_px, shortfall_bps, vwap_slippage_bps and commission (cumulative).
    Totals weight shortfall and VWAP slippage by fill_qty, over orders that have them.
    """
    orders = order_table(table)
    return orders.to_pylist(), totals(orders)


def order_table(table: pa.Table | pd.DataFrame) -> pa.Table:
    """`summarize`'s per-order rows as an Arrow table (columns ORDER_FIELDS)."""
    return _per_order(_in_time_order(table))


def _in_time_order(table: pa.Table | pd.DataFrame) -> pa.Table:
    import numpy as np
    import pyarrow as pa

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table[list(NEEDED)], preserve_index=False)
    table = table.select(list(NEEDED))
    ts = table.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False)
    if not bool(np.all(ts[1:] >= ts[:-1])):  # read_ledger's tables are sorted already
        table = table.sort_by([("ts", "ascending"), ("run_id", "ascending"), ("seq", "ascending")])
    return table


def _per_order(table: pa.Table) -> pa.Table:
    """Grouped in arrow: without threads its aggregation keeps row order, so "first" and
    "last" mean first and last in time, and groups come in order of first appearance."""
    import pyarrow as pa
    import pyarrow.compute as pc

    event = table.column("event")
    terminal = pc.if_else(pc.is_in(event, pa.array(TERMINAL)), event, None)
    table = table.append_column("state", terminal)
    aggs = [(c, "first") for c in ("symbol", "side", "qty")] + [("state", "last")]
    aggs += [("fill_qty", "max")] + [(c, "last") for c in _LAST]
    grouped = table.group_by(list(ORDER_KEYS), use_threads=False).aggregate(aggs)
    grouped = grouped.rename_columns([_bare(n) for n in grouped.column_names])
    grouped = grouped.set_column(
        grouped.schema.get_field_index("state"), "state", pc.fill_null(grouped["state"], "OPEN")
    )
    filled = pc.fill_null(grouped["fill_qty"], 0.0)
    grouped = grouped.set_column(grouped.schema.get_field_index("fill_qty"), "fill_qty", filled)
    return grouped.select(list(ORDER_FIELDS))


def _bare(name: str) -> str:
    for suffix in ("_first", "_last", "_max"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _weighted(orders: pa.Table, column: str) -> float | None:
    import pyarrow.compute as pc

    values, weights = orders[column], orders["fill_qty"]
    has = pc.and_(pc.is_valid(values), pc.greater(weights, 0))
    weight = pc.sum(pc.filter(weights, has)).as_py()
    if not weight:
        return None
    weighted = pc.sum(pc.multiply(pc.filter(values, has), pc.filter(weights, has))).as_py()
    return float(weighted) / float(weight)


def totals(orders: pa.Table) -> dict[str, Any]:
    """The totals line of an `order_table`."""
    import pyarrow.compute as pc

    filled = orders.filter(pc.greater(orders["fill_qty"], 0))
    notional = pc.sum(pc.multiply(filled["fill_qty"], filled["avg_px"])).as_py()
    return {
        "orders": orders.num_rows,
        "filled_orders": filled.num_rows,
        "fill_qty": float(pc.sum(filled["fill_qty"]).as_py() or 0.0),
        "notional": float(notional or 0.0),
        "commission": float(pc.sum(orders["commission"]).as_py() or 0.0),
        "shortfall_bps": _weighted(orders, "shortfall_bps"),
        "vwap_slippage_bps": _weighted(orders, "vwap_slippage_bps"),
    }
