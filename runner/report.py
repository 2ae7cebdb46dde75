"""`runner ledger show` and `runner tca`: command functions that print and return exit codes.

Big days have a million events and 200k orders, so lines are built from column lists
(a tuple per line, no dict per row), and numbers, times and JSON are made in Arrow
(runner.arrowtext), not per value. Numbers as recorded (runner.output), figures to
runner.jsondoc.DECIMALS; `--json` documents: schemas/output/{ledger-show,tca}.schema.json.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from runner import arrowtext
from runner.errors import UsageError
from runner.jsondoc import MONEY, PRICE, QTY, Raw, document, failed, figures, write
from runner.output import DASH, json_text, number_text, price_text
from runner.plan import parse_day
from runner.tca import Selection, scalar

if TYPE_CHECKING:  # the CLI imports this module; pyarrow is loaded only when a command runs
    import pyarrow as pa

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_D = DASH  # no value


def resolve_target(target: str | None, out_dir: str) -> Path | None:
    """A ledger file or folder, a date (-> out_dir/date), or None (-> the newest day
    folder in out_dir). None when there is nothing there."""
    if target is None:
        root = Path(out_dir)
        days = sorted(p for p in root.glob("*") if p.is_dir() and _DATE.match(p.name))
        return days[-1] if days else None
    path = Path(target)
    if _DATE.match(target) and not path.exists():
        parse_day(target, "LEDGER|DATE")  # 2026-13-01: not a date, exit 2
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


class NoLedger(UsageError):
    """Nothing at the target: no ledger file or day folder (exit 2)."""


def find(target: str | None, out_dir: str, columns: list[str] | None,
         days: Days | None = None) -> tuple[pa.Table, str]:
    """The ledger table of a target (see resolve_target) or of the day folders in
    `days`, and where it was read; an existing day with no events is an empty table.
    NoLedger when there is nothing there."""
    from runner import ledger

    if days is not None and target is not None:
        raise UsageError(f"both a target ({target}) and --from/--to given",
                         "give one: a ledger or date, or a --from/--to range")
    if days is not None:
        folders = _day_folders(out_dir, days)
        if not folders:
            raise NoLedger(f"no ledger events found at {_range_text(out_dir, days)}",
                           "check --from/--to and --out-dir")
        return _concat([ledger.read_ledger(d, columns) for d in folders]), \
            _range_text(out_dir, days)
    path = resolve_target(target, out_dir)
    if path is None:
        where = Path(out_dir) / target if target else Path(out_dir)
        raise NoLedger(f"no ledger events found at {where}",
                       "give a ledger file, a date YYYY-MM-DD, or --out-dir")
    return ledger.read_ledger(path, columns), str(path)


def load(
    target: str | None, out_dir: str, err: TextIO, columns: list[str] | None,
    days: Days | None = None,
) -> pa.Table | None:
    """`find`'s table, or None after saying on `err` why there is none."""
    try:
        return find(target, out_dir, columns, days)[0]
    except NoLedger as e:
        _say_none(e, err)
        return None


def _say_none(e: NoLedger, err: TextIO) -> None:
    print(f"runner: {e}", file=err)  # one line: the cause (the fix), as every error


def _missing(command: str, e: NoLedger, as_json: bool, out: TextIO, err: TextIO) -> int:
    """Nothing there: said on stderr, and with --json the failure document (exit 2)."""
    _say_none(e, err)
    if as_json:
        out.write(json_text(failed(command, e.exit_code, e.message, e.hint)) + "\n")
    return e.exit_code


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
    """Every event of a ledger, one line each (or JSON), in the ledger's order: by time,
    then run_id, then seq. Exit 2 when there is nothing there; an empty day is no error."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        table, where = find(target, out_dir, None if as_json else list(EVENT_LINE_FIELDS))
    except NoLedger as e:
        return _missing("ledger show", e, as_json, out, err)
    if as_json:
        events = arrowtext.figures(table.select(sorted(table.column_names)))
        write(document("ledger show", True, ledger=where,
                       events=Raw(arrowtext.json_objects(events))), out)
        return 0
    if not table.num_rows:
        print(f"runner: no events in {where}", file=err)
    out.writelines(event_lines(table))
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
    days in `days`, orders kept by `select`; exit 2 when there is nothing there."""
    from runner import tca

    out, err = out or sys.stdout, err or sys.stderr
    try:
        table, _ = find(target, out_dir, list(tca.NEEDED), days)
    except NoLedger as e:
        return _missing("tca", e, as_json, out, err)
    orders = arrowtext.figures((select or Selection()).keep(tca.order_table(table)))
    groups = [(c, tca.currency_mask(orders, c)) for c in tca.currencies(orders)]
    totals = [figures(tca.totals(orders.filter(rows), c)) for c, rows in groups]
    if as_json:
        columns = orders.select(sorted(orders.column_names))  # keys sorted, as json_text
        write(document("tca", True, orders=Raw(arrowtext.json_objects(columns)),
                       totals=totals), out)
        return 0
    cells = order_cells(orders)
    widths = column_widths(cells)
    out.write(order_header(widths) + "\n" + ("" if groups else "(no orders)\n"))
    for (_, rows), total in zip(groups, totals, strict=True):
        out.write(order_text(cells, widths, rows))
        out.write(totals_line(total) + "\n")
    return 0


# ----------------------------------------------------------------------------- text

EVENT_LINE_FIELDS = ("ts", "run_id", "tag", "event", "fill_qty", "qty", "last_px", "avg_px",
                     "limit", "shortfall_bps", "message", "sec_type", "currency")  # fmt: skip
RUN_ID_CHARS = 8  # run ids are shown by their first 8 characters


def event_lines(table: pa.Table) -> list[str]:
    """time  run  tag  EVENT  fill/qty  @px  [shortfall]  [message], each ending in a
    newline; px = the limit on an INTENT, else the last fill's price, else the average.
    Numbers are made in Arrow (runner.arrowtext.exact), the lines in Python."""
    import pyarrow.compute as pc

    column = table.column
    px = pc.if_else(pc.fill_null(pc.equal(column("event"), scalar("INTENT")), scalar(False)),
                    column("limit"), pc.coalesce(column("last_px"), column("avg_px")))
    texts = [_times(table), _short_ids(column("run_id")), _filled(column("tag")),
             column("event").to_pylist(), _cells(column("fill_qty"), QTY),
             _cells(column("qty"), QTY), _prices(table, px),
             _cells(column("shortfall_bps"), 2, fixed=True), column("message").to_pylist()]
    return [_event_line(*values) for values in zip(*texts, strict=True)]


def _event_line(time: str, run: str, tag: str, event: str | None, fill_qty: str, qty: str,
                px: str, shortfall: str, message: str | None) -> str:  # fmt: skip
    line = f"{time}  {run}  {tag}  {event or '?':<12}  {fill_qty}/{qty}  @{px}"
    if event == "PNL_SNAPSHOT":
        line += f"  shortfall={shortfall}bps"
    return f"{line}  {message}\n" if message else line + "\n"


def _times(table: pa.Table) -> list[str]:
    """ts as UTC text to the microsecond, 2026-01-05T14:30:00.123456Z, in Arrow."""
    import pyarrow.compute as pc

    text = pc.strftime(table.column("ts"), format="%Y-%m-%dT%H:%M:%S")  # seconds.nanoseconds
    return [t + "Z" for t in pc.utf8_slice_codeunits(text, 0, 26).to_pylist()]


def _short_ids(run_ids: Any) -> list[str]:
    return _filled(_run(run_ids))


def _filled(texts: Any) -> list[str]:
    import pyarrow.compute as pc

    filled: list[str] = pc.fill_null(texts, scalar(_D)).to_pylist()
    return filled


def _prices(table: pa.Table, px: Any) -> list[str]:
    """Prices as recorded, with at least their instrument's decimals (plan.price_decimals):
    a sub-dollar limit of 0.01 is @0.0100, as `runner plan` showed it; EUR.USD 1.0851 is
    @1.08510."""
    names = table.column_names
    if "sec_type" not in names or "currency" not in names:
        return _cells(px, PRICE, 2)
    need = arrowtext.price_decimals(table.column("sec_type"), table.column("currency"), px)
    return _filled(arrowtext.padded_rows(arrowtext.exact(px, PRICE), need, 5))


def _cells(values: Any, decimals: int, at_least: int = 0, fixed: bool = False) -> list[str]:
    """Numbers as text, _D for none: exact (to `decimals`) or `fixed` decimals."""
    text = arrowtext.fixed(values, decimals) if fixed else \
        arrowtext.exact(values, decimals, at_least)
    return _filled(text)


# (header, column, format) of each column of an order line; text columns are left-aligned,
# numbers right-aligned, each as wide as its widest cell
ORDER_COLUMNS = (
    ("tag", "tag", "text"), ("run", "run_id", "run"), ("symbol", "symbol", "text"),
    ("side", "side", "text"), ("state", "state", "text"), ("fill/qty", "fill/qty", "qty"),
    ("fill", "fill_ratio", "pct0"), ("avg_px", "avg_px", "px"),
    ("arrival", "arrival_px", "px"), ("vwap", "vwap_px", "px"),
    ("short", "shortfall_bps", "bps"), ("vwsl", "vwap_slippage_bps", "bps"),
    ("is", "is_bps", "bps"), ("fees", "fees_bps", "bps"),
    ("part", "participation", "pct1"), ("s1st", "ms_to_first_fill", "sec"),
    ("sdone", "ms_to_done", "sec"), ("comm", "commission", "money"),
)  # fmt: skip
_LEFT = ("text", "run")


def order_cells(orders: pa.Table) -> list[Any]:
    """The text of each ORDER_COLUMNS column of `orders` (_D for no value), in Arrow: a
    big day has 200k orders, and a Python format per value would take seconds."""
    import pyarrow.compute as pc

    cells = []
    for _, name, kind in ORDER_COLUMNS:
        if name == "symbol":
            column = instrument(orders)
        elif name == "fill/qty":
            size = arrowtext.exact(orders["qty"], QTY)
            if orders["cash_qty"].null_count < orders.num_rows:  # sized in money: `cash 1000`
                size = pc.coalesce(size, pc.binary_join_element_wise(
                    scalar("cash"), arrowtext.exact(orders["cash_qty"], QTY), scalar(" ")))
            column = pc.binary_join_element_wise(
                arrowtext.exact(orders["fill_qty"], QTY), size, scalar("/"))
        else:
            column = _FORMATS[kind](orders[name])
        cells.append(pc.fill_null(column, scalar(_D)))
    return cells


def instrument(orders: pa.Table) -> Any:
    """The symbol, or what tells a contract apart from its underlying: IB's localSymbol
    (runs of spaces as one: `SPY 260116C00600000`), else the symbol, expiry, strike and
    right as recorded (`SPY 20260116 600 C`)."""
    import pyarrow.compute as pc

    if orders["local_symbol"].null_count == orders["expiry"].null_count == orders.num_rows:
        return orders["symbol"]  # no contract named on this day: the symbols say it all
    local = pc.replace_substring_regex(orders["local_symbol"], r" +", " ")
    named = pc.binary_join_element_wise(
        orders["symbol"], orders["expiry"], arrowtext.exact(orders["strike"], PRICE),
        orders["right"], scalar(" "), null_handling="skip")
    return pc.coalesce(local, named)


def column_widths(cells: list[Any]) -> list[int]:
    """Each column as wide as its header and its widest cell."""
    import pyarrow.compute as pc

    return [max(len(head), pc.max(pc.utf8_length(c)).as_py() or 0)
            for (head, _, _), c in zip(ORDER_COLUMNS, cells, strict=True)]


def order_header(widths: list[int]) -> str:
    return " ".join(head.ljust(w) if kind in _LEFT else head.rjust(w)
                    for (head, _, kind), w in zip(ORDER_COLUMNS, widths, strict=True)).rstrip()


def order_text(cells: list[Any], widths: list[int], rows: Any) -> str:
    """One text line per order of `rows` (a mask over the cells), each ending in a
    newline, padded and joined in Arrow."""
    import pyarrow.compute as pc

    every = pc.all(rows).as_py()  # one currency: no filtering
    padded = []
    for (_, _, kind), column, width in zip(ORDER_COLUMNS, cells, widths, strict=True):
        pad = pc.utf8_rpad if kind in _LEFT else pc.utf8_lpad
        padded.append(pad(column if every else column.filter(rows), width=width, padding=" "))
    lines = pc.binary_join_element_wise(*padded, scalar(" "))  # the last column: numbers
    return arrowtext.joined(pc.binary_join_element_wise(lines, scalar("\n"), scalar("")))


def _percent(values: Any, decimals: int) -> Any:
    import pyarrow.compute as pc

    text = arrowtext.fixed(pc.multiply(values, scalar(100.0)), decimals)
    return pc.binary_join_element_wise(text, scalar("%"), scalar(""))


def _run(values: Any) -> Any:
    import pyarrow.compute as pc

    return pc.utf8_slice_codeunits(values, 0, RUN_ID_CHARS)


_FORMATS: dict[str, Callable[[Any], Any]] = {
    "text": lambda v: v,
    "run": _run,
    "px": lambda v: arrowtext.exact(v, PRICE, 2),
    "money": lambda v: arrowtext.exact(v, MONEY, 2),
    "bps": lambda v: arrowtext.fixed(v, 1),
    "pct0": lambda v: _percent(v, 0),
    "pct1": lambda v: _percent(v, 1),
    "sec": lambda v: arrowtext.fixed(_ms_to_s(v), 1),
}


def _ms_to_s(values: Any) -> Any:
    import pyarrow.compute as pc

    return pc.divide(values, scalar(1000.0))


def totals_line(totals: dict[str, Any]) -> str:
    """TOTAL CCY ... bps: the bps totals under the column names of the order lines;
    "currency?" where the ledger did not record the currency."""
    currency = totals["currency"] or "currency?"
    bps = " ".join(f"{head}={_f1(totals[name])}" for head, name in _BPS_HEADS)
    return (
        f"TOTAL {currency} orders={totals['orders']} filled={totals['filled_orders']} "
        f"fill_qty={number_text(totals['fill_qty'])} "
        f"notional={price_text(totals['notional'])} "
        f"comm={price_text(totals['commission'])} bps: {bps}"
    )


_BPS_HEADS = tuple((head, name) for head, name, kind in ORDER_COLUMNS if kind == "bps")


def _f1(value: float | None) -> str:
    text = _D if value is None else format(value, ".1f")
    return "0.0" if text == "-0.0" else text  # as the order lines show it (arrowtext.fixed)
