"""Ledger rows <-> Arrow tables, and the day's Parquet files: read (cast to the schema),
written whole or not at all, merged without doubles.

Built from numpy buffers, never `pa.array()` or `Table.group_by`: those import pandas
(0.15-0.25 s), which a dry run must not. A run's own rows are sorted in Python before
they become a table, so that a run on a fresh day does not import pyarrow.compute either
(~25 ms); merging into a day that has rows does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from runner.errors import LedgerError
from runner.ledger.files import fsync_dir
from runner.ledger.schema import KINDS, LEDGER_SCHEMA, SORT_KEYS

# Strings repeat (run ids, tags, symbols); numbers mostly do not, and encoding them as
# dictionaries only costs write time.
_DICTIONARY = [name for name, kind in KINDS.items() if kind == "str"]
_NUMPY = {"int": np.int64, "float": np.float64}


def rows_to_table(rows: Iterable[dict[str, Any]], schema: pa.Schema = LEDGER_SCHEMA) -> pa.Table:
    """Rows (ts as int ns, absent keys = null) as a table of LEDGER_SCHEMA (or a part of it)."""
    rows = list(rows)
    arrays = [_column([r.get(f.name) for r in rows], f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)




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
    data = pa.py_buffer(b"".join(encoded))
    if offsets[-1] < 2**31:  # fits string's int32 offsets: built as it is, no cast (whose
        # pyarrow.compute import costs a dry run ~25 ms)
        return pa.Array.from_buffers(pa.string(), n, [bitmap, pa.py_buffer(
            offsets.astype(np.int32)), data], null_count=nulls)
    return pa.Array.from_buffers(pa.large_string(), n, [bitmap, pa.py_buffer(offsets), data],
                                 null_count=nulls).cast(pa.string())



def table_to_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The inverse of `rows_to_table`: timestamps back to int ns, nulls as None."""
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.int64()))
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows



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


def read_parquet(path: Path, schema: pa.Schema = LEDGER_SCHEMA) -> pa.Table:
    try:
        file = pq.ParquetFile(path)  # not pq.read_table: that imports pyarrow.dataset (0.2 s)
        names = None if schema is LEDGER_SCHEMA else schema.names
        present = None if names is None else [n for n in names if n in file.schema_arrow.names]
        return _conform(file.read(columns=present), path, schema)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise LedgerError(f"{path}: cannot read the ledger ({exc})") from exc


def write_parquet_atomic(table: pa.Table, dest: Path, tmp_tag: str) -> None:
    tmp = dest.with_name(f".{dest.stem}.{tmp_tag}.tmp")  # '.': invisible to dataset readers
    try:
        with open(tmp, "wb") as f:
            pq.write_table(table, f, compression="zstd", use_dictionary=_DICTIONARY)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def sorted_unique_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """What `sorted_unique` makes of the table of `rows`, done on the rows themselves:
    sorted by (ts, run_id, seq), the first of each (run_id, seq) kept."""
    first: dict[tuple[Any, Any], dict[str, Any]] = {}
    for row in rows:
        first.setdefault((row["run_id"], row["seq"]), row)
    return sorted(first.values(), key=lambda r: (r["ts"], r["run_id"], r["seq"]))


def sorted_unique(table: pa.Table) -> pa.Table:
    """Rows sorted by (ts, run_id, seq), the first of each (run_id, seq) kept. Vectorised
    with numpy, not Table.group_by: that loads Acero and pyarrow.dataset, and with them
    pandas (0.2 s on a dry run)."""
    import pyarrow.compute as pc

    if len(table):
        runs = _values(pc.dictionary_encode(table.column("run_id").combine_chunks()).indices)
        seqs = _values(table.column("seq").combine_chunks())
        key = (runs.astype(np.int64) << 32) | (seqs.astype(np.int64) & 0xFFFFFFFF)
        _, first = np.unique(key, return_index=True)
        if len(first) < len(table):
            table = table.take(_from_numpy(np.sort(first).astype(np.int64), pa.int64()))
    return table.sort_by(SORT_KEYS)

def merge(
    base: pa.Table | None, rows: list[dict[str, Any]], schema: pa.Schema = LEDGER_SCHEMA
) -> tuple[pa.Table, int]:
    """`base` plus the rows it does not hold yet; and how many rows were new.

    The run's cost stays near O(its own rows) on a big day: base is sorted and unique
    already, so only rows of runs it shares with `rows` are checked for doubles, and only
    the tail of base from the earliest new ts on is re-sorted.
    """
    extra = rows_to_table(sorted_unique_rows(rows), schema)
    if base is None or base.num_rows == 0:
        return extra, extra.num_rows
    extra = _drop_known(base, extra)
    if extra.num_rows == 0:
        return base, 0
    ts = _values(base.column("ts").cast(pa.int64()).combine_chunks())
    if not bool(np.all(ts[1:] >= ts[:-1])):  # not written by us: sort it all
        return sorted_unique(pa.concat_tables([base, extra])), extra.num_rows
    first_ts = extra.column("ts").cast(pa.int64())[0].as_py()
    cut = int(np.searchsorted(ts, first_ts, side="left"))  # rows before it are all earlier
    tail = pa.concat_tables([base.slice(cut), extra]).sort_by(SORT_KEYS)
    return pa.concat_tables([base.slice(0, cut), tail]), extra.num_rows


def _drop_known(base: pa.Table, extra: pa.Table) -> pa.Table:
    """`extra` less the (run_id, seq) pairs base holds (a merge that crashed before it
    deleted its journals leaves them to be merged again)."""
    import pyarrow.compute as pc

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


