"""Synthetic ledger days, built with runner.ledger's schema (the contract), for the ledger
and tca benches.

Every order is one run of 5 events, as the engine writes a one-shot that trades:
INTENT, ACK, PARTIAL, then FILL (70%) or CANCEL (30%), then PNL_SNAPSHOT, with the
engine's columns filled (cumulative fill_qty, avg_px, commission, TCA on the snapshot).
Built column-wise with numpy, so a 1,000,000-row day takes about a second.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.ledger import LEDGER_FILE, LEDGER_SCHEMA, SORT_KEYS  # noqa: E402

DAY = "2026-01-05"
OPEN_NS = 1_767_623_400 * 1_000_000_000  # 2026-01-05 14:30:00 UTC, the NYSE open
SESSION_NS = 23_400 * 1_000_000_000
EVENTS = ("INTENT", "ACK", "PARTIAL", "FILL", "PNL_SNAPSHOT")
ROWS_PER_ORDER = len(EVENTS)
_OFFSET_NS = np.array([0, 2_000_000, 1_000_000_000, 2_000_000_000, 2_000_000_000])


def _strings(values: list[str], index: np.ndarray) -> pa.Array:
    return pa.array(values, pa.string()).take(pa.array(index))


def _masked(values: np.ndarray, keep: np.ndarray) -> pa.Array:
    return pa.array(values, pa.float64(), mask=~keep)


def synthetic_day(n_rows: int, seed: int = 1) -> pa.Table:
    """A day of `n_rows` events (a multiple of 5) as a LEDGER_SCHEMA table, sorted like a
    committed ledger."""
    if n_rows % ROWS_PER_ORDER:
        raise ValueError(f"n_rows must be a multiple of {ROWS_PER_ORDER}")
    rng = np.random.default_rng(seed)
    n = n_rows // ROWS_PER_ORDER
    order = np.repeat(np.arange(n), ROWS_PER_ORDER)
    step = np.tile(np.arange(ROWS_PER_ORDER), n)
    cols = _order_columns(rng, n, order, step)
    cols.update(_fill_columns(rng, n, order, step))
    # columns the synthetic day does not model (deadline, exec_id) are all null
    arrays = [cols[f.name] if f.name in cols else pa.nulls(n_rows, f.type)
              for f in LEDGER_SCHEMA]
    table = pa.Table.from_arrays(arrays, schema=LEDGER_SCHEMA)
    return table.sort_by(SORT_KEYS)


def _order_columns(rng: np.random.Generator, n: int, order: np.ndarray,
                   step: np.ndarray) -> dict[str, Any]:
    start = OPEN_NS + np.sort(rng.integers(0, SESSION_NS, n))
    sell = rng.random(n) < 0.5
    cancelled = rng.random(n) < 0.3
    event_idx = np.where((step == 3) & cancelled[order], len(EVENTS), step)
    ids = np.arange(n, dtype=np.int64)
    return {
        "ts": pa.array(start[order] + _OFFSET_NS[step], pa.int64()).cast(LEDGER_SCHEMA.field(
            "ts").type),
        "run_id": _strings([f"{i:016x}" for i in range(n)], order),
        "seq": pa.array(step + 1, pa.int32()),
        "spec": _strings(["specs/one-shot.yaml"], np.zeros(len(order), np.int64)),
        "tag": _strings([f"oneshot_SPY_{1767623400 + i}" for i in range(n)], order),
        "event": _strings([*EVENTS, "CANCEL"], event_idx),
        "broker": _strings(["sim"], np.zeros(len(order), np.int64)),
        "account": _strings(["DU1234567"], np.zeros(len(order), np.int64)),
        "order_id": pa.array((ids + 1)[order]),
        "perm_id": pa.array((ids + 1_000_000_000)[order]),
        "symbol": _strings(["SPY"], np.zeros(len(order), np.int64)),
        "side": _strings(["BUY", "SELL"], sell[order].astype(np.int64)),
        "order_type": _strings(["LMT"], np.zeros(len(order), np.int64)),
        "tif": _strings(["GTD"], np.zeros(len(order), np.int64)),
        "message": pa.nulls(len(order), pa.string()),
    }


def _fill_columns(rng: np.random.Generator, n: int, order: np.ndarray,
                  step: np.ndarray) -> dict[str, Any]:
    qty = np.floor(np.exp(rng.uniform(0, np.log(2000), n))) + 1
    arrival = np.round(470 + rng.normal(0, 3, n), 2)
    limit = np.round(arrival + rng.uniform(-0.05, 0.05, n), 2)
    first = np.maximum(1, np.floor(qty * rng.uniform(0.1, 0.9, n)))
    total = np.where(rng.random(n) < 0.3, first, qty)
    cum = np.select([step[:, None] == 2, step[:, None] >= 3], [first[order, None],
                    total[order, None]], 0.0)[:, 0]
    traded = step >= 2
    last_qty = np.where(step == 2, first[order], total[order] - first[order])
    commission = np.maximum(1.0, 0.005 * cum)
    snap = step == 4
    shortfall = (limit - arrival) / arrival * 1e4 * np.where(rng.random(n) < 0.5, 1, -1)
    return {
        "qty": pa.array(qty[order]),
        "limit": pa.array(limit[order]),
        "fill_qty": pa.array(cum),
        "last_qty": _masked(last_qty, (step == 2) | (step == 3)),
        "last_px": _masked(limit[order], (step == 2) | (step == 3)),
        "avg_px": _masked(limit[order], traded),
        "commission": _masked(commission, traded),
        "arrival_px": _masked(arrival[order], (step == 0) | snap),
        "fill_ratio": _masked((total / qty)[order], snap),
        "shortfall_bps": _masked(shortfall[order], snap),
        "vwap_px": _masked(arrival[order] + 0.01, snap),
        "vwap_slippage_bps": _masked(shortfall[order] - 0.2, snap),
        "is_bps": _masked(shortfall[order] * 1.1, snap),
        "fees_bps": _masked((commission / (cum * limit[order] + 1e-9)) * 1e4, snap),
        "participation": _masked(np.full(len(order), 0.05), snap),
        "ms_to_first_fill": _masked(np.full(len(order), 1000.0), snap),
        "ms_to_done": _masked(np.full(len(order), 2000.0), snap),
    }


def write_day(out_dir: Path, n_rows: int, day: str = DAY) -> Path:
    """OUT_DIR/DAY/ledger.parquet holding a synthetic day, written as the ledger writes it."""
    path = out_dir / day / LEDGER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(synthetic_day(n_rows), path, compression="zstd")
    return path


def run_rows(n: int, start_ns: int = OPEN_NS + SESSION_NS // 2) -> list[dict[str, Any]]:
    """One realistic run's rows as the engine hands them to Ledger.append (no run_id/seq)."""
    base = {"spec": "specs/one-shot.yaml", "tag": f"bench_{start_ns}", "broker": "sim",
            "account": "DU1234567", "order_id": 1, "perm_id": 1_000_000_001, "symbol": "SPY",
            "side": "BUY", "qty": 100.0, "order_type": "LMT", "limit": 473.1, "tif": "GTD"}
    kinds = ["INTENT", "ACK", *["PARTIAL"] * max(0, n - 4), "FILL", "PNL_SNAPSHOT"][:n]
    rows = []
    for i, kind in enumerate(kinds):
        row = {**base, "ts": start_ns + i * 1_000_000, "event": kind,
               "fill_qty": float(min(100, 10 * i)), "avg_px": 473.1 if i > 1 else None}
        if kind in ("PARTIAL", "FILL"):
            row.update(last_qty=10.0, last_px=473.1, commission=1.0)
        rows.append(row)
    return rows
