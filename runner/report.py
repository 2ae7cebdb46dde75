"""`runner ledger show` and `runner tca`: command functions that print and return exit codes.

Big days have a million events and 200k orders, so lines are built from column lists
(a tuple per line, no dict per row) and JSON nulls are made in Arrow, not per value.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the CLI imports this module; pyarrow is loaded only when a command runs
    import pyarrow as pa

JSON_VERSION = 1
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


def _load(
    target: str | None, out_dir: str, err: TextIO, columns: list[str] | None
) -> pa.Table | None:
    """The ledger table, or None after saying why there is none."""
    from runner import ledger

    path = resolve_target(target, out_dir)
    table = ledger.read_ledger(path, columns) if path is not None else None
    if table is None or table.num_rows == 0:
        where = path or (Path(out_dir) / target if target else Path(out_dir))
        print(f"runner: no ledger events found at {where}", file=err)
        print("  hint: give a ledger file, a date YYYY-MM-DD, or --out-dir", file=err)
        return None
    return table


def ledger_show(
    target: str | None,
    out_dir: str,
    as_json: bool,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Every event of a ledger, one line each (or JSON); exit 2 when there is none."""
    out, err = out or sys.stdout, err or sys.stderr
    table = _load(target, out_dir, err, None if as_json else list(EVENT_LINE_FIELDS))
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
) -> int:
    """Per-order TCA and the totals (or JSON); exit 2 when the ledger has no events."""
    from runner import tca

    out, err = out or sys.stdout, err or sys.stderr
    table = _load(target, out_dir, err, list(tca.NEEDED))
    if table is None:
        return 2
    orders = tca.order_table(table)
    totals = _finite(tca.totals(orders))
    if as_json:
        rows = _nan_to_null(orders).to_pylist()
        _dump({"version": JSON_VERSION, "orders": rows, "totals": totals}, out)
        return 0
    out.write(ORDER_HEADER + "\n")
    columns = [orders.column(name).to_pylist() for name in ORDER_LINE_FIELDS]
    out.writelines(order_line(*values) + "\n" for values in zip(*columns, strict=True))
    out.write(totals_line(totals) + "\n")
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


ORDER_LINE_FIELDS = ("tag", "symbol", "side", "qty", "state", "fill_qty", "avg_px",
                     "arrival_px", "shortfall_bps", "vwap_slippage_bps", "commission")  # fmt: skip
ORDER_HEADER = (
    f"{'tag':<28} {'symbol':<8} {'side':<4} {'qty':>10} {'state':<6} {'fill_qty':>10} "
    f"{'avg_px':>12} {'arrival':>12} {'shortfall':>10} {'vwap_slip':>10} {'commission':>10}"
)


def order_line(
    tag: str, symbol: str | None, side: str | None, qty: float | None, state: str,
    fill: float, avg: float | None, arrival: float | None, shortfall: float | None,
    vwap_slip: float | None, commission: float | None,
) -> str:  # fmt: skip
    # Inline conditionals, not _g(): this runs once per order, 200k times on a big day.
    return (
        f"{tag:<28} {symbol or _D:<8} {side or _D:<4} "
        f"{_D if qty is None else format(qty, 'g'):>10} {state:<6} {format(fill, 'g'):>10} "
        f"{_D if avg is None else format(avg, 'g'):>12} "
        f"{_D if arrival is None else format(arrival, 'g'):>12} "
        f"{_D if shortfall is None else format(shortfall, '.2f'):>10} "
        f"{_D if vwap_slip is None else format(vwap_slip, '.2f'):>10} "
        f"{_D if commission is None else format(commission, 'g'):>10}"
    )


def _f2(value: float | None) -> str:
    return _D if value is None else format(value, ".2f")


def totals_line(totals: dict[str, Any]) -> str:
    return (
        f"TOTAL orders={totals['orders']} filled={totals['filled_orders']} "
        f"fill_qty={_g(totals['fill_qty'])} notional={_f2(totals['notional'])} "
        f"commission={_f2(totals['commission'])} "
        f"shortfall={_f2(totals['shortfall_bps'])}bps "
        f"vwap_slippage={_f2(totals['vwap_slippage_bps'])}bps"
    )


# ----------------------------------------------------------------------------- json


def _nan_to_null(table: pa.Table) -> pa.Table:
    """JSON has no NaN or infinity: make them null, column by column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, field in enumerate(table.schema):
        if pa.types.is_floating(field.type):
            column = table.column(i)
            table = table.set_column(i, field, pc.if_else(pc.is_finite(column), column, None))
    return table


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def _dump(doc: dict[str, Any], out: TextIO) -> None:
    # dumps, not dump: dump streams through the pure-Python encoder, ~10x slower.
    out.write(json.dumps(doc, allow_nan=False, separators=(",", ":")) + "\n")
