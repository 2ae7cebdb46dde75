"""`runner tca --plot DIR`: a picture of each order (matplotlib, extra `plot`).

One PNG per order: the 1 s bars around the order's life (high-low range and close),
the limit, the arrival price, each fill as a dot sized by its quantity at its price,
and a mark for every INTENT / ACK / CANCEL / REJ / FILL; volume below. The x axis is
clock time, UTC (data: epoch seconds; ticks HH:MM:SS, the day in the axis label).

Bars are found again where the run read them: `--bars FILE`, else the `bars_path` the
INTENT recorded (a relative path as recorded, against the current directory); a ledger
from before that column: the `bars_path` of the spec named in the ledger, else
`data/live/DAY/bars1s_SYMBOL.parquet`. Without bars the picture still has the prices
and marks.

Figures are drawn with the Agg canvas directly (no pyplot): no global state, no display.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from runner.broker import Ev
from runner.errors import RunnerError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa
    from matplotlib.figure import Figure

    from runner.bars import Bars
    from runner.report import Days
    from runner.tca import Selection

WIDTH_PX, HEIGHT_PX, DPI = 1200, 600, 100
MARGIN_S = 10.0  # bars shown before the INTENT and after the order ended
NS = 1_000_000_000
MARKED = ("INTENT", "ACK", "CANCEL", "REJ", "FILL")
COLORS = {
    "up": "#2ca02c", "down": "#d62728", "limit": "#1f77b4", "arrival": "#ff7f0e",
    "fill": "#9467bd", "mark": "#7f7f7f", "volume": "#bcbd22",
}  # fmt: skip
_COLUMNS = ("ts", "run_id", "spec", "tag", "event", "symbol", "side", "qty", "limit",
            "fill_qty", "last_qty", "last_px", "avg_px", "arrival_px", "bars_path",
            "shortfall_bps")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Fill:
    ts_ns: int
    qty: float
    px: float


@dataclass(frozen=True, slots=True)
class Trace:
    """What one order did, as the ledger recorded it."""

    run_id: str
    tag: str
    spec: str | None
    bars_path: str | None  # as the INTENT recorded it
    symbol: str
    side: str
    qty: float
    limit: float | None
    arrival_px: float | None
    marks: tuple[tuple[int, str], ...]  # (ts, event) of MARKED events
    fills: tuple[Fill, ...]
    state: str
    fill_qty: float
    avg_px: float | None
    shortfall_bps: float | None

    @property
    def intent_ns(self) -> int:
        return self.marks[0][0]

    @property
    def end_ns(self) -> int:
        return max([t for t, _ in self.marks] + [f.ts_ns for f in self.fills])


# ----------------------------------------------------------------------------- ledger -> traces


def traces(table: pa.Table) -> list[Trace]:
    """One Trace per (run_id, tag) that has an INTENT, in order of first appearance."""
    columns = {c: table.column(c).to_pylist() for c in _COLUMNS if c in table.column_names}
    columns["ts"] = table.column("ts").cast("int64").to_pylist()
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for i in range(table.num_rows):
        row = {c: v[i] for c, v in columns.items()}
        groups.setdefault((row["run_id"], row["tag"]), []).append(row)
    return [t for rows in groups.values() if (t := _trace(rows)) is not None]


def _last(rows: Sequence[dict[str, Any]], key: str) -> Any:
    values = [r.get(key) for r in rows if r.get(key) is not None]
    return values[-1] if values else None


def _trace(rows: list[dict[str, Any]]) -> Trace | None:
    intent = next((r for r in rows if r["event"] == "INTENT"), None)
    if intent is None:
        return None  # a journal cut before the INTENT: nothing to draw
    fills = tuple(
        Fill(r["ts"], r["last_qty"], r["last_px"] if r.get("last_px") is not None else r["avg_px"])
        for r in rows
        if r["event"] in ("PARTIAL", "FILL") and r.get("last_qty") and
        (r.get("last_px") is not None or r.get("avg_px") is not None)
    )
    terminal = [r["event"] for r in rows if r["event"] in Ev.TERMINAL]
    return Trace(
        run_id=intent["run_id"], tag=intent["tag"] or "?", spec=intent.get("spec"),
        bars_path=intent.get("bars_path"),
        symbol=intent["symbol"] or "?", side=intent["side"] or "?", qty=intent["qty"] or 0.0,
        limit=intent.get("limit"), arrival_px=_last(rows, "arrival_px"),
        marks=tuple((r["ts"], r["event"]) for r in rows if r["event"] in MARKED),
        fills=fills, state=terminal[-1] if terminal else "OPEN",
        fill_qty=max([r.get("fill_qty") or 0.0 for r in rows]),
        avg_px=_last(rows, "avg_px"), shortfall_bps=_last(rows, "shortfall_bps"),
    )


# ----------------------------------------------------------------------------- bars


def bars_candidates(trace: Trace, explicit: str | None) -> list[str]:
    """Where the bars may be, best first (see the module docstring)."""
    if explicit:
        return [explicit]
    if trace.bars_path:
        return [trace.bars_path]
    from runner.ledger import trading_date

    found: list[str] = []
    spec_bars = _spec_bars_path(trace.spec)
    if spec_bars:
        found.append(spec_bars)
    day = trading_date(trace.intent_ns)
    found.append(f"data/live/{day}/bars1s_{trace.symbol}.parquet")
    return found


def _spec_bars_path(spec: str | None) -> str | None:
    """The bars_path of the spec a ledger row names (`file` or `file#N`), if it still loads."""
    if not spec or spec.startswith("<"):
        return None
    path, _, number = spec.partition("#")
    if not Path(path).is_file():
        return None
    from runner.spec import load

    try:
        specs = load(path, allow_outside=True)
        return specs[int(number) - 1 if number else 0].bars_path
    except (RunnerError, ValueError, IndexError):
        return None  # the spec changed or broke since the run: fall back to the convention


def find_bars(trace: Trace, explicit: str | None, err: TextIO) -> Bars | None:
    from runner.bars import load_bars

    for path in bars_candidates(trace, explicit):
        if Path(path).is_file():
            try:
                return load_bars(path, trace.symbol)
            except RunnerError as e:
                print(f"runner: {trace.tag}: bars not used: {e}", file=err)
                return None
    if explicit:
        raise UsageError(f"bars file not found: {explicit}", "check --bars")
    if trace.bars_path:
        print(f"runner: {trace.tag}: bars not found at {trace.bars_path} (the ledger's "
              "bars_path, tried against the current directory); --bars FILE overrides",
              file=err)
    return None


# ----------------------------------------------------------------------------- drawing


def figure(trace: Trace, bars: Bars | None) -> Figure:
    """The picture of one order (not yet saved)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
    price, volume = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    t0 = trace.intent_ns
    if bars is not None:
        _draw_bars(price, volume, bars, t0, trace.end_ns)
    if trace.limit is not None:
        price.axhline(trace.limit, color=COLORS["limit"], lw=1.5, label=f"limit {trace.limit:g}")
    if trace.arrival_px is not None:
        price.axhline(trace.arrival_px, color=COLORS["arrival"], lw=1.5, ls="--",
                      label=f"arrival {trace.arrival_px:g}")
    _draw_fills(price, trace)
    _draw_marks(price, volume, trace)
    price.set_title(title(trace), fontsize=10)
    price.set_ylabel(f"{trace.symbol} price")
    price.legend(loc="best", fontsize=8, framealpha=0.9)
    volume.set_ylabel("volume")
    volume.set_xlabel(x_label(trace))
    volume.xaxis.set_major_formatter(FuncFormatter(clock_tick))
    fig.tight_layout()
    return fig


def x_seconds(ts_ns: int | Any) -> Any:
    """The x of an instant (or of an array of them): seconds since the epoch, UTC."""
    return ts_ns / NS


def clock_tick(x: float, _pos: int | None = None) -> str:
    """An x tick as UTC clock time: 14:30:05, or 14:30:05.5 between whole seconds."""
    whole, ms = divmod(round(x * 1000), 1000)
    text = datetime.fromtimestamp(whole, UTC).strftime("%H:%M:%S")
    return f"{text}.{ms:03d}".rstrip("0") if ms else text


def x_label(trace: Trace) -> str:
    day = datetime.fromtimestamp(trace.intent_ns // NS, UTC).strftime("%Y-%m-%d")
    return f"time, UTC ({day})"


def _draw_bars(price: Any, volume: Any, bars: Bars, t0: int, end: int) -> None:
    import numpy as np

    lo = np.searchsorted(bars.ts, t0 - int(MARGIN_S * NS), side="left")
    hi = np.searchsorted(bars.ts, end + int(MARGIN_S * NS), side="right")
    if hi <= lo:
        return
    x = x_seconds(bars.ts[lo:hi]) + 0.5  # a bar's ts is its start: draw it mid-bar
    up = bars.close[lo:hi] >= bars.open[lo:hi]
    colors = np.where(up, COLORS["up"], COLORS["down"])
    price.vlines(x, bars.low[lo:hi], bars.high[lo:hi], colors=colors, lw=2)
    price.scatter(x, bars.close[lo:hi], marker="_", s=40, c=colors, label="1 s bars (close)")
    volume.bar(x, bars.volume[lo:hi], width=0.8, color=COLORS["volume"])


def _draw_fills(price: Any, trace: Trace) -> None:
    if not trace.fills:
        return
    biggest = max(f.qty for f in trace.fills)
    x = [x_seconds(f.ts_ns) for f in trace.fills]
    y = [f.px for f in trace.fills]
    sizes = [fill_marker_size(f.qty, biggest) for f in trace.fills]
    price.scatter(x, y, s=sizes, color=COLORS["fill"], alpha=0.8, edgecolors="black",
                  zorder=5, label=f"fills (area ~ qty, largest {biggest:g})")


def fill_marker_size(qty: float, biggest: float) -> float:
    """Marker area in pt^2: proportional to the fill's quantity, the largest at 400."""
    return 400.0 * qty / biggest


def mark_labels(trace: Trace) -> list[tuple[int, str]]:
    """One label per instant: events at the same time (INTENT and ACK in the simulator)
    share a line rather than print over each other."""
    labels: dict[int, list[str]] = {}
    for ts, event in trace.marks:
        labels.setdefault(ts, []).append(event)
    return [(ts, "+".join(events)) for ts, events in labels.items()]


def _draw_marks(price: Any, volume: Any, trace: Trace) -> None:
    for ts, label in mark_labels(trace):
        x = x_seconds(ts)
        for ax in (price, volume):
            ax.axvline(x, color=COLORS["mark"], lw=0.8, ls=":")
        price.annotate(label, (x, 0.02), xycoords=("data", "axes fraction"), rotation=90,
                       va="bottom", ha="right", fontsize=8, color=COLORS["mark"])


def title(trace: Trace) -> str:
    order = f"{trace.side} {trace.qty:g} {trace.symbol}"
    order += f" LMT {trace.limit:g}" if trace.limit is not None else " MKT"
    done = f"{trace.state}, filled {trace.fill_qty:g}/{trace.qty:g}"
    if trace.avg_px is not None:
        done += f" @ {trace.avg_px:g}"
    if trace.shortfall_bps is not None:
        done += f", shortfall {trace.shortfall_bps:.2f} bps"
    return f"{trace.tag}: {order} — {done}"


# ----------------------------------------------------------------------------- files


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def file_names(items: Sequence[Trace]) -> list[str]:
    """`TAG.png`; `TAG-RUNID.png` where one tag was placed by several runs."""
    count: dict[str, int] = {}
    for t in items:
        count[t.tag] = count.get(t.tag, 0) + 1
    names = [t.tag if count[t.tag] == 1 else f"{t.tag}-{t.run_id}" for t in items]
    return [_UNSAFE.sub("_", n) + ".png" for n in names]


def save(fig: Figure, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    # No version stamp in the file: the same ledger gives the same bytes.
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


def plot_orders(
    table: pa.Table, plot_dir: str, bars_path: str | None = None, err: TextIO | None = None,
    select: Selection | None = None,
) -> list[Path]:
    """Write one PNG per order of `table` (those `select` keeps) into `plot_dir`; the
    paths written."""
    err = err or sys.stderr
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("`runner tca --plot` needs matplotlib",
                         "pip install 'matplotlib>=3.8' (the plot extra)") from None
    items = selected(traces(table), select)
    out = check_folder(plot_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [save(figure(t, find_bars(t, bars_path, err)), out / name)
            for t, name in zip(items, file_names(items), strict=True)]


def selected(items: list[Trace], select: Selection | None) -> list[Trace]:
    """The traces whose tag, symbol and side `select` keeps (its rule, in Arrow)."""
    if select is None or not items:
        return items
    import pyarrow as pa

    keys = pa.table({"tag": [t.tag for t in items], "symbol": [t.symbol for t in items],
                     "side": [t.side for t in items]})
    return [t for t, keep in zip(items, select.mask(keys).to_pylist(), strict=True) if keep]


def check_folder(plot_dir: str) -> Path:
    """`--plot DIR` as a folder that is there or can be made; a file in the way (DIR or
    one above it) is a UsageError, raised before anything is printed or written."""
    out = Path(plot_dir)
    there = next((p for p in (out, *out.parents) if p.exists()), None)
    if there is not None and not there.is_dir():
        raise UsageError(f"--plot {plot_dir}: a file is in the way; --plot takes a folder "
                         "(one PNG per order)", "give a folder name")
    return out


def tca_plot(
    target: str | None, out_dir: str, plot_dir: str, bars_path: str | None = None,
    err: TextIO | None = None, days: Days | None = None, select: Selection | None = None,
) -> int:
    """`runner tca --plot DIR`: the pictures of the orders in a ledger or in the days of
    `days` (paths on stderr, so stdout stays the report or its JSON)."""
    from runner.report import load

    err = err or sys.stderr
    table = load(target, out_dir, err, list(_COLUMNS), days)
    if table is None:
        return 2
    for written in plot_orders(table, plot_dir, bars_path, err, select):
        print(f"wrote {written}", file=err)
    return 0
