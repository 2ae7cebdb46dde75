"""A live one-line status on a terminal while an order works (state, filled/qty, time left).

Only when stdout is a TTY: the line is rewritten in place with `\\r`, refreshed by a small
thread so the time left counts down between events, and erased before the final status
line is printed. Piped or redirected output gets nothing extra, so scripts and `--json`
read exactly what they read before.

Time is the broker's clock (`now_ns`), the same one the engine's TTL runs on.
"""

from __future__ import annotations

import shutil
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from runner.broker import Ev

if TYPE_CHECKING:
    from runner.ledger.event import LedgerEvent
    from runner.plan import Plan

NS = 1_000_000_000
TICK_S = 0.1
ERASE = "\r\x1b[K"  # back to column 0, clear to the end of the line


@dataclass(frozen=True, slots=True)
class Status:
    """What the line shows; `text` is a pure function of it."""

    kind: str
    tag: str
    state: str = "PLANNED"
    fill_qty: float = 0.0
    qty: float = 0.0
    deadline_ns: int | None = None
    cash_qty: float | None = None  # an order sized in money: `0.5/cash 1000`

    def text(self, now_ns: int) -> str:
        size = f"{self.qty:g}" if self.cash_qty is None else f"cash {self.cash_qty:g}"
        line = f"[{self.kind}] {self.tag} {self.state} {self.fill_qty:g}/{size}"
        if self.state in Ev.TERMINAL or self.deadline_ns is None:
            return line
        left = (self.deadline_ns - now_ns) / NS
        return line + (f" {left:.1f} s left" if left > 0 else " cancelling")


def apply(status: Status, row: dict[str, Any], ttl_sec: float | None) -> Status:
    """The status after one journaled ledger row (Engine's `on_event`)."""
    event = row.get("event") or status.state
    if event == "PNL_SNAPSHOT":
        return status
    new = replace(status, state=event, fill_qty=row.get("fill_qty") or status.fill_qty,
                  qty=row.get("qty") or status.qty, tag=row.get("tag") or status.tag,
                  cash_qty=row.get("cash_qty") or status.cash_qty)
    if event == "INTENT" and ttl_sec is not None:
        new = replace(new, deadline_ns=int(row["ts"]) + int(ttl_sec * NS))
    return new


class StatusLine:
    """`with StatusLine(...) as s:` run the engine with `on_event=s.on_event`."""

    def __init__(self, out: TextIO, kind: str, tag: str, ttl_sec: float | None,
                 now_ns: Callable[[], int], tick_s: float = TICK_S) -> None:
        self.out = out
        self.ttl_sec = ttl_sec
        self.now_ns = now_ns
        self.tick_s = tick_s
        self.status = Status(kind, tag)
        self._shown = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="status-line", daemon=True)

    def on_event(self, event: LedgerEvent) -> None:
        with self._lock:
            self.status = apply(self.status, event.as_row(), self.ttl_sec)
            self._draw()

    def _tick(self) -> None:
        while not self._stop.wait(self.tick_s):
            with self._lock:
                if self.status.state != "PLANNED":  # nothing to count down before the INTENT
                    self._draw()

    def _draw(self) -> None:
        width = max(20, shutil.get_terminal_size().columns - 1)  # a wrapped line cannot be
        text = self.status.text(self.now_ns())[:width]  # rewritten with \r: never wrap
        if text != self._shown:
            self.out.write(ERASE + text)
            self.out.flush()
            self._shown = text

    def __enter__(self) -> StatusLine:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        with self._lock:
            if self._shown:  # leave the line empty for the final status or the error
                self.out.write(ERASE)
                self.out.flush()
                self._shown = ""


def live_status(kind: str, tag: str, ttl_sec: float | None, now_ns: Callable[[], int],
                out: TextIO | None = None) -> StatusLine | None:
    """A StatusLine when `out` (stdout) is a terminal, else None: nothing extra."""
    out = out or sys.stdout
    isatty = getattr(out, "isatty", None)
    return StatusLine(out, kind, tag, ttl_sec, now_ns) if isatty and isatty() else None


def for_run(plan: Plan, now_ns: Callable[[], int], as_json: bool,
            out: TextIO | None = None) -> StatusLine | None:
    """The status line of a run: none for --json, a handshake, or output that is no TTY."""
    if as_json or plan.order is None:
        return None
    return live_status(plan.kind, plan.order.tag, plan.ttl_sec, now_ns, out)
