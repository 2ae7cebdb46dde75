"""Arrow columns to text, for the reports of big days: `runner tca` and `runner ledger
show` (200k orders, a million events), where a Python format per value takes seconds.

Numbers are written as runner.output writes one value: plain decimals, exactly the
recorded digits (no %g, no exponent), figures rounded to runner.jsondoc.DECIMALS; times
as ISO 8601 UTC (runner.plan.iso); JSON as runner.output.json_text (ASCII, no NaN).
pyarrow is imported inside each function: the CLI imports this module's users lazily.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from runner.jsondoc import DECIMALS
from runner.jsondoc import EXACT as _EXACT
from runner.tca import scalar, string_array

if TYPE_CHECKING:
    import pyarrow as pa



def joined(strings: Any) -> str:
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


def rounded(values: Any, decimals: int) -> Any:
    """Floats rounded as runner.jsondoc.figure rounds one (half to even on the scaled
    value; -0.0 as 0.0); a value too big to round honestly is left as it is."""
    import pyarrow.compute as pc

    scale = scalar(10.0**decimals)
    scaled = pc.multiply(values, scale)
    fits = pc.less(pc.abs(scaled), scalar(_EXACT))
    back = pc.divide(pc.round(scaled), scale)
    return pc.add(pc.if_else(fits, back, values), scalar(0.0))


def finite(values: Any) -> Any:
    """NaN and infinities as null (JSON has neither)."""
    import pyarrow.compute as pc

    return pc.if_else(pc.is_finite(values), values, scalar(None, values.type))


def figures(table: pa.Table) -> pa.Table:
    """Every float column finite or null, and those DECIMALS names rounded."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if pa.types.is_floating(field.type):
            column = finite(table.column(i))
            if field.name in DECIMALS:
                column = rounded(column, DECIMALS[field.name])
            table = table.set_column(i, field, column)
    return table


def fixed(values: Any, decimals: int) -> Any:
    """Exactly `decimals` (at most 6) digits after the point (2.0, -0.5; -0.0 shown as
    0.0): Arrow has no printf, but a decimal's text has every digit of its scale (in plain
    notation up to scale 6). The value is rounded to whole units of 10**-decimals (half to
    even), and the units are laid into decimal128 slots (sign-extended to 128 bits) that
    Arrow then writes out."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    assert 0 <= decimals <= 6, decimals
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


def exact(values: Any, decimals: int, at_least: int = 0) -> Any:
    """Numbers as runner.output.number_text (at_least=0) or price_text (at_least=2)
    writes them, of the value rounded to `decimals`: 1434, 0.5, 473.030041841, 10.00.
    Arrow writes a float's shortest exact text, as Python's repr; the few it writes in
    exponent form (1e+16, 1e-05) are written by number_text, once per distinct value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_floating(values.type):
        return pc.cast(values, pa.string())
    values = rounded(finite(values), decimals)
    text = pc.cast(values, pa.string())
    exponent = pc.fill_null(pc.match_substring(text, "e"), scalar(False))
    if pc.any(exponent).as_py():
        text = pc.if_else(exponent, _plain(values, exponent), text)
    return _padded(text, at_least) if at_least else text


def _padded(text: Any, at_least: int) -> Any:
    """At least `at_least` decimals: "10" -> "10.00", "10.5" -> "10.50"."""
    return padded_rows(text, at_least, at_least)


def padded_rows(text: Any, need: Any, most: int) -> Any:
    """Each number with at least `need` decimals (a scalar, or one count per row, at most
    `most`): "0.01" needing 4 -> "0.0100"; never cut."""
    import pyarrow as pa
    import pyarrow.compute as pc

    need = need if isinstance(need, pa.Array | pa.ChunkedArray) else scalar(need)
    dot = pc.find_substring(text, ".")
    decimals = pc.if_else(pc.equal(dot, scalar(-1)), scalar(0),
                          pc.subtract(pc.utf8_length(text), pc.add(dot, scalar(1))))
    for have in range(most):  # each number has one count of decimals: at most one pad
        for want in range(have + 1, most + 1):
            pad = ("." if have == 0 else "") + "0" * (want - have)
            rows = pc.and_(pc.equal(decimals, scalar(have)), pc.equal(need, scalar(want)))
            text = pc.if_else(pc.fill_null(rows, scalar(False)),
                              pc.binary_join_element_wise(text, scalar(pad), scalar("")), text)
    return text


def price_decimals(sec_type: Any, currency: Any, price: Any) -> Any:
    """runner.plan.price_decimals, row by row (int8): CASH 5 (a yen quote 3), a STK
    below $1 4, else 2; unknown instruments (older ledgers) 2."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def true(mask: Any) -> Any:
        return pc.fill_null(mask, scalar(False))

    cash = true(pc.equal(sec_type, scalar("CASH")))
    yen = true(pc.equal(currency, scalar("JPY")))
    sub_dollar = pc.and_(true(pc.equal(sec_type, scalar("STK"))), true(pc.less(price, scalar(1.0))))
    fx = pc.if_else(yen, scalar(3, pa.int8()), scalar(5, pa.int8()))
    stk = pc.if_else(sub_dollar, scalar(4, pa.int8()), scalar(2, pa.int8()))
    return pc.if_else(cash, fx, stk)


def _plain(values: Any, rows: Any) -> Any:
    """number_text of `values` where `rows`, by distinct value (null elsewhere)."""
    import pyarrow.compute as pc

    from runner.output import number_text

    distinct = pc.unique(pc.filter(values, rows))
    texts = string_array([number_text(v) for v in distinct.to_pylist()])
    return pc.take(texts, pc.index_in(values, value_set=distinct))


def iso_times(values: Any) -> Any:
    """A timestamp column as runner.plan.iso writes one instant: 2026-01-05T14:30:01.5Z,
    2026-01-05T14:30:00Z (nulls stay null)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ns = pc.cast(values, pa.timestamp("ns", tz="UTC"))
    text = pc.strftime(ns, format="%Y-%m-%dT%H:%M:%S")  # seconds with 9 decimals
    text = pc.replace_substring_regex(text, r"\.?0+$", "")
    return pc.binary_join_element_wise(text, scalar("Z"), scalar(""))


def json_objects(table: pa.Table) -> str:
    """A JSON array of one object per row, keys in the table's column order, written in
    Arrow: 200k rows through Python dicts and json.dumps take seconds. Floats must be
    finite or null (see `figures`); numbers as their shortest exact text, timestamps as
    ISO 8601 text, strings escaped (ASCII only), nulls null."""
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return "[]"
    parts: list[Any] = []
    for i, name in enumerate(table.column_names):  # {"a":1,"b":"x"}: keys and values in turn
        parts.append(scalar(("{" if i == 0 else ",") + json.dumps(name) + ":"))
        parts.append(pc.fill_null(_json_values(table.column(name)), scalar("null")))
    rows = pc.binary_join_element_wise(*parts, scalar("},"), scalar(""))
    return "[" + joined(rows)[:-1] + "]"  # the last row's comma dropped


def _json_values(column: Any) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_timestamp(column.type):
        column = iso_times(column)
    if not pa.types.is_string(column.type):
        return pc.cast(column, pa.string())
    if pc.any(pc.match_substring_regex(column, r"[^\x20-\x7e]")).as_py():
        texts = [None if v is None else json.dumps(v) for v in column.to_pylist()]
        return string_array(texts)  # control or non-ASCII characters: json's own escapes
    escaped = pc.replace_substring(pc.replace_substring(column, "\\", "\\\\"), '"', '\\"')
    return pc.binary_join_element_wise(scalar('"'), escaped, scalar('"'), scalar(""))
