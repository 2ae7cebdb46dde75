"""Transaction-cost analysis: pure functions, no I/O (DESIGN §6).

Signs: s = +1 for BUY, -1 for SELL, so every cost figure is positive when the order paid
(bought above / sold below the benchmark). Prices come from `bars` (runner/bars.py):
arrival = the close of the last bar that ended at or before the instant (no look-ahead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runner.broker import Ev

if TYPE_CHECKING:
    import pyarrow as pa

    from runner.barsproto import BarsLike

BPS = 1e4


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
    bars: BarsLike | None,
    multiplier: float = 1.0,
    cash_qty: float | None = None,
) -> dict[str, float | None] | None:
    """The PNL_SNAPSHOT figures of one finished order, keyed like the ledger columns;
    None unless it filled something and the arrival price is known. fees_bps is the
    commission over the filled notional, fill_qty x avg_px x the contract's multiplier.
    An order sized in money (`cash_qty`, qty 0): its fill_ratio is the filled notional
    over its cash_qty, and IS charges what the cash would have bought at arrival."""
    if bars is None or fill_qty <= 0 or (qty <= 0 and cash_qty is None) or avg_px is None:
        return None
    arrival = bars.arrival_at(intent_ns)
    if not arrival:
        return None
    if cash_qty is not None:
        qty = cash_qty / (arrival * multiplier)
    s = side_sign(side)
    vwap = bars.vwap_between(intent_ns, end_ns)
    end_px = bars.arrival_at(end_ns) or arrival
    volume = bars.volume_between(intent_ns, end_ns)
    return {
        "arrival_px": arrival,
        "avg_px": avg_px,
        "fill_qty": fill_qty,
        "fill_ratio": fill_qty / qty if cash_qty is None else
        fill_qty * avg_px * multiplier / cash_qty,
        "shortfall_bps": _bps(s, avg_px, arrival),
        "vwap_px": vwap,
        "vwap_slippage_bps": _bps(s, avg_px, vwap),
        "is_bps": implementation_shortfall_bps(s, qty, fill_qty, avg_px, arrival, end_px),
        "fees_bps": None if commission is None else
        commission / (fill_qty * avg_px * multiplier) * BPS,
        "participation": fill_qty / volume if volume else None,
        "ms_to_first_fill": None if first_fill_ns is None else (first_fill_ns - intent_ns) / 1e6,
        "ms_to_done": (end_ns - intent_ns) / 1e6,
        "commission": commission,
    }


# ----------------------------------------------------------------------------- summary

ORDER_KEYS = ("run_id", "tag")
_FIRST = ("symbol", "local_symbol", "expiry", "strike", "right", "side", "currency", "qty",
          "cash_qty", "multiplier")
_LAST = ("avg_px", "arrival_px", "commission")
_SNAPSHOT = ("vwap_px", "shortfall_bps", "vwap_slippage_bps", "is_bps", "fees_bps",
             "participation", "ms_to_first_fill", "ms_to_done")  # only on PNL_SNAPSHOT rows
ORDER_FIELDS = (*ORDER_KEYS, *_FIRST, "state", "fill_qty", "fill_ratio", "avg_px",
                "arrival_px", *_SNAPSHOT, "commission")  # fmt: skip
NEEDED = (*ORDER_KEYS, "ts", "seq", "event", *_FIRST, "fill_qty", *_LAST, *_SNAPSHOT)
BPS_TOTALS = ("shortfall_bps", "vwap_slippage_bps", "is_bps", "fees_bps")


def order_table(table: pa.Table) -> pa.Table:
    """One row per (run_id, tag) order (columns ORDER_FIELDS), sorted by the time of the
    order's first event (its INTENT), then tag, then run_id.

    symbol/side/currency/qty/cash_qty/multiplier as first given, state = last of FILL/CANCEL/REJ
    (else OPEN), fill_qty = the largest cumulative fill (0 if none), fill_ratio = fill_qty/qty
    (a cash order's: fill_qty x avg_px x multiplier / cash_qty), the
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
    """Grouped with numpy over the columns' buffers (Table.group_by loads Acero, and with
    it pandas: 0.2 s). Rows are in time order, so "first" and "last" are first and last
    in time; orders come in order of first appearance. Nulls are skipped, as Arrow's
    first/last/max skip them."""
    import pyarrow as pa
    import pyarrow.compute as pc

    groups = _Groups(table)
    event = table.column("event")
    # an order's final state is its last end (Ev.TERMINAL: FILL, CANCEL, REJ)
    terminal = pc.is_in(event, value_set=string_array([e.value for e in Ev.TERMINAL]))
    snapshot = pc.equal(event, scalar("PNL_SNAPSHOT"))
    columns = {name: groups.pick(table[name], "first") for name in (*ORDER_KEYS, *_FIRST)}
    columns["state"] = groups.pick(event, "last", where=terminal)
    columns["fill_qty"] = groups.max(table["fill_qty"])
    columns.update({name: groups.pick(table[name], "last") for name in _LAST})
    columns.update({name: groups.pick(table[name], "last", where=snapshot)
                    for name in _SNAPSHOT})
    columns["state"] = pc.fill_null(columns["state"], scalar("OPEN"))
    filled = columns["fill_qty"] = pc.fill_null(columns["fill_qty"], scalar(0.0))
    qty, cash = columns["qty"], columns["cash_qty"]
    columns["fill_ratio"] = pc.if_else(pc.greater(qty, scalar(0.0)), pc.divide(filled, qty),
                                       scalar(None, pa.float64()))
    if cash.null_count < len(cash):  # orders sized in money: filled notional / cash_qty
        spent = pc.multiply(pc.multiply(filled, pc.fill_null(columns["avg_px"], scalar(0.0))),
                            pc.fill_null(columns["multiplier"], scalar(1.0)))
        columns["fill_ratio"] = pc.if_else(
            pc.fill_null(pc.greater(cash, scalar(0.0)), scalar(False)),
            pc.divide(spent, cash), columns["fill_ratio"])
    orders = pa.table({name: columns[name] for name in ORDER_FIELDS})
    return _sorted(orders, groups.pick(table["ts"], "first"))


def _sorted(orders: pa.Table, first: Any) -> pa.Table:
    """Orders by first event time, then tag, then run_id. They come by first appearance
    in rows sorted by (ts, run_id, seq), so only orders that start at one instant can be
    out of place: sorted only when two do."""
    import pyarrow.compute as pc

    if orders.num_rows < 2 or pc.all(pc.greater(first[1:], first[:-1])).as_py():
        return orders
    keyed = orders.append_column("_first", first)
    keys = [("_first", "ascending"), ("tag", "ascending"), ("run_id", "ascending")]
    return keyed.sort_by(keys).drop_columns(["_first"])


class _Groups:
    """The orders of a table: each row's order number (0, 1, … by first appearance of its
    (run_id, tag)), and the rows sorted by order, in time order within one."""

    def __init__(self, table: pa.Table) -> None:
        import numpy as np
        import pyarrow.compute as pc

        runs, tags = _codes(table["run_id"]), _codes(table["tag"])
        width = int(tags.max()) + 1 if len(tags) else 1
        encoded = pc.dictionary_encode(_arrow(runs.astype(np.int64) * width + tags))
        self.ids = _data(encoded.indices)
        self.count = len(encoded.dictionary)
        self.rows = np.argsort(self.ids, kind="stable")

    def pick(self, column: Any, which: str, where: Any = None) -> Any:
        """The first or last non-null value of `column` in each order (null if none),
        among the rows where `where` is true (all rows if None)."""
        import numpy as np
        import pyarrow as pa

        if column.null_count == len(column):  # a stocks-only day's contract columns
            return pa.nulls(self.count, column.type)
        rows = self._valid_rows(column, where)
        ids = self.ids[rows]
        at = _edges(ids, which)
        index = np.full(self.count, -1, np.int64)
        index[ids[at]] = rows[at]
        return column.take(_arrow(np.maximum(index, 0), valid=index >= 0))

    def max(self, column: Any) -> Any:
        """The largest non-null value of a float column in each order (null if none;
        NaN only when all are NaN)."""
        import numpy as np
        import pyarrow as pa

        rows = self._valid_rows(column)
        ids = self.ids[rows]
        starts = np.flatnonzero(_edges(ids, "first"))
        out = np.zeros(self.count, np.float64)
        if len(starts):
            out[ids[starts]] = np.fmax.reduceat(_data(_flat(column))[rows], starts)
        valid = np.zeros(self.count, bool)
        valid[ids[starts]] = True
        return _arrow(out, pa.float64(), valid)

    def _valid_rows(self, column: Any, where: Any = None) -> Any:
        """self.rows less those where `column` is null or `where` is not true."""
        mask = _valid(_flat(column))
        if where is not None:
            keep = _bits(_flat(where))
            mask = keep if mask is None else mask & keep
        return self.rows if mask is None else self.rows[mask[self.rows]]


def _edges(ids: Any, which: str) -> Any:
    """True at the first (or last) of each run of equal ids."""
    import numpy as np

    if not len(ids):
        return np.zeros(0, bool)
    change = ids[1:] != ids[:-1]
    return np.concatenate(([True], change) if which == "first" else (change, [True]))


def _codes(column: Any) -> Any:
    """A string column as int32 codes, by first appearance (null one code of its own)."""
    import pyarrow.compute as pc

    return _data(pc.dictionary_encode(_flat(column), null_encoding="encode").indices)


# ----------------------------------------------------------------------------- arrow, no pandas
# pyarrow converts a Python value through code that imports pandas on first use (0.2 s):
# pa.array, pa.scalar, and every pc.* call given a plain number or string. So constants and
# small arrays are built here from buffers, and numpy reads columns through their buffers.


def scalar(value: str | float | bool | None, kind: pa.DataType | None = None) -> pa.Scalar:
    """An Arrow scalar of a str (string), bool, int (int64) or float (float64), or a null
    of `kind`, made without pandas."""
    import numpy as np
    import pyarrow as pa

    if value is None:
        return pa.nulls(1, kind or pa.null())[0]
    if isinstance(value, str):
        return string_array([value])[0]
    if isinstance(value, bool):
        return _arrow(np.array([value]))[0]
    return _arrow(np.array([value], np.int64 if isinstance(value, int) else np.float64))[0]


def string_array(values: list[str | None]) -> pa.Array:
    """A string array (None: null) made without pandas."""
    import numpy as np
    import pyarrow as pa

    data = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(len(data) + 1, np.int32)
    np.cumsum([len(b) for b in data], out=offsets[1:])
    valid = np.array([v is not None for v in values], bool)
    return pa.Array.from_buffers(pa.string(), len(data), [
        _bitmap(valid), pa.py_buffer(offsets), pa.py_buffer(b"".join(data))])


def _arrow(data: Any, kind: pa.DataType | None = None, valid: Any = None) -> pa.Array:
    """A numpy array (bool, int or float) as Arrow, null where `valid` is false."""
    import numpy as np
    import pyarrow as pa

    n = len(data)
    if data.dtype == bool:
        kind, data = pa.bool_(), np.packbits(data, bitorder="little")
    kind = kind or pa.from_numpy_dtype(data.dtype)
    return pa.Array.from_buffers(kind, n, [_bitmap(valid), pa.py_buffer(data)])


def _bitmap(valid: Any) -> pa.Buffer | None:
    """An Arrow validity bitmap of a numpy bool array; None when all are valid."""
    import numpy as np
    import pyarrow as pa

    if valid is None or valid.all():
        return None
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def _flat(column: Any) -> pa.Array:
    """A chunked column as one array."""
    import pyarrow as pa

    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _data(array: pa.Array) -> Any:
    """The values buffer of a fixed-width array as numpy, zero-copy (Array.to_numpy
    imports pandas); what lies under a null is undefined."""
    import numpy as np

    dtype = np.dtype(array.type.to_pandas_dtype())
    return np.frombuffer(array.buffers()[1], dtype)[array.offset:array.offset + len(array)]


def _bits(array: pa.Array) -> Any:
    """A bitmap (an Arrow bool array's values, or its validity) as a numpy bool array."""
    return _unpack(array.buffers()[1], array.offset, len(array)) & _notnull(array)


def _valid(array: pa.Array) -> Any:
    """Where `array` is not null, as numpy bool; None when it has no nulls."""
    return None if array.null_count == 0 else _notnull(array)


def _notnull(array: pa.Array) -> Any:
    import numpy as np

    if array.null_count == 0:
        return np.ones(len(array), bool)
    if array.null_count == len(array):
        return np.zeros(len(array), bool)
    return _unpack(array.buffers()[0], array.offset, len(array))


def _unpack(buffer: pa.Buffer, offset: int, n: int) -> Any:
    """Bits offset..offset+n of an Arrow bitmap as numpy bool."""
    import numpy as np

    bits = np.unpackbits(np.frombuffer(buffer, np.uint8), count=offset + n, bitorder="little")
    return bits[offset:].astype(bool)


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
        import numpy as np
        import pyarrow.compute as pc

        mask = _arrow(np.ones(orders.num_rows, bool))
        if self.tag is not None:
            mask = pc.and_kleene(mask, _tag_mask(orders["tag"], self.tag))
        if self.symbol is not None:
            mask = pc.and_kleene(mask, pc.equal(orders["symbol"], scalar(self.symbol)))
        if self.side is not None:
            mask = pc.and_kleene(mask, pc.equal(orders["side"], scalar(self.side.upper())))
        return pc.fill_null(mask, scalar(False))


def _tag_mask(tags: Any, pattern: str) -> Any:
    """Exact match, or a glob when the pattern has * (any run of characters) or ? (one)."""
    import pyarrow.compute as pc

    if "*" not in pattern and "?" not in pattern:
        return pc.equal(tags, scalar(pattern))
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
    return orders.filter(currency_mask(orders, currency))


def currency_mask(orders: pa.Table, currency: str | None) -> Any:
    """True for each order priced in `currency` (None: not recorded)."""
    import pyarrow.compute as pc

    column = orders["currency"]
    return pc.is_null(column) if currency is None else pc.fill_null(
        pc.equal(column, scalar(currency)), scalar(False))


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
    weighted by filled notional (fill_qty·avg_px·multiplier, a null multiplier 1), so
    fees_bps is the commission over the notional, and every total is in that one
    currency."""
    import pyarrow.compute as pc

    filled = orders.filter(pc.and_(pc.greater(orders["fill_qty"], scalar(0)), pc.is_valid(
        orders["avg_px"])))
    notional = pc.multiply(pc.multiply(filled["fill_qty"], filled["avg_px"]),
                           pc.fill_null(filled["multiplier"], scalar(1.0)))
    return {
        "currency": currency,
        "orders": orders.num_rows,
        "filled_orders": filled.num_rows,
        "fill_qty": float(pc.sum(filled["fill_qty"]).as_py() or 0.0),
        "notional": float(pc.sum(notional).as_py() or 0.0),
        "commission": float(pc.sum(orders["commission"]).as_py() or 0.0),
        **{name: _weighted(filled, notional, name) for name in BPS_TOTALS},
    }
