"""`expect:` judges an Outcome: how a scenario's run ended against what its spec expects.

`runner test` and `runner run --dry-run` both judge with `expect_diff`: the list of
differences is the verdict (empty: the expectation is met), never text to be parsed.
"""

from __future__ import annotations

from runner.engine import Outcome
from runner.output import number_text, price_text
from runner.spec import Expect

TOLERANCE = 1e-9  # quantities and prices are judged to this absolute difference


def expect_diff(e: Expect, o: Outcome) -> list[str]:
    """Each unmet `expect:` key as `key: expected X, got Y`, in the schema's order."""
    out: list[str] = []
    if e.state is not None and e.state != o.state:
        out.append(f"state: expected {e.state}, got {o.state}")
    if e.fill_qty is not None and abs(e.fill_qty - o.fill_qty) > TOLERANCE:
        out.append(f"fill_qty: expected {number_text(e.fill_qty)}, got {number_text(o.fill_qty)}")
    if e.avg_px is not None and (o.avg_px is None or abs(e.avg_px - o.avg_px) > TOLERANCE):
        out.append(f"avg_px: expected {price_text(e.avg_px)}, got {price_text(o.avg_px)}")
    if e.events is not None and list(e.events) != o.events:
        out.append(f"events: expected {', '.join(e.events)}, got {', '.join(o.events) or 'none'}")
    if e.message is not None and e.message not in o.message:
        out.append(f"message: expected to contain {e.message!r}, got {o.message!r}")
    return out
