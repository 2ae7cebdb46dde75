"""The order ledger: a write-ahead journal per run, compacted into one Parquet file per day.

Layout (DESIGN §6)::

    OUT_DIR/YYYY-MM-DD/ledger.parquet          the day's events, sorted by (ts, run_id, seq)
    OUT_DIR/YYYY-MM-DD/ledger.part-<run>.parquet  on a big day: one run's events (see below)
    OUT_DIR/YYYY-MM-DD/_journal-<run_id>.jsonl one JSON line per event, fsynced, while a run lives
    OUT_DIR/YYYY-MM-DD/.ledger.lock            serialises compaction between processes

A run's cost is O(its own events) (DESIGN §9): while the day holds fewer than
REWRITE_BELOW_ROWS rows, a run's commit rewrites ledger.parquet (milliseconds); beyond that
it writes its rows as a part file, and the run that finds MAX_PARTS parts folds them all
into ledger.parquet. `read_ledger` merges the day file and its parts and drops any
(run_id, seq) seen twice (a fold that crashed before deleting its parts).

Durability: `Ledger.append` returns only once its line is fsynced, so an INTENT is on disk
before the order is sent. `Ledger.commit` merges the journals into `ledger.parquet` under the
day lock (temp file, fsync, `os.replace`, fsync of the directory) and only then deletes them;
a crash at any point leaves either the old file plus journals or the new file plus journals,
and rows are keyed by (run_id, seq), so a second merge doubles nothing. A run holds an
exclusive `flock` on its own journal while it lives, so other runs merge only the journals of
runs that are gone.

Why `_journal-` and `.ledger.lock`: pyarrow, pandas and Spark skip files whose names start
with `_` or `.`, so the out_dir root reads as a dataset of Parquet files as it is::

    import pyarrow.dataset as ds, pyarrow as pa
    days = ds.partitioning(pa.schema([("date", pa.string())]))   # YYYY-MM-DD folders
    ds.dataset("data/exec", format="parquet", partitioning=days).to_table()
    pandas.read_parquet("data/exec")                   # all days, no date column
    duckdb: SELECT * FROM read_parquet('data/exec/*/ledger*.parquet', filename=true)

(`read_ledger` below also includes rows that are still only in journals.)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from runner.errors import LedgerError

_F64 = pa.float64()
_STR = pa.string()

LEDGER_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.timestamp("ns", tz="UTC")),
        pa.field("run_id", _STR),
        pa.field("seq", pa.int32()),  # event number within the run, from 1
        pa.field("spec", _STR),
        pa.field("tag", _STR),
        # INTENT|ACK|REJ|PARTIAL|FILL|CANCEL|PNL_SNAPSHOT; CORRECTION (replaces the execution
        # in `corrects`, or adds a commission that came late); UNSETTLED and UNKNOWN (not
        # ends: the run stopped watching an order that may still work; see runner recover)
        pa.field("event", _STR),
        pa.field("broker", _STR),  # ib|sim
        pa.field("account", _STR),
        pa.field("order_id", pa.int64()),
        pa.field("perm_id", pa.int64()),
        pa.field("client_id", pa.int64()),  # the API client id that placed the order
        pa.field("symbol", _STR),
        pa.field("sec_type", _STR),  # the instrument at IB: STK, CASH, CRYPTO…
        pa.field("exchange", _STR),
        pa.field("currency", _STR),  # the currency of every price and commission on the row
        pa.field("mode", _STR),  # paper | live, as the spec said
        pa.field("side", _STR),
        pa.field("qty", _F64),
        pa.field("order_type", _STR),
        pa.field("limit", _F64),
        pa.field("tif", _STR),
        pa.field("fill_qty", _F64),  # cumulative
        pa.field("last_qty", _F64),
        pa.field("last_px", _F64),
        pa.field("avg_px", _F64),
        pa.field("commission", _F64),
        pa.field("arrival_px", _F64),
        # INTENT rows: where arrival_px came from ("bars" or "broker"), and the bars file
        # (as the spec named it) that TCA and `tca --plot` read again
        pa.field("arrival_source", _STR),
        pa.field("bars_path", _STR),
        pa.field("message", _STR),
        # INTENT rows: when the runner cancels what is still working (INTENT + TTL), so that
        # `runner recover` knows which orphans are overdue.
        pa.field("deadline", pa.timestamp("ns", tz="UTC")),
        # INTENT rows: the GTD backstop as sent to IB (INTENT + TTL + margin, whole seconds)
        pa.field("good_till", pa.timestamp("ns", tz="UTC")),
        pa.field("exec_id", _STR),  # PARTIAL/FILL rows from IB: the execution, for exact dedup
        pa.field("corrects", _STR),  # CORRECTION rows: the exec_id this one replaces
        # TCA figures: null except on PNL_SNAPSHOT rows (runner/tca.py).
        pa.field("fill_ratio", _F64),
        pa.field("shortfall_bps", _F64),
        pa.field("vwap_px", _F64),
        pa.field("vwap_slippage_bps", _F64),
        pa.field("is_bps", _F64),
        pa.field("fees_bps", _F64),
        pa.field("participation", _F64),
        pa.field("ms_to_first_fill", _F64),
        pa.field("ms_to_done", _F64),
    ],
    metadata={"runner.ledger.version": "1"},
)
COLUMNS: tuple[str, ...] = tuple(LEDGER_SCHEMA.names)

LEDGER_FILE = "ledger.parquet"
PART_PREFIX = "ledger.part-"  # ledger.part-<run_id>.parquet: one run's rows on a big day
# Below this many rows the day's file is simply rewritten by each run (tens of ms). Above
# it a run writes only its own rows, as a part file (O(its own events), DESIGN §9), and
# the parts are folded into ledger.parquet once there are more than MAX_PARTS of them.
REWRITE_BELOW_ROWS = 100_000
MAX_PARTS = 16
LOCK_FILE = ".ledger.lock"
JOURNAL_PREFIX = "_journal-"
JOURNAL_SUFFIX = ".jsonl"
SORT_KEYS = [("ts", "ascending"), ("run_id", "ascending"), ("seq", "ascending")]

_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
_INT_RANGE = {"seq": (-(2**31), 2**31 - 1)}
_INT64 = (-(2**63), 2**63 - 1)


def _kind(field: pa.Field) -> str:
    if pa.types.is_timestamp(field.type) or pa.types.is_integer(field.type):
        return "int"
    return "float" if pa.types.is_floating(field.type) else "str"


_KINDS = {f.name: _kind(f) for f in LEDGER_SCHEMA}
_OWNED = ("run_id", "seq")  # filled by the ledger, never by the caller
# Strings repeat (run ids, tags, symbols); numbers mostly do not, and encoding them as
# dictionaries only costs write time.
_DICTIONARY = [name for name, kind in _KINDS.items() if kind == "str"]


def trading_date(ts_ns: int, tz: str = "America/New_York") -> str:
    """The exchange-local date (YYYY-MM-DD) of an instant: the ledger's day folder."""
    seconds = ts_ns // 1_000_000_000  # floor, so instants before 1970 land on the right day
    return datetime.fromtimestamp(seconds, ZoneInfo(tz)).date().isoformat()


def journal_path(day_dir: Path, run_id: str) -> Path:
    return day_dir / f"{JOURNAL_PREFIX}{run_id}{JOURNAL_SUFFIX}"


# ----------------------------------------------------------------------------- rows


_COLUMN_SET = frozenset(COLUMNS)
_NUMBER_TYPES = (int, float, np.integer, np.floating)
_INT_TYPES = (int, np.integer)
# Made once: json.dumps builds a new encoder on every call that passes options.
_JSON = json.JSONEncoder(separators=(",", ":"))


def _check_value(key: str, value: Any) -> Any:
    """The value as it goes into the journal, or ValueError: a bad row must fail here,
    in the run that made it, not in every later compaction of the day."""
    if value is None:
        return None
    kind = _KINDS[key]
    if kind == "str":
        if isinstance(value, str):
            return value
    elif isinstance(value, bool):
        pass  # bool is an int subclass; never a number in the ledger
    elif kind == "float" and isinstance(value, _NUMBER_TYPES):
        return float(value)
    elif kind == "int" and isinstance(value, _INT_TYPES):
        lo, hi = _INT_RANGE.get(key, _INT64)
        if lo <= int(value) <= hi:
            return int(value)
    raise ValueError(f"ledger column {key!r} cannot hold {value!r}")


def _clean_row(row: dict[str, Any], run_id: str, seq: int) -> dict[str, Any]:
    """Every column in schema order (like table_to_rows), each value checked, run_id and
    seq filled in; ValueError for an unknown column, an owned one, or a ts that is not
    int nanoseconds."""
    if not row.keys() <= _COLUMN_SET:
        unknown = sorted(row.keys() - _COLUMN_SET)
        raise ValueError(f"unknown ledger column(s): {', '.join(unknown)}")
    owned = [k for k in _OWNED if k in row]
    if owned:
        raise ValueError(f"the ledger fills {', '.join(owned)} itself")
    ts = row.get("ts")
    if not isinstance(ts, _INT_TYPES) or isinstance(ts, bool):
        raise ValueError(f"ledger row needs ts as int nanoseconds, got {ts!r}")
    clean = dict.fromkeys(COLUMNS)
    for key, value in row.items():
        clean[key] = _check_value(key, value)
    clean["run_id"] = run_id
    clean["seq"] = seq
    return clean


def _encode(row: dict[str, Any]) -> bytes:
    """One journal line: the row's non-null values as compact JSON (floats are written
    with repr(), which round-trips exactly), then a newline."""
    return (_JSON.encode({k: v for k, v in row.items() if v is not None}) + "\n").encode()


def rows_to_table(rows: Iterable[dict[str, Any]], schema: pa.Schema = LEDGER_SCHEMA) -> pa.Table:
    """Rows (ts as int ns, absent keys = null) as a table of LEDGER_SCHEMA (or a part of it)."""
    rows = list(rows)
    arrays = [_column([r.get(f.name) for r in rows], f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


_NUMPY = {"int": np.int64, "float": np.float64}


def _column(values: list[Any], kind: pa.DataType) -> pa.Array:
    """One column from Python values (None = null), built from numpy buffers: pyarrow's
    pa.array() imports pandas on first use (0.15-0.25 s), which a dry run must not."""
    n = len(values)
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=n)
    nulls = n - int(valid.sum())
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    if pa.types.is_string(kind):
        return _strings(values, n, bitmap, nulls)
    name = "int" if pa.types.is_integer(kind) or pa.types.is_timestamp(kind) else "float"
    filled = [_number(v, name) for v in values]
    data = np.array(filled, dtype=np.int32 if kind == pa.int32() else _NUMPY[name])
    return pa.Array.from_buffers(kind, n, [bitmap, pa.py_buffer(data)], null_count=nulls)


def _from_numpy(data: np.ndarray, kind: pa.DataType) -> pa.Array:
    """A null-free column over a numpy array's buffer (no pa.array: see _column)."""
    return pa.Array.from_buffers(kind, len(data), [None, pa.py_buffer(data)], null_count=0)


def _values(arr: pa.Array) -> np.ndarray:
    """A null-free fixed-width column as numpy, zero-copy (Array.to_numpy imports pandas)."""
    width = arr.type.bit_width // 8
    data = np.frombuffer(arr.buffers()[1], dtype=f"<i{width}")
    return data[arr.offset:arr.offset + len(arr)]


def _number(value: Any, kind: str) -> int | float:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"a ledger {kind} column cannot hold {value!r}")
    if kind == "int" and not isinstance(value, (int, np.integer)):
        raise TypeError(f"a ledger int column cannot hold {value!r}")
    return value  # type: ignore[return-value]  # numpy scalars go into np.array as well


def _strings(values: list[Any], n: int, bitmap: pa.Buffer | None, nulls: int) -> pa.Array:
    for v in values:
        if v is not None and not isinstance(v, str):
            raise TypeError(f"a ledger string column cannot hold {v!r}")
    encoded = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=n), out=offsets[1:])
    return pa.Array.from_buffers(pa.large_string(), n, [bitmap, pa.py_buffer(offsets),
                                                        pa.py_buffer(b"".join(encoded))],
                                 null_count=nulls).cast(pa.string())


def ledger_schema(columns: Iterable[str] | None = None) -> pa.Schema:
    """LEDGER_SCHEMA, or the part of it with `columns` and the keys ts, run_id and seq."""
    if columns is None:
        return LEDGER_SCHEMA
    wanted = set(columns) | {"ts", "run_id", "seq"}
    unknown = sorted(wanted - set(COLUMNS))
    if unknown:
        raise ValueError(f"unknown ledger column(s): {', '.join(unknown)}")
    return pa.schema(
        [f for f in LEDGER_SCHEMA if f.name in wanted], metadata=LEDGER_SCHEMA.metadata
    )


def table_to_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The inverse of `rows_to_table`: timestamps back to int ns, nulls as None."""
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.int64()))
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


# ----------------------------------------------------------------------------- files


def write_durable(path: Path, text: str) -> None:
    """`text` at `path`, whole or not at all, and still there after a crash: a temp file
    fsynced, renamed over `path`, then the folder fsynced (the folder's own parent too
    when the folder is new). For the small files that say what is left to do."""
    folder = path.parent
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        _fsync_dir(folder.parent)
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(folder)


def remove_durable(path: Path) -> None:
    """Remove `path` (if there) so that a crash cannot bring it back."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """All of `data`, in one write unless the kernel takes less (then the rest, in turn)."""
    written = os.write(fd, data)
    while written < len(data):
        written += os.write(fd, memoryview(data)[written:])


def _journals(day_dir: Path) -> list[Path]:
    return sorted(day_dir.glob(f"{JOURNAL_PREFIX}*{JOURNAL_SUFFIX}"))


def _parse_journal(path: Path) -> list[dict[str, Any]]:
    """The complete rows of one journal. A torn tail (a crash mid-write leaves a line
    without its newline, or garbage) is ignored; a bad line followed by good ones is not."""
    lines = path.read_bytes().split(b"\n")[:-1]  # the piece after the last newline is torn
    rows: list[dict[str, Any]] = []
    bad_at: int | None = None
    for number, line in enumerate(lines, 1):
        row = _parse_line(line)
        if row is None:
            bad_at = bad_at or number
        elif bad_at is not None:
            raise LedgerError(f"{path}:{bad_at}: unreadable journal line", "fix or move it")
        else:
            rows.append(row)
    return rows


def _parse_line(line: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    if not isinstance(row, dict) or not set(row) <= set(COLUMNS):
        return None
    if not isinstance(row.get("ts"), int) or not isinstance(row.get("seq"), int):
        return None
    return row


def _conform(table: pa.Table, path: Path, schema: pa.Schema) -> pa.Table:
    """A Parquet table cast to `schema`; a column we do not know makes it unreadable,
    because rewriting the file would drop it."""
    extra = sorted(set(table.column_names) - set(schema.names))
    if extra:
        raise LedgerError(f"{path}: unknown column(s) {', '.join(extra)}")
    arrays = []
    for field in schema:
        if field.name in table.column_names:
            arrays.append(table.column(field.name).cast(field.type))
        else:  # written before the column existed
            arrays.append(pa.nulls(len(table), field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _read_parquet(path: Path, schema: pa.Schema = LEDGER_SCHEMA) -> pa.Table:
    try:
        file = pq.ParquetFile(path)  # not pq.read_table: that imports pyarrow.dataset (0.2 s)
        names = None if schema is LEDGER_SCHEMA else schema.names
        present = None if names is None else [n for n in names if n in file.schema_arrow.names]
        return _conform(file.read(columns=present), path, schema)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise LedgerError(f"{path}: cannot read the ledger ({exc})") from exc


def _write_parquet_atomic(table: pa.Table, dest: Path, tmp_tag: str) -> None:
    tmp = dest.with_name(f".{dest.stem}.{tmp_tag}.tmp")  # '.': invisible to dataset readers
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f, compression="zstd", use_dictionary=_DICTIONARY)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _sorted_unique(table: pa.Table) -> pa.Table:
    """Rows sorted by (ts, run_id, seq), the first of each (run_id, seq) kept. Vectorised
    with numpy, not Table.group_by: that loads Acero and pyarrow.dataset, and with them
    pandas (0.2 s on a dry run)."""
    if len(table):
        runs = _values(pc.dictionary_encode(table.column("run_id").combine_chunks()).indices)
        seqs = _values(table.column("seq").combine_chunks())
        key = (runs.astype(np.int64) << 32) | (seqs.astype(np.int64) & 0xFFFFFFFF)
        _, first = np.unique(key, return_index=True)
        if len(first) < len(table):
            table = table.take(_from_numpy(np.sort(first).astype(np.int64), pa.int64()))
    return table.sort_by(SORT_KEYS)

def _merge(
    base: pa.Table | None, rows: list[dict[str, Any]], schema: pa.Schema = LEDGER_SCHEMA
) -> tuple[pa.Table, int]:
    """`base` plus the rows it does not hold yet; and how many rows were new.

    The run's cost stays near O(its own rows) on a big day: base is sorted and unique
    already, so only rows of runs it shares with `rows` are checked for doubles, and only
    the tail of base from the earliest new ts on is re-sorted.
    """
    extra = _sorted_unique(rows_to_table(rows, schema))
    if base is None or base.num_rows == 0:
        return extra, extra.num_rows
    extra = _drop_known(base, extra)
    if extra.num_rows == 0:
        return base, 0
    ts = _values(base.column("ts").cast(pa.int64()).combine_chunks())
    if not bool(np.all(ts[1:] >= ts[:-1])):  # not written by us: sort it all
        return _sorted_unique(pa.concat_tables([base, extra])), extra.num_rows
    first_ts = extra.column("ts").cast(pa.int64())[0].as_py()
    cut = int(np.searchsorted(ts, first_ts, side="left"))  # rows before it are all earlier
    tail = pa.concat_tables([base.slice(cut), extra]).sort_by(SORT_KEYS)
    return pa.concat_tables([base.slice(0, cut), tail]), extra.num_rows


def _drop_known(base: pa.Table, extra: pa.Table) -> pa.Table:
    """`extra` less the (run_id, seq) pairs base holds (a merge that crashed before it
    deleted its journals leaves them to be merged again)."""
    runs = pc.unique(extra.column("run_id"))
    mask = pc.is_in(base.column("run_id"), value_set=runs)
    if not pc.any(mask).as_py():
        return extra
    known = base.filter(mask).select(["run_id", "seq"]).to_pylist()
    pairs = {(k["run_id"], k["seq"]) for k in known}
    run_ids = extra.column("run_id").to_pylist()
    seqs = extra.column("seq").to_pylist()
    keep = [(r, s) not in pairs for r, s in zip(run_ids, seqs, strict=True)]
    return extra.filter(_from_numpy(np.array(keep, dtype=np.int8), pa.int8()).cast(pa.bool_()))


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _claim(path: Path) -> int | None:
    """An fd holding LOCK_EX on a journal no live run holds, or None if one does."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _remove_stale_temps(day_dir: Path) -> None:
    # Only the holder of the day lock writes temps, so any found under it are from a crash.
    for tmp in day_dir.glob(".ledger.*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
    # (A `._journal-*.new` left by a run that died between creating and naming its journal
    # is empty; it is not removed here, as it cannot be told from one being created now.)


# ----------------------------------------------------------------------------- merging


def _compact(day_dir: Path, own: Path | None, rescue_tag: str) -> int:
    """Merge `own` and every unclaimed journal into ledger.parquet; rows merged.

    Caller holds the day lock. On an unreadable ledger.parquet the rows go to
    `ledger.<rescue_tag>.parquet`, every journal is kept and LedgerError is raised.
    """
    _remove_stale_temps(day_dir)
    claimed = {p: _claim(p) for p in _journals(day_dir) if p != own}
    paths = [p for p, fd in claimed.items() if fd is not None] + ([own] if own else [])
    try:
        parsed, bad = _parse_all(paths)
        rows = [row for p in parsed for row in parsed[p]]
        count = _write_merged(day_dir, rows, rescue_tag) if rows else 0
        for path in parsed:
            path.unlink(missing_ok=True)
        if parsed:
            _fsync_dir(day_dir)
    finally:
        for fd in claimed.values():
            if fd is not None:
                os.close(fd)
    if bad:  # the others are merged; these stay for a person to look at
        raise LedgerError("; ".join(bad), "fix or move it; the other journals were merged")
    return count


def _parse_all(paths: list[Path]) -> tuple[dict[Path, list[dict[str, Any]]], list[str]]:
    parsed: dict[Path, list[dict[str, Any]]] = {}
    bad: list[str] = []
    for path in paths:
        try:
            parsed[path] = _parse_journal(path)
        except LedgerError as exc:
            bad.append(exc.message)
    return parsed, bad


def _write_merged(day_dir: Path, rows: list[dict[str, Any]], rescue_tag: str) -> int:
    ledger = day_dir / LEDGER_FILE
    try:
        base_rows = pq.ParquetFile(ledger).metadata.num_rows if ledger.exists() else 0
        parts = sorted(day_dir.glob(f"{PART_PREFIX}*.parquet"))
        if base_rows >= REWRITE_BELOW_ROWS and len(parts) < MAX_PARTS:
            return _write_part(day_dir, rows, rescue_tag)
        base = _read_parquet(ledger) if ledger.exists() else None
    except (LedgerError, pa.ArrowException, OSError) as exc:
        why = str(exc) if isinstance(exc, LedgerError) else f"{ledger}: cannot read the " \
            f"ledger ({exc})"
        rescue = day_dir / f"ledger.{rescue_tag}.parquet"
        merged, _ = _merge(None, rows)
        _write_parquet_atomic(merged, rescue, rescue_tag)
        raise LedgerError(
            f"{why}; left it untouched and wrote {merged.num_rows} rows to {rescue}",
            "the journals are kept; repair or move the unreadable file, then `runner recover`",
        ) from exc
    folded = [row for p in parts for row in table_to_rows(_read_parquet(p))]
    merged, count = _merge(base, folded + rows)
    if count or parts:
        _write_parquet_atomic(merged, ledger, rescue_tag)
    for part in parts:  # their rows are in ledger.parquet now
        part.unlink(missing_ok=True)
    return count


def _write_part(day_dir: Path, rows: list[dict[str, Any]], run_id: str) -> int:
    """A big day: this run's rows go to a part file of their own; ledger.parquet is not
    read or rewritten. Readers merge the parts (and drop any (run_id, seq) seen twice)."""
    part = _sorted_unique(rows_to_table(rows))
    _write_parquet_atomic(part, day_dir / f"{PART_PREFIX}{run_id}.parquet", run_id)
    return int(part.num_rows)


def merge_leftovers(out_dir: Path, day: str) -> int:
    """Merge the journals of runs that are gone (crashed) into the day's ledger; rows merged."""
    day_dir = Path(out_dir) / _check_day(day)
    if not day_dir.is_dir():
        return 0
    with _flocked(day_dir / LOCK_FILE):
        return _compact(day_dir, None, f"recover-{uuid.uuid4().hex[:8]}")


def leftover_days(out_dir: Path) -> list[str]:
    """Days with journals on disk (crashed or live runs): what `runner recover` visits."""
    root = Path(out_dir)
    return [d.name for d in _day_dirs(root) if _journals(d)] if root.is_dir() else []


def live_runs(out_dir: Path, day: str) -> set[str]:
    """Runs whose journal is still on disk after a merge: running now (they hold its lock)."""
    day_dir = Path(out_dir) / _check_day(day)
    if not day_dir.is_dir():
        return set()
    return {p.name[len(JOURNAL_PREFIX):-len(JOURNAL_SUFFIX)] for p in _journals(day_dir)}


def _check_day(day: str) -> str:
    if not _DAY_RE.match(day):
        raise ValueError(f"day must be YYYY-MM-DD, got {day!r}")
    return day


# ----------------------------------------------------------------------------- the run


class Ledger:
    """One run's ledger. `open`, `append` each event, then `commit` (or leave the block:
    `__exit__` commits). Rows hold ts as int ns; `run_id` and `seq` are filled here."""

    def __init__(self, out_dir: Path, day: str, run_id: str) -> None:
        if not _RUN_ID_RE.match(run_id):
            raise ValueError(f"run_id must be [A-Za-z0-9_.-] and not start with '.': {run_id!r}")
        self.day_dir = Path(out_dir) / _check_day(day)
        self.run_id = run_id
        self.journal_path = journal_path(self.day_dir, run_id)
        self._fd: int | None = None
        self._size = 0
        self._rows: list[dict[str, Any]] = []
        self._committed = False

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows)

    @property
    def ledger_path(self) -> Path:
        return self.day_dir / LEDGER_FILE

    def open(self) -> Ledger:
        """Create the journal and lock it; LedgerError if the folder is not writable."""
        if self._fd is not None or self._committed:
            raise LedgerError(f"ledger {self.journal_path} was opened before", "open it once")
        try:
            if not self.day_dir.is_dir():
                self.day_dir.mkdir(parents=True, exist_ok=True)
                _fsync_dir(self.day_dir.parent)  # the new day folder survives a power cut
            self._fd = self._create_locked_journal()
        except OSError as exc:
            raise LedgerError(
                f"cannot create the ledger journal {self.journal_path}: {exc.strerror or exc}",
                "out_dir must be a writable folder with free space; nothing was sent",
            ) from exc
        return self

    def _create_locked_journal(self) -> int:
        # Created under a dot name and renamed once locked, so no other run's commit can see
        # it unlocked, take it for a crashed run's journal and delete it under us.
        tmp = self.day_dir / f".{self.journal_path.name}.new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if self.journal_path.exists():
                raise OSError(errno.EEXIST, "run_id already has a journal")
            os.rename(tmp, self.journal_path)
            _fsync_dir(self.day_dir)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return fd

    def append(self, row: dict[str, Any]) -> None:
        """Journal one event; returns once it is fsynced (write-ahead)."""
        if self._fd is None:
            raise LedgerError(f"ledger {self.journal_path} is not open", "call open() first")
        clean = _clean_row(row, self.run_id, len(self._rows) + 1)
        line = _encode(clean)
        try:
            _write_all(self._fd, line)
            os.fsync(self._fd)
        except OSError as exc:
            self._truncate_torn_line()
            raise LedgerError(
                f"cannot write the ledger journal {self.journal_path}: {exc.strerror or exc}",
                "free disk space; the events before this one are safe",
            ) from exc
        self._size += len(line)
        self._rows.append(clean)

    def _truncate_torn_line(self) -> None:
        # A half-written line in the middle of a journal would make it unreadable once later
        # events (the cleanup's CANCEL) follow it, so cut back to the last whole line.
        with contextlib.suppress(OSError):
            assert self._fd is not None
            os.ftruncate(self._fd, self._size)

    def commit(self) -> Path:
        """Merge this run's journal and every crashed run's into ledger.parquet atomically."""
        if self._fd is None or self._committed:
            raise LedgerError(f"ledger {self.journal_path} is not open", "commit once, after open")
        self._committed = True
        try:
            with _flocked(self.day_dir / LOCK_FILE):
                _compact(self.day_dir, self.journal_path, self.run_id)
        except (OSError, pa.ArrowException) as exc:
            raise LedgerError(
                f"cannot write {self.ledger_path}: {exc.strerror or exc}",
                "the events are kept in the journal; `runner recover` merges them later",
            ) from exc
        finally:
            self.close()
        return self.ledger_path

    def close(self) -> None:
        """Release the journal lock; an uncommitted journal stays for the next merge."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Ledger:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is None or self._committed:
            return
        if exc is None:
            self.commit()
            return
        # Already failing: try to merge, but never hide the first error; the journal keeps
        # the rows if this fails too.
        with contextlib.suppress(LedgerError):
            self.commit()


# ----------------------------------------------------------------------------- reading


def _day_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and _DAY_RE.match(p.name))


def _is_day_dir(path: Path) -> bool:
    return bool(_DAY_RE.match(path.name)) or (path / LEDGER_FILE).exists() or bool(_journals(path))


def _read_day(day_dir: Path, schema: pa.Schema) -> pa.Table:
    """ledger.parquet, with the rows of rescue files and journals (live ones too)."""
    ledger = day_dir / LEDGER_FILE
    base = _read_parquet(ledger, schema) if ledger.exists() else None
    rescued = [_read_parquet(p, schema) for p in sorted(day_dir.glob("ledger.*.parquet"))]
    rows = [row for t in rescued for row in table_to_rows(t)]
    rows += [row for p in _journals(day_dir) for row in _parse_journal(p)]
    return _merge(base, rows, schema)[0]


def read_ledger(
    path_or_dir: str | os.PathLike[str], columns: Iterable[str] | None = None
) -> pa.Table:
    """Every event seen: a ledger file, a journal, a day folder, or the out_dir root
    (all days). Sorted by (ts, run_id, seq); rows still only in journals included.
    `columns` reads only those (and ts, run_id, seq), which is much faster on big days."""
    path, schema = Path(path_or_dir), ledger_schema(columns)
    if path.is_file():
        if path.suffix == JOURNAL_SUFFIX:
            return _merge(None, _parse_journal(path), schema)[0]
        return _read_parquet(path, schema)
    if not path.is_dir():
        raise LedgerError(f"no ledger at {path}")
    days = [path] if _is_day_dir(path) else _day_dirs(path)
    tables = [_read_day(d, schema) for d in days]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def read_day_settled(day_dir: Path, columns: Iterable[str] | None = None) -> pa.Table:
    """A day's events as one consistent snapshot: read under the day's compaction lock, so
    a run committing meanwhile (journal into ledger.parquet, then the journal removed)
    cannot hide its rows between the two reads (what the day caps count)."""
    with _flocked(Path(day_dir) / LOCK_FILE):
        return read_ledger(day_dir, columns)


def tags_on_day(out_dir: Path, day: str) -> set[str]:
    """Every tag the day has seen, journals of live runs included (the duplicate guard),
    read under the day's compaction lock like read_day_settled."""
    day_dir = Path(out_dir) / _check_day(day)
    if not day_dir.is_dir():
        return set()
    with _flocked(day_dir / LOCK_FILE):
        return _tags_in(day_dir)


def _tags_in(day_dir: Path) -> set[str]:
    tags: set[str] = set()
    for path in [day_dir / LEDGER_FILE, *sorted(day_dir.glob("ledger.*.parquet"))]:
        if path.exists():
            column = _read_parquet(path, ledger_schema(["tag"])).column("tag")
            tags.update(t for t in pc.unique(column).to_pylist() if t is not None)
    for journal in _journals(day_dir):
        tags.update(r["tag"] for r in _parse_journal(journal) if r.get("tag") is not None)
    return tags
