"""The ledger's contract: LEDGER_SCHEMA (one Arrow schema, declared once), the names of
its files, and the day folders they live in (the layout: runner/ledger/__init__.py)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa

from runner.ledger import event
from runner.ledger.event import OWNED

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
        # the rest of the instrument, as the spec named it (runner.contract); null for none
        pa.field("con_id", pa.int64()),
        pa.field("local_symbol", _STR),
        pa.field("expiry", _STR),  # FUT/OPT/FOP: lastTradeDateOrContractMonth
        pa.field("strike", _F64),
        pa.field("right", _STR),  # C | P
        pa.field("multiplier", _F64),  # notional is qty x price x this (null: 1)
        pa.field("mode", _STR),  # paper | live, as the spec said
        pa.field("side", _STR),
        pa.field("qty", _F64),  # null for an order sized in money (cash_qty)
        pa.field("cash_qty", _F64),  # IB's cashQty: the order's size in its currency, or null
        pa.field("order_type", _STR),
        pa.field("limit", _F64),
        pa.field("tif", _STR),
        # the prices of the other order types and the algo (runner.ordertypes); null if none
        pa.field("stop", _F64),  # STP / STP LMT trigger; TRAIL*: the first stop
        pa.field("trail_amount", _F64),
        pa.field("trail_percent", _F64),
        pa.field("offset", _F64),  # REL / PEG MID auxPrice; TRAIL LIMIT lmtPriceOffset
        pa.field("algo", _STR),  # IB's algoStrategy
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
LOCK_FILE = ".ledger.lock"
JOURNAL_PREFIX = "_journal-"
JOURNAL_SUFFIX = ".jsonl"
SORT_KEYS = [("ts", "ascending"), ("run_id", "ascending"), ("seq", "ascending")]

DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


def kind(field: pa.Field) -> str:
    """How a column's values look in Python: "int" (integers, and timestamps as int ns),
    "float" or "str"."""
    if pa.types.is_timestamp(field.type) or pa.types.is_integer(field.type):
        return "int"
    return "float" if pa.types.is_floating(field.type) else "str"


KINDS = {f.name: kind(f) for f in LEDGER_SCHEMA}


def check_fields(event_type: type, schema: pa.Schema = LEDGER_SCHEMA) -> None:
    """TypeError unless `event_type`'s fields are the schema's columns less the two the
    ledger fills (run_id, seq), in its order and of its kinds, `ts` the one required."""
    fields = dataclasses.fields(event_type)
    want = [(f.name, kind(f)) for f in schema if f.name not in OWNED]
    have = [(f.name, event.kind_of(f)) for f in fields]
    if have != want:
        diff = sorted(set(have) ^ set(want)) or "the order"
        raise TypeError(f"{event_type.__name__} does not match the ledger schema: {diff}")
    required = [f.name for f in fields if f.default is dataclasses.MISSING]
    if required != ["ts"]:
        raise TypeError(f"{event_type.__name__}: only ts may be required, not {required}")


check_fields(event.LedgerEvent)  # on every import of the schema: the two cannot drift apart


def trading_date(ts_ns: int, tz: str = "America/New_York") -> str:
    """The exchange-local date (YYYY-MM-DD) of an instant: the ledger's day folder."""
    seconds = ts_ns // 1_000_000_000  # floor, so instants before 1970 land on the right day
    return datetime.fromtimestamp(seconds, ZoneInfo(tz)).date().isoformat()


def journal_path(day_dir: Path, run_id: str) -> Path:
    return day_dir / f"{JOURNAL_PREFIX}{run_id}{JOURNAL_SUFFIX}"


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


def check_day(day: str) -> str:
    if not DAY_RE.match(day):
        raise ValueError(f"day must be YYYY-MM-DD, got {day!r}")
    return day
