"""Transaction-cost analysis: pure functions, no I/O (DESIGN §6).

Signs: s = +1 for BUY, -1 for SELL, so every cost figure is positive when the order paid
(bought above / sold below the benchmark). Prices come from `bars` (runner/bars.py):
arrival = the close of the last bar that ended at or before the instant (no look-ahead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
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
_FIRST = ("symbol", "side", "currency", "qty")
_LAST = ("avg_px", "arrival_px", "commission")
_SNAPSHOT = ("vwap_px", "shortfall_bps", "vwap_slippage_bps", "is_bps", "fees_bps",
             "participation", "ms_to_first_fill", "ms_to_done")  # only on PNL_SNAPSHOT rows
ORDER_FIELDS = (*ORDER_KEYS, *_FIRST, "state", "fill_qty", "fill_ratio", "avg_px",
                "arrival_px", *_SNAPSHOT, "commission")  # fmt: skip
NEEDED = (*ORDER_KEYS, "ts", "seq", "event", *_FIRST, "fill_qty", *_LAST, *_SNAPSHOT)
BPS_TOTALS = ("shortfall_bps", "vwap_slippage_bps", "is_bps", "fees_bps")


def order_table(table: pa.Table) -> pa.Table:
    """One row per (run_id, tag) order (columns ORDER_FIELDS), in order of first appearance.

    symbol/side/currency/qty as first given, state = last of FILL/CANCEL/REJ (else OPEN),
    fill_qty = the largest cumulative fill (0 if none), fill_ratio = fill_qty/qty, the
    last value seen of avg_px, arrival_px and commission (cumulative), and the TCA
    figures of the order's last PNL_SNAPSHOT. Rows are taken in time order.
    """
    return _per_order(_in_time_order(table.select(list(NEEDED))))


def _in_time_order(table: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    ts = table.column("ts")
    if table.num_rows > 1 and not pc.all(pc.greater_equal(ts[1:], ts[:-1])).as_py():
        # read_ledger's tables are sorted already; one of several days' is not
        table = table.sort_by([("ts", "ascending"), ("run_id", "ascending"), ("seq", "ascending")])
    return table


def _per_order(table: pa.Table) -> pa.Table:
    """Grouped in arrow: without threads its aggregation keeps row order, so "first" and
    "last" mean first and last in time, and groups come in order of first appearance."""
    import pyarrow as pa
    import pyarrow.compute as pc

    event = table.column("event")
    terminal = pc.if_else(pc.is_in(event, pa.array(TERMINAL)), event, None)
    events = table.drop_columns(list(_SNAPSHOT)).append_column("state", terminal)
    aggs = [(c, "first") for c in _FIRST] + [("state", "last")]
    aggs += [("fill_qty", "max")] + [(c, "last") for c in _LAST]
    grouped = _grouped(events, aggs)
    snapshots = table.filter(pc.equal(event, "PNL_SNAPSHOT"))
    figures = _grouped(snapshots.select([*ORDER_KEYS, *_SNAPSHOT]),
                       [(c, "last") for c in _SNAPSHOT])
    where = pc.index_in(_order_key(grouped), value_set=_order_key(figures))
    for name in _SNAPSHOT:  # grouped over the PNL_SNAPSHOT rows (1/5 of a day), not all
        grouped = grouped.append_column(name, figures[name].take(where))
    grouped = _replace(grouped, "state", pc.fill_null(grouped["state"], "OPEN"))
    filled = pc.fill_null(grouped["fill_qty"], 0.0)
    grouped = _replace(grouped, "fill_qty", filled)
    qty = grouped["qty"]
    ratio = pc.if_else(pc.greater(qty, 0), pc.divide(filled, qty), None)
    return grouped.append_column("fill_ratio", ratio).select(list(ORDER_FIELDS))


def _grouped(table: pa.Table, aggs: list[tuple[str, str]]) -> pa.Table:
    grouped = table.group_by(list(ORDER_KEYS), use_threads=False).aggregate(aggs)
    return grouped.rename_columns([_bare(n) for n in grouped.column_names])


def _order_key(table: pa.Table) -> Any:
    import pyarrow.compute as pc

    return pc.binary_join_element_wise(table["run_id"], table["tag"], "\x1f")


def _replace(table: pa.Table, name: str, column: Any) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, column)


def _bare(name: str) -> str:
    for suffix in ("_first", "_last", "_max"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# ----------------------------------------------------------------------------- selection


@dataclass(frozen=True, slots=True)
class Selection:
    """Which orders a report keeps: tag (exact, or a glob of * and ?), symbol (exact),
    side (BUY/SELL, any case). None keeps all."""

    tag: str | None = None
    symbol: str | None = None
    side: str | None = None

    def keep(self, orders: pa.Table) -> pa.Table:
        """The orders that match every filter given."""
        return orders if self == Selection() else orders.filter(self.mask(orders))

    def mask(self, orders: pa.Table) -> Any:
        """True for each row (tag, symbol and side columns) that matches every filter."""
        import pyarrow as pa
        import pyarrow.compute as pc

        masks = [pa.array([True] * orders.num_rows, pa.bool_())]
        if self.tag is not None:
            masks.append(_tag_mask(orders["tag"], self.tag))
        if self.symbol is not None:
            masks.append(pc.equal(orders["symbol"], self.symbol))
        if self.side is not None:
            masks.append(pc.equal(orders["side"], self.side.upper()))
        mask = masks[0]
        for more in masks[1:]:
            mask = pc.and_kleene(mask, more)
        return pc.fill_null(mask, False)


def _tag_mask(tags: Any, pattern: str) -> Any:
    """Exact match, or a glob when the pattern has * (any run of characters) or ? (one)."""
    import pyarrow.compute as pc

    if "*" not in pattern and "?" not in pattern:
        return pc.equal(tags, pattern)
    return pc.match_substring_regex(tags, glob_regex(pattern))


def glob_regex(pattern: str) -> str:
    """The anchored regular expression of a glob of * and ? (other characters literal)."""
    import re

    parts = {"*": ".*", "?": "."}
    return "^" + "".join(parts.get(c) or re.escape(c) for c in pattern) + "$"


# ----------------------------------------------------------------------------- totals


def currencies(orders: pa.Table) -> list[str | None]:
    """The currencies of the orders, sorted; None (not recorded: older ledgers) last."""
    import pyarrow.compute as pc

    found = pc.unique(orders["currency"]).to_pylist()
    return sorted(c for c in found if c is not None) + ([None] if None in found else [])


def in_currency(orders: pa.Table, currency: str | None) -> pa.Table:
    """The orders priced in `currency` (None: those whose currency was not recorded)."""
    import pyarrow.compute as pc

    column = orders["currency"]
    mask = pc.is_null(column) if currency is None else pc.fill_null(
        pc.equal(column, currency), False)
    return orders.filter(mask)


def _weighted(filled: pa.Table, weights: Any, column: str) -> float | None:
    """Mean of `column` weighted by `weights`, over the orders that have a value."""
    import pyarrow.compute as pc

    values = filled[column]
    has = pc.is_valid(values)
    weight = pc.sum(pc.filter(weights, has)).as_py()
    if not weight:
        return None
    weighted = pc.sum(pc.multiply(pc.filter(values, has), pc.filter(weights, has))).as_py()
    return float(weighted) / float(weight)


def totals(orders: pa.Table, currency: str | None) -> dict[str, Any]:
    """The totals of `order_table` rows that are all in one currency. The bps figures are
    weighted by filled notional (fill_qty·avg_px), so fees_bps is the commission over
    the notional, and every total is in that one currency."""
    import pyarrow.compute as pc

    filled = orders.filter(pc.and_(pc.greater(orders["fill_qty"], 0), pc.is_valid(
        orders["avg_px"])))
    notional = pc.multiply(filled["fill_qty"], filled["avg_px"])
    return {
        "currency": currency,
        "orders": orders.num_rows,
        "filled_orders": filled.num_rows,
        "fill_qty": float(pc.sum(filled["fill_qty"]).as_py() or 0.0),
        "notional": float(pc.sum(notional).as_py() or 0.0),
        "commission": float(pc.sum(orders["commission"]).as_py() or 0.0),
        **{name: _weighted(filled, notional, name) for name in BPS_TOTALS},
    }
