"""What runner prints, in one place: numbers as they were recorded, and the one JSON
style every `--json` uses.

Numbers: a quantity or price is shown from its recorded value, digit for digit — never
`%g` (1e+06) and never rounded away (1.08505 is not 1.09). A price may be padded to
its instrument's decimals (10.00), never cut below what was recorded.

JSON: exactly one document per command on stdout, keys sorted, compact separators,
ASCII-only (non-ASCII as \\u escapes, so any terminal encoding prints it), no NaN or
infinity (null instead), times as ISO 8601 UTC strings (`runner.plan.iso`).
"""

from __future__ import annotations

import json
import math
import sys
from decimal import Decimal
from typing import Any, TextIO

DASH = "\u2014"  # printed for "no value"; the CLI maps it to "-" on an ASCII terminal


def number_text(x: float | int | None, empty: str = DASH) -> str:
    """The shortest text that reads back as exactly `x`, in plain decimal notation:
    1000000.0 -> "1000000", 1.08505 -> "1.08505", 1e-08 -> "0.00000001"."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return empty
    if isinstance(x, int):
        return str(x)
    text = format(Decimal(repr(x)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def price_text(x: float | None, decimals: int = 2, empty: str = DASH) -> str:
    """A price with at least `decimals` decimals (the instrument's tick), and every digit
    it was recorded with: price_text(10, 2) -> "10.00", price_text(1.08505, 2) -> "1.08505"."""
    text = number_text(x, empty)
    if text == empty:
        return text
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(decimals, '0')}" if decimals or frac else whole


def message_number(x: float) -> str:
    """A number in an error or refusal message, grouped as people write it: 10,000 /
    4,729.2 / 0.01 (at most 4 decimals: a message names a size or a cap, not a fill)."""
    if x == int(x):
        return f"{int(x):,}"
    return f"{x:,.4f}".rstrip("0").rstrip(".")


def message_price(price: float) -> str:
    """A price in a message, with 2 to 4 decimals: 472.92, 10.00, 0.01, 0.0025."""
    text = f"{price:,.4f}"
    return text[:-2] + text[-2:].rstrip("0") if text.endswith("0") else text


def json_text(doc: Any) -> str:
    """One JSON document in runner's one style (see the module docstring)."""
    return json.dumps(_finite(doc), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False)


def emit(doc: Any, out: TextIO | None = None) -> None:
    """Print `doc` as the command's one JSON document."""
    (out or sys.stdout).write(json_text(doc) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
