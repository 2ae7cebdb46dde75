"""LedgerEvent: one ledger row as the engine and `runner recover` hand it to the journal.

Frozen and typed, one field per LEDGER_SCHEMA column except the two the ledger fills
itself (run_id, seq), in the schema's order and of its kinds: runner/ledger/schema.py
checks that when it loads (`check_fields`), so the two cannot drift apart. Each value is
checked when the event is built, so a bad one fails in the code that made it, never in a
later compaction of the day: floats are floats (ints are taken and made floats), ints fit
int64, strings are strings, and a bool is never a number.

Pure Python, no pyarrow: the engine imports it at start-up (a handshake loads no Arrow).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, ClassVar

OWNED = ("run_id", "seq")  # columns the ledger fills, never the caller
_INT64 = (-(2**63), 2**63 - 1)
# Made once: json.dumps builds a new encoder on every call that passes options.
_JSON = json.JSONEncoder(separators=(",", ":"))


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerEvent:
    """One event of one order; `ts` (int ns since the epoch, UTC) is the only required field.
    The columns' meaning: LEDGER_SCHEMA (runner/ledger/schema.py)."""

    # The order's identity and terms: the same on every row of one order (recover carries
    # them from the INTENT onto the rows it records).
    ORDER: ClassVar[tuple[str, ...]] = (
        "spec", "tag", "broker", "account", "order_id", "perm_id", "client_id", "symbol",
        "sec_type", "exchange", "currency", "con_id", "local_symbol", "expiry", "strike",
        "right", "multiplier", "mode", "side", "qty", "cash_qty", "order_type", "limit", "tif",
        "stop", "trail_amount", "trail_percent", "offset", "algo")  # fmt: skip

    ts: int
    spec: str | None = None
    tag: str | None = None
    event: str | None = None
    broker: str | None = None
    account: str | None = None
    order_id: int | None = None
    perm_id: int | None = None
    client_id: int | None = None
    symbol: str | None = None
    sec_type: str | None = None
    exchange: str | None = None
    currency: str | None = None
    con_id: int | None = None
    local_symbol: str | None = None
    expiry: str | None = None
    strike: float | None = None
    right: str | None = None
    multiplier: float | None = None
    mode: str | None = None
    side: str | None = None
    qty: float | None = None
    cash_qty: float | None = None
    order_type: str | None = None
    limit: float | None = None
    tif: str | None = None
    stop: float | None = None
    trail_amount: float | None = None
    trail_percent: float | None = None
    offset: float | None = None
    algo: str | None = None
    fill_qty: float | None = None
    last_qty: float | None = None
    last_px: float | None = None
    avg_px: float | None = None
    commission: float | None = None
    arrival_px: float | None = None
    arrival_source: str | None = None
    bars_path: str | None = None
    message: str | None = None
    deadline: int | None = None
    good_till: int | None = None
    exec_id: str | None = None
    corrects: str | None = None
    fill_ratio: float | None = None
    shortfall_bps: float | None = None
    vwap_px: float | None = None
    vwap_slippage_bps: float | None = None
    is_bps: float | None = None
    fees_bps: float | None = None
    participation: float | None = None
    ms_to_first_fill: float | None = None
    ms_to_done: float | None = None

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> LedgerEvent:
        """The event of a row given as a mapping (column -> value, absent = null);
        ValueError for an unknown column, one the ledger fills, or no int ts."""
        if not row.keys() <= FIELD_SET:
            unknown = sorted(row.keys() - FIELD_SET - set(OWNED))
            if unknown:
                raise ValueError(f"unknown ledger column(s): {', '.join(unknown)}")
            raise ValueError(f"the ledger fills {', '.join(k for k in OWNED if k in row)} "
                             "itself")
        _check_ts(row.get("ts"))
        return cls(**row)

    @classmethod
    def carried(cls, row: Mapping[str, Any], **values: Any) -> LedgerEvent:
        """A new event of the order `row` (an earlier event, as read from the ledger) is
        about: its ORDER fields, then `values` over them."""
        fields: dict[str, Any] = {k: row.get(k) for k in cls.ORDER}
        return cls(**(fields | values))

    def as_row(self) -> dict[str, Any]:
        """The non-null values, column -> value, in the schema's order."""
        return {k: v for k, v in zip(FIELDS, _VALUES(self), strict=True) if v is not None}

    def row(self, run_id: str, seq: int) -> dict[str, Any]:
        """Every column in the schema's order (nulls as None), run_id and seq filled in:
        the row as `table_to_rows` reads it back."""
        values = _VALUES(self)
        return {"ts": values[0], "run_id": run_id, "seq": seq,
                **dict(zip(_REST, values[1:], strict=True))}

    def line(self, run_id: str, seq: int) -> bytes:
        """The journal line: the non-null values as compact JSON in the schema's order
        (floats in repr(), which reads back exactly), then a newline."""
        values = _VALUES(self)
        data = {"ts": values[0], "run_id": run_id, "seq": seq}
        data.update({k: v for k, v in zip(_REST, values[1:], strict=True) if v is not None})
        return (_JSON.encode(data) + "\n").encode()


_KIND_OF = {"int": "int", "int | None": "int", "float | None": "float", "str | None": "str"}


def kind_of(field: dataclasses.Field[Any]) -> str:
    """A field's kind, from its annotation, as runner/ledger/schema.py names a column's:
    "int" (integers; timestamps as int ns), "float" or "str"."""
    hint = field.type if isinstance(field.type, str) else getattr(field.type, "__name__",
                                                                  str(field.type))
    return _KIND_OF.get(str(hint), f"unsupported ({hint})")


KINDS: dict[str, str] = {f.name: kind_of(f) for f in dataclasses.fields(LedgerEvent)}
FIELDS: tuple[str, ...] = tuple(KINDS)
FIELD_SET = frozenset(FIELDS)
_REST = FIELDS[1:]  # every field but ts, which is checked on its own (required, its message)
_VALUES = attrgetter(*FIELDS)


def _check_ts(ts: Any) -> None:
    if not isinstance(ts, numbers.Integral) or isinstance(ts, bool) \
            or not _INT64[0] <= int(ts) <= _INT64[1]:
        raise ValueError(f"ledger row needs ts as int nanoseconds, got {ts!r}")


def _check(event: LedgerEvent) -> None:
    """Every value of `event` of its column's kind; a number of another type (an int in a
    float column, a numpy scalar) becomes the plain Python one. The usual exact types
    pass with one comparison each: this runs on every event, the INTENT's included."""
    lo, hi = _INT64
    ts = event.ts
    if type(ts) is not int or not lo <= ts <= hi:
        _check_ts(ts)
        object.__setattr__(event, "ts", int(ts))
    values: tuple[Any, ...] = _VALUES(event)[1:]
    for name, exact, make, value in zip(_REST, _EXACT, _MAKE, values, strict=True):
        if value is None or (type(value) is exact and (exact is not int or lo <= value <= hi)):
            continue
        object.__setattr__(event, name, make(name, value))


def _refused(name: str, value: Any) -> ValueError:
    return ValueError(f"ledger column {name!r} cannot hold {value!r}")


def _str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _refused(name, value)
    return str.__str__(value)  # a StrEnum member (Ev.ACK) as its plain value


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _refused(name, value)
    return float(value)


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or not _INT64[0] <= int(value) <= _INT64[1]:
        raise _refused(name, value)
    return int(value)


_TYPES: dict[str, type[Any]] = {"str": str, "float": float, "int": int}
_EXACT = tuple(_TYPES[KINDS[n]] for n in _REST)  # a value of exactly this type passes as is
_MAKE = tuple({"str": _str, "float": _float, "int": _int}[KINDS[n]] for n in _REST)


# ----------------------------------------------------------------------------- drafts


class Draft:
    """An event built and checked before its time but for a few `late` columns: the
    INTENT before its clock (ts, deadline, good_till, arrival_px, arrival_source). Its
    journal line is encoded ahead around those columns and the two the ledger fills, so
    that `stamp` and `Stamped.line` cost a few string joins on the way from the clock to
    the write, where a build, check and encode of the whole event would cost tens of µs."""

    __slots__ = ("base", "late", "_late", "_parts", "_holes")

    def __init__(self, base: LedgerEvent, late: tuple[str, ...]) -> None:
        unknown = [n for n in late if n not in FIELD_SET]
        if unknown:
            raise ValueError(f"unknown ledger column(s): {', '.join(unknown)}")
        self.base = base
        self.late = late
        self._late = frozenset(late)
        holes = {*OWNED, *late}
        values = dict(zip(FIELDS, _VALUES(base), strict=True))
        parts: list[str] = []  # the constant text between two holes (",k:v,k:v" or "")
        self._holes: list[tuple[str, str, Callable[[Any], str]]] = []  # name, ',"name":', encoder
        chunk: dict[str, Any] = {}
        for name in ("ts", *OWNED, *_REST):
            if name in holes:
                parts.append(_fragment(chunk))
                chunk = {}
                self._holes.append((name, "," + _JSON.encode(name) + ":", _ENCODE[name]))
            elif values[name] is not None:
                chunk[name] = values[name]
        parts.append(_fragment(chunk))
        self._parts = tuple(parts)

    def stamp(self, **values: Any) -> Stamped:
        """The event with its late columns filled in (each one given, None for a null),
        checked as LedgerEvent checks them; ValueError for a bad or an unknown one."""
        if values.keys() != self._late:
            raise ValueError(f"a draft takes exactly {', '.join(self.late)}; got "
                             f"{', '.join(sorted(values))}")
        lo, hi = _INT64
        for name, value in values.items():
            if name == "ts":
                if type(value) is not int or not lo <= value <= hi:
                    _check_ts(value)
                    values[name] = int(value)
                continue
            exact = _EXACT_OF[name]
            if value is not None and (type(value) is not exact
                                      or (exact is int and not lo <= value <= hi)):
                values[name] = _MAKE_OF[name](name, value)
        return Stamped(self, values)

    def line(self, values: Mapping[str, Any]) -> bytes:
        """The journal line of the stamped event (`values`: the late columns, run_id, seq):
        what `LedgerEvent.line` gives for it, byte for byte."""
        parts = self._parts
        pieces = [parts[0]]
        for (name, key, encode), part in zip(self._holes, parts[1:], strict=True):
            value = values[name]
            if value is not None:
                pieces += (key, encode(value))
            pieces.append(part)
        return ("{" + "".join(pieces)[1:] + "}\n").encode()


class Stamped:
    """A Draft with its late columns filled in, as the journal takes it: `line` from the
    draft's parts; `as_event`, the LedgerEvent, built (and checked again) only when
    asked, after the write."""

    __slots__ = ("draft", "values", "_event")

    def __init__(self, draft: Draft, values: dict[str, Any]) -> None:
        self.draft = draft
        self.values = values
        self._event: LedgerEvent | None = None

    @property
    def kind(self) -> str | None:
        """The event's kind (its `event` column: INTENT, ...)."""
        return self.draft.base.event

    def as_event(self) -> LedgerEvent:
        if self._event is None:
            self._event = dataclasses.replace(self.draft.base, **self.values)
        return self._event

    def line(self, run_id: str, seq: int) -> bytes:
        return self.draft.line({**self.values, "run_id": run_id, "seq": seq})


def _fragment(values: dict[str, Any]) -> str:
    """`,"k":v,...` of `values` in their order as compact JSON ("" for none)."""
    return "," + _JSON.encode(values)[1:-1] if values else ""


def _float_json(value: float) -> str:
    return float.__repr__(value) if math.isfinite(value) else _JSON.encode(value)


_EXACT_OF = dict(zip(_REST, _EXACT, strict=True))
_MAKE_OF = dict(zip(_REST, _MAKE, strict=True))
_ENCODE: dict[str, Callable[[Any], str]] = {
    **{n: {"str": _JSON.encode, "float": _float_json, "int": int.__repr__}[KINDS[n]]
       for n in FIELDS},
    "run_id": _JSON.encode, "seq": int.__repr__}
