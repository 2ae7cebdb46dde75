"""`runner ledger show` and `runner tca`: command functions that print and return exit codes.

Big days have a million events and 200k orders, so lines are built from column lists
(a tuple per line, no dict per row) and JSON nulls are made in Arrow, not per value.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from runner.errors import UsageError
from runner.plan import parse_day
from runner.tca import Selection, scalar, string_array

if TYPE_CHECKING:  # the CLI imports this module; pyarrow is loaded only when a command runs
    import pyarrow as pa

JSON_VERSION = 1
TCA_JSON_VERSION = 2  # 2: totals is a list, one object per currency
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_D = "—"  # no value


def resolve_target(target: str | None, out_dir: str) -> Path | None:
    """A ledger file or folder, a date (-> out_dir/date), or None (-> the newest day
    folder in out_dir). None when there is nothing there."""
    if target is None:
        root = Path(out_dir)
        days = sorted(p for p in root.glob("*") if p.is_dir() and _DATE.match(p.name))
        return days[-1] if days else None
    path = Path(target)
    if _DATE.match(target) and not path.exists():
        path = Path(out_dir) / target
    return path if path.exists() else None


Days = tuple[str | None, str | None]  # first and last day folder, inclusive; None: open


def day_range(start: str | None, end: str | None) -> Days | None:
    """`--from`/`--to` as inclusive day names (either alone is open-ended), or None
    when neither is given. A bad date or a start after the end is a UsageError."""
    if start is None and end is None:
        return None
    first, last = parse_day(start, "--from"), parse_day(end, "--to")
    if first is not None and last is not None and first > last:
        raise UsageError(f"--from {start} is after --to {end}", "swap them")
    return first, last


def _day_folders(out_dir: str, days: Days) -> list[Path]:
    """The YYYY-MM-DD folders of out_dir within `days`, oldest first."""
    first, last = days
    root = Path(out_dir)
    found = root.glob("*") if root.is_dir() else []
    return sorted(p for p in found if p.is_dir() and _DATE.match(p.name)
                  and (first is None or first <= p.name) and (last is None or p.name <= last))


def _range_text(out_dir: str, days: Days) -> str:
    return f"{out_dir} from {days[0] or 'the first day'} to {days[1] or 'the last day'}"


def load(
    target: str | None, out_dir: str, err: TextIO, columns: list[str] | None,
    days: Days | None = None,
) -> pa.Table | None:
    """The ledger table of a target (see resolve_target) or of the day folders in
    `days`, or None after saying why there is none."""
    from runner import ledger

    if days is not None and target is not None:
        raise UsageError(f"both a target ({target}) and --from/--to given",
                         "give one: a ledger or date, or a --from/--to range")
    if days is not None:
        folders = _day_folders(out_dir, days)
        tables = [ledger.read_ledger(d, columns) for d in folders]
        table = _concat(tables) if tables else None
        where = _range_text(out_dir, days)
    else:
        path = resolve_target(target, out_dir)
        table = ledger.read_ledger(path, columns) if path is not None else None
        where = str(path or (Path(out_dir) / target if target else Path(out_dir)))
    if table is None or table.num_rows == 0:
        print(f"runner: no ledger events found at {where}", file=err)
        hint = "check --from/--to and --out-dir" if days else \
            "give a ledger file, a date YYYY-MM-DD, or --out-dir"
        print(f"  hint: {hint}", file=err)
        return None
    return table


def _concat(tables: list[pa.Table]) -> pa.Table:
    import pyarrow as pa

    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def ledger_show(
    target: str | None,
    out_dir: str,
    as_json: bool,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Every event of a ledger, one line each (or JSON); exit 2 when there is none."""
    out, err = out or sys.stdout, err or sys.stderr
    table = load(target, out_dir, err, None if as_json else list(EVENT_LINE_FIELDS))
    if table is None:
        return 2
    if as_json:
        from runner.ledger import table_to_rows

        _dump({"version": JSON_VERSION, "events": table_to_rows(_nan_to_null(table))}, out)
        return 0
    columns = [_times(table)] + [table.column(n).to_pylist() for n in EVENT_LINE_FIELDS[1:]]
    out.writelines(event_line(*values) + "\n" for values in zip(*columns, strict=True))
    return 0


def tca_report(
    target: str | None,
    out_dir: str,
    as_json: bool,
    out: TextIO | None = None,
    err: TextIO | None = None,
    days: Days | None = None,
    select: Selection | None = None,
) -> int:
    """Per-order TCA and one totals line per currency (or JSON), of a target or of the
    days in `days`, orders kept by `select`; exit 2 when the ledger has no events."""
    from runner import tca

    out, err = out or sys.stdout, err or sys.stderr
    table = load(target, out_dir, err, list(tca.NEEDED), days)
    if table is None:
        return 2
    orders = _nan_to_null((select or Selection()).keep(tca.order_table(table)))
    groups = [(c, tca.in_currency(orders, c)) for c in tca.currencies(orders)]
    totals = [_finite(tca.totals(group, c)) for c, group in groups]
    if as_json:
        out.write(f'{{"version":{TCA_JSON_VERSION},"orders":{json_objects(orders)},'
                  f'"totals":{_compact(totals)}}}\n')
        return 0
    out.write(ORDER_HEADER + "\n" + ("" if groups else "(no orders)\n"))
    for (_, group), total in zip(groups, totals, strict=True):
        out.write(order_text(group))
        out.write(totals_line(total) + "\n")
    return 0


# ----------------------------------------------------------------------------- text

EVENT_LINE_FIELDS = ("ts", "tag", "event", "fill_qty", "qty", "last_px", "avg_px", "limit",
                     "shortfall_bps", "message")  # fmt: skip


def _times(table: pa.Table) -> list[str]:
    """ts as UTC text to the microsecond, 2026-01-05T14:30:00.123456Z, in Arrow."""
    import pyarrow.compute as pc

    text = pc.strftime(table.column("ts"), format="%Y-%m-%dT%H:%M:%S")  # seconds.nanoseconds
    return [t + "Z" for t in pc.utf8_slice_codeunits(text, 0, 26).to_pylist()]


def _g(value: float | None) -> str:
    return _D if value is None else format(value, "g")


def event_line(
    time: str, tag: str | None, event: str | None, fill_qty: float | None, qty: float | None,
    last_px: float | None, avg_px: float | None, limit: float | None,
    shortfall_bps: float | None, message: str | None,
) -> str:  # fmt: skip
    """time  tag  EVENT  fill/qty  @px  [shortfall]  [message]; px = the limit on an
    INTENT, else the last fill's price, else the average."""
    px = limit if event == "INTENT" else last_px if last_px is not None else avg_px
    line = f"{time}  {tag or _D}  {event or '?':<12}  {_g(fill_qty)}/{_g(qty)}  @{_g(px)}"
    if event == "PNL_SNAPSHOT":
        line += f"  shortfall={_D if shortfall_bps is None else format(shortfall_bps, '.2f')}bps"
    return f"{line}  {message}" if message else line


# (header, column, width, format) of each column of an order line; width < 0: left-aligned
ORDER_COLUMNS = (
    ("tag", "tag", -11, "text"), ("symbol", "symbol", -6, "text"), ("side", "side", -4, "text"),
    ("state", "state", -6, "text"), ("fill/qty", "fill/qty", 9, "text"),
    ("fill", "fill_ratio", 4, "pct0"), ("avg_px", "avg_px", 8, "px"),
    ("arrival", "arrival_px", 8, "px"), ("vwap", "vwap_px", 8, "px"),
    ("short", "shortfall_bps", 5, "bps"), ("vwsl", "vwap_slippage_bps", 5, "bps"),
    ("is", "is_bps", 5, "bps"), ("fees", "fees_bps", 5, "bps"),
    ("part", "participation", 5, "pct1"), ("s1st", "ms_to_first_fill", 5, "sec"),
    ("sdone", "ms_to_done", 5, "sec"), ("comm", "commission", 5, "money"),
)  # fmt: skip
ORDER_HEADER = " ".join(
    format(head, f"<{-w}" if w < 0 else f">{w}") for head, _, w, _ in ORDER_COLUMNS
)


def order_text(orders: pa.Table) -> str:
    """One text line per order (ORDER_COLUMNS), each ending in a newline, built
    column-wise in Arrow: a big day has 200k orders, and a Python format per value
    would take seconds (a Python string per line, a tenth of one)."""
    import pyarrow.compute as pc

    fill_qty = pc.binary_join_element_wise(
        _text(orders["fill_qty"]), _text(orders["qty"]), scalar("/"))
    cells = []
    for _, name, width, kind in ORDER_COLUMNS:
        column = fill_qty if name == "fill/qty" else _FORMATS[kind](orders[name])
        column = pc.fill_null(column, scalar(_D))
        pad = pc.utf8_rpad if width < 0 else pc.utf8_lpad
        cells.append(pad(column, width=abs(width), padding=" "))
    lines = pc.binary_join_element_wise(*cells, scalar(" "))
    return _joined(pc.binary_join_element_wise(lines, scalar("\n"), scalar("")))


def _joined(strings: Any) -> str:
    """The strings of a null-free string array end to end, read from its data buffer."""
    import numpy as np
    import pyarrow as pa

    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    _, offsets, data = strings.buffers()
    width = np.int64 if pa.types.is_large_string(strings.type) else np.int32
    ends = np.frombuffer(offsets, width)[strings.offset:strings.offset + len(strings) + 1]
    if data is None or not len(strings):
        return ""
    return str(memoryview(data)[int(ends[0]):int(ends[-1])], "utf-8")  # one copy


def _text(values: Any) -> Any:
    """Numbers as their shortest text (1434, 0.5, 473.1), strings as they are."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return values if pa.types.is_string(values.type) else pc.cast(values, pa.string())


def _rounded(values: Any, decimals: int) -> Any:
    """Rounded to `decimals`, then as the shortest text (473.1, 100.0875)."""
    import pyarrow.compute as pc

    return _text(pc.round(values, decimals))


def _fixed(values: Any, decimals: int) -> Any:
    """Exactly `decimals` digits after the point (2.0, -0.5; -0.0 shown as 0.0): Arrow has
    no printf, but a decimal's text has every digit of its scale. The value is rounded to
    whole units of 10**-decimals (half to even), and the units are laid into decimal128
    slots (sign-extended to 128 bits) that Arrow then writes out."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    scaled = pc.round(pc.multiply(values, scalar(float(10**decimals))))
    units = pc.cast(scaled, pa.int64())
    if isinstance(units, pa.ChunkedArray):
        units = units.combine_chunks()
    validity, data = units.buffers()
    low = np.frombuffer(data, np.int64)[:units.offset + len(units)]
    wide = np.stack([low, low >> 63], axis=1)  # little-endian 128-bit: low word first
    slots = pa.Array.from_buffers(pa.decimal128(38, decimals), len(units),
                                  [validity, pa.py_buffer(wide)], offset=units.offset)
    return pc.cast(slots, pa.string())


def _percent(values: Any, decimals: int) -> Any:
    import pyarrow.compute as pc

    scaled = pc.multiply(values, scalar(100.0))
    text = _rounded(scaled, 0) if decimals == 0 else _fixed(scaled, decimals)
    return pc.binary_join_element_wise(text, scalar("%"), scalar(""))


_FORMATS: dict[str, Callable[[Any], Any]] = {
    "text": _text,
    "px": lambda v: _rounded(v, 4),
    "money": lambda v: _rounded(v, 2),
    "bps": lambda v: _fixed(v, 1),
    "pct0": lambda v: _percent(v, 0),
    "pct1": lambda v: _percent(v, 1),
    "sec": lambda v: _fixed(_ms_to_s(v), 1),
}


def _ms_to_s(values: Any) -> Any:
    import pyarrow.compute as pc

    return pc.divide(values, scalar(1000.0))


def _f2(value: float | None) -> str:
    return _D if value is None else format(value, ".2f")


def totals_line(totals: dict[str, Any]) -> str:
    """TOTAL CCY ... bps: the bps totals under the column names of the order lines;
    "currency?" where the ledger did not record the currency."""
    currency = totals["currency"] or "currency?"
    bps = " ".join(f"{head}={_f1(totals[name])}" for head, name in _BPS_HEADS)
    return (
        f"TOTAL {currency} orders={totals['orders']} filled={totals['filled_orders']} "
        f"fill_qty={_g(totals['fill_qty'])} notional={_f2(totals['notional'])} "
        f"comm={_f2(totals['commission'])} bps: {bps}"
    )


_BPS_HEADS = tuple((head, name) for head, name, _, kind in ORDER_COLUMNS if kind == "bps")


def _f1(value: float | None) -> str:
    return _D if value is None else format(value, ".1f")


# ----------------------------------------------------------------------------- json


def _nan_to_null(table: pa.Table) -> pa.Table:
    """JSON has no NaN or infinity: make them null, column by column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, field in enumerate(table.schema):
        if pa.types.is_floating(field.type):
            column = table.column(i)
            table = table.set_column(i, field, pc.if_else(pc.is_finite(column), column,
                                                          scalar(None, field.type)))
    return table


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def _dump(doc: dict[str, Any], out: TextIO) -> None:
    out.write(_compact(doc) + "\n")


def _compact(doc: Any) -> str:
    # dumps, not dump: dump streams through the pure-Python encoder, ~10x slower.
    return json.dumps(doc, allow_nan=False, separators=(",", ":"))


def json_objects(table: pa.Table) -> str:
    """A JSON array of one object per row (no NaN or infinity in `table`), written in
    Arrow: 200k orders through Python dicts and json.dumps take seconds. Numbers as
    their shortest exact text (1434, 0.5), strings escaped, nulls null."""
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return "[]"
    parts: list[Any] = []
    for i, name in enumerate(table.column_names):  # {"a":1,"b":"x"}: keys and values in turn
        parts.append(scalar(("{" if i == 0 else ",") + _compact(name) + ":"))
        parts.append(pc.fill_null(_json_values(table.column(name)), scalar("null")))
    rows = pc.binary_join_element_wise(*parts, scalar("},"), scalar(""))
    return "[" + _joined(rows)[:-1] + "]"  # the last row's comma dropped


def _json_values(column: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_string(column.type):
        return pc.cast(column, pa.string())
    if pc.any(pc.match_substring_regex(column, r"[\x00-\x1f]")).as_py():
        texts = [None if v is None else _compact(v) for v in column.to_pylist()]
        return string_array(texts)  # control characters: json's own escapes
    escaped = pc.replace_substring(pc.replace_substring(column, "\\", "\\\\"), '"', '\\"')
    return pc.binary_join_element_wise(scalar('"'), escaped, scalar('"'), scalar(""))
