"""The frame of every `--json` document (issue 14), and the decimals its figures keep.

Every document is one object: `version` (of that command's shape), `command`, `ok` (the
exit code was 0), then the command's own keys. A document with `ok: false` also says
why: `error` {exit_code, message, hint}, and the `spec` and order `tag` it is about
(null when not known). The shapes are in schemas/output/<command>.schema.json.

Figures a computation made (averages, sums, ratios, TCA) are rounded to DECIMALS, so no
float noise (1.4000000000000001) reaches a reader; a recorded value has fewer digits than
its field keeps and comes through unchanged. Times are ISO 8601 UTC text.

No pandas, pyarrow or ib_async here: `validate` and `plan` use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TextIO

# The version of each command's document; it changes when a key changes meaning or goes.
VERSIONS = {
    "validate": 1,
    "plan": 2,  # 2: {version, command, ok, plans: [...]} around the plans (format 1)
    "run": 2,  # 2: one document per file, a result per spec document in `results`
    "handshake": 2, "sanity-cancel": 2, "one-shot": 2,  # as `run`
    "test": 2,  # as runner.scenarios.JSON_VERSION
    "ledger show": 2,  # 2: ts, deadline and good_till as ISO 8601 text
    "ledger query": 1,
    "tca": 2,
    "orders": 1, "cancel": 1, "positions": 1,
}  # fmt: skip

PRICE, QTY, MONEY, BPS, RATIO, MS = 10, 10, 6, 4, 6, 6
DECIMALS: dict[str, int] = {
    **dict.fromkeys(("limit", "last_px", "avg_px", "arrival_px", "vwap_px"), PRICE),
    **dict.fromkeys(("qty", "fill_qty", "last_qty"), QTY),
    **dict.fromkeys(("commission", "notional", "cash_qty"), MONEY),
    **dict.fromkeys(("shortfall_bps", "vwap_slippage_bps", "is_bps", "fees_bps"), BPS),
    **dict.fromkeys(("fill_ratio", "participation"), RATIO),
    **dict.fromkeys(("ms_to_first_fill", "ms_to_done"), MS),
}
# |x| * 10**decimals must stay an exact integer in a float (2**52) to round honestly;
# a bigger value has no room for noise below its decimals and is left as it is.
EXACT = 2.0**52  # |x| * 10**decimals below it stays an exact integer
_EXACT = EXACT


def figure(x: float | None, decimals: int) -> float | None:
    """`x` rounded half to even to `decimals` (noise gone: 472.91999999999996 -> 472.92),
    -0.0 as 0.0; None and non-finite values as None. The same arithmetic as Arrow's
    (runner.report): scale, round to a whole number, scale back."""
    if x is None or not math.isfinite(x):
        return None
    scale = 10.0**decimals
    if abs(x) * scale >= _EXACT:
        return x + 0.0
    return round(x * scale) / scale + 0.0


def figures(row: Mapping[str, Any]) -> dict[str, Any]:
    """`row` with every field DECIMALS names rounded (ints and other keys as they are)."""
    return {k: figure(v, DECIMALS[k]) if k in DECIMALS and isinstance(v, float) else v
            for k, v in row.items()}


def document(command: str, ok: bool, **body: Any) -> dict[str, Any]:
    """A command's document: the frame, then its own keys."""
    return {"version": VERSIONS[command], "command": command, "ok": ok, **body}


def failed(command: str, exit_code: int, message: str, hint: str | None = None,
           spec: str | None = None, tag: str | None = None, **body: Any) -> dict[str, Any]:
    """The document of a command that did not succeed (exit code not 0)."""
    error = {"exit_code": exit_code, "message": message, "hint": hint or None}
    return document(command, False, error=error, spec=spec, tag=tag, **body)


def failure(command: str, e: BaseException, exit_code: int, message: str,
            hint: str | None = None, spec: str | None = None) -> dict[str, Any]:
    """The document of an error that reached the CLI's boundary: what the error knows
    (its spec, tag, and the keys the command attached with RunnerError.about) first."""
    body = dict(getattr(e, "document", None) or {})
    for key in ("lines", "reasons"):  # SpecError's problem lines, a gate's reasons
        if isinstance(getattr(e, key, None), list):
            body.setdefault("errors" if key == "lines" else key, list(getattr(e, key)))
    return failed(command, exit_code, message, hint, getattr(e, "spec", None) or spec,
                  getattr(e, "tag", None), **body)


class Raw:
    """JSON text made elsewhere (in Arrow, for big tables), placed as it is by `text`."""

    def __init__(self, json: str) -> None:
        self.json = json


def write(doc: Mapping[str, Any], out: TextIO) -> None:
    """`doc` as runner.output.emit prints it (one line); its top-level values may be Raw,
    written as they are (no copy of a big table's text into one more string)."""
    from runner.output import json_text

    for i, (k, v) in enumerate(sorted(doc.items())):
        out.write(("{" if i == 0 else ",") + json_text(k) + ":")
        out.write(v.json if isinstance(v, Raw) else json_text(v))
    out.write("}\n")
