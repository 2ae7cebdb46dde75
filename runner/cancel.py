"""`runner cancel TAG`: cancel the one working order whose orderRef is TAG, and record it in
the ledger as its run would have (DESIGN §7: no orphan orders).

Before anything is sent:
- TAG must be a tag runner placed: an INTENT of a run against IB under the ledger root
  (--out-dir). Else the cancel is refused (exit 2) without connecting, unless `--any`.
- The gateway must show exactly one working order with that orderRef (every client's,
  reqAllOpenOrders); several are listed and refused unless `--all`; none is exit 2.
- A working order with a tag of runner's is runner's when it is that INTENT's order
  (permId, else client and order id, and its account): an order whose run has ended or
  crashed (an orphan, as `runner recover` finds them). One that a live run is still
  working is refused (exit 2): that run cancels it at its TTL, or on Ctrl-C. Another
  order that merely reuses the tag is refused unless `--any`.
- The ledger must be writable for the rows it will get (exit 2 otherwise).

The cancel goes out from a session with the client id that placed the order (only it can
cancel the order). The answer is what the gateway shows of the order afterwards — an end
status, never a code alone: cancelled (exit 0); refused (161, 10147, 10148) or not
confirmed within IB_CANCEL_TIMEOUT, so still working (exit 3); filled or inactive before
the cancel took (exit 4). For runner's order, the executions the ledger does not have yet
and the end are recorded as `runner recover` records them, under a run id `cancel-…`: the
CANCEL row carries the INTENT's order fields, like the CANCEL of a TTL; the order is then
no longer left for recover. An order runner did not place (`--any`) gets no ledger row.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.broker import Ev, Lookup
from runner.errors import GatewayError, OrderRejected, RunnerError, UsageError
from runner.jsondoc import QTY, document, figure
from runner.manage import intent_days, order_json, size_text, where, with_session
from runner.output import emit, number_text, price_text
from runner.plan import Connection

if TYPE_CHECKING:
    from runner.ib.manage import CancelAnswer, WorkingOrder
    from runner.ib.queries import Found
    from runner.ib.session import Session
    from runner.ledger import LedgerEvent
    from runner.recover import Orphan

_MESSAGE = "runner cancel"  # in the message column of the rows it records
_CHECK = "`runner orders` lists what is working"


@dataclass
class Placed:
    """An order of runner's with TAG that has no end in the ledger, and its day."""

    day: str
    orphan: Orphan


@dataclass
class Book:
    """What the ledger root knows of TAG."""

    tag: str
    days: list[str]  # days with an IB INTENT of it
    orphans: list[Placed] = field(default_factory=list)  # no end, its run gone (or it gave up)
    live_runs: list[str] = field(default_factory=list)  # runs alive with an open order of it

    @property
    def known(self) -> bool:
        return bool(self.days)

    def match(self, w: WorkingOrder) -> Placed | None:
        """The ledger's order that the working order `w` is, if any."""
        from runner.ib.queries import Identity

        for p in self.orphans:
            o = p.orphan
            who = Identity(o.tag, o.ids.get("perm_id") or o.intent.get("perm_id"),
                           o.ids.get("client_id", o.intent.get("client_id")),
                           o.ids.get("order_id") or o.intent.get("order_id"))
            account = o.intent.get("account")
            same_account = not account or not w.account or account == w.account
            if same_account and who.matches(w.tag, w.perm_id, w.client_id, w.order_id or None):
                return p
        return None


@dataclass
class Result:
    """One cancel and what became of the order."""

    order: WorkingOrder
    placed: Placed | None
    outcome: str  # cancelled | refused | unconfirmed | unknown | filled | inactive
    line: str
    code: int | None = None
    fill_qty: float = 0.0
    ledger: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"order": order_json(self.order, self.placed is not None),
                "outcome": self.outcome, "code": self.code, "message": self.line,
                "fill_qty": figure(self.fill_qty, QTY), "ledger": self.ledger}


WORKING_OUTCOMES = ("refused", "unconfirmed", "unknown")  # exit 3: it may still be working


def cancel(tag: str, out_dir: str, connection: Connection, any_tag: bool = False,
           all_matching: bool = False, as_json: bool = False, verbose: int = 0) -> int:
    root = Path(out_dir)
    book = read_book(root, tag)
    if not book.known and not any_tag:
        raise UsageError(f"{tag}: not placed by runner: no INTENT with this tag under "
                         f"{out_dir}; nothing was sent",
                         "--any cancels an order runner did not place; "
                         "--out-dir names another ledger root").about(tag=tag)

    async def run(s: Session) -> list[Result]:
        targets = await _targets(s, book, any_tag, all_matching, root)
        return await _cancel_all(s, targets, root, verbose)

    results = asyncio.run(with_session(connection, verbose, run))
    return _report(tag, results, connection, as_json)


def read_book(root: Path, tag: str) -> Book:
    """The days of TAG's INTENTs, their orders without an end (after merging crashed runs'
    journals, as recover does) and the live runs that still work one."""
    from runner import ledger
    from runner.recover import find_orphans

    days = sorted(intent_days(root, tag))
    book = Book(tag, days)
    for day in days:
        orphans = find_orphans(root, day)
        book.orphans += [Placed(day, o) for o in orphans
                         if o.tag == tag and o.intent.get("broker") != "sim"]
        alive = ledger.live_runs(root, day)
        if alive:
            book.live_runs += _working_runs(root / day, tag, alive)
    return book


def _working_runs(day_dir: Path, tag: str, alive: set[str]) -> list[str]:
    """The live runs with an INTENT of `tag` on that day and no end for it."""
    from runner.ledger import read_ledger, table_to_rows

    events: dict[str, set[str]] = {}
    for row in table_to_rows(read_ledger(day_dir, columns=["tag", "event"])):
        if row["tag"] == tag and row["run_id"] in alive:
            events.setdefault(row["run_id"], set()).add(row["event"])
    return sorted(r for r, seen in events.items() if Ev.INTENT in seen and not seen & Ev.TERMINAL)


async def _targets(s: Session, book: Book, any_tag: bool, all_matching: bool,
                   root: Path) -> list[tuple[WorkingOrder, Placed | None]]:
    """The working orders to cancel, each with its ledger order; UsageError (nothing sent)
    when any one of them may not be cancelled."""
    from runner.ib.manage import working_orders
    from runner.ledger import check_writable

    tag = book.tag
    found = [w for w in await working_orders(s) if w.tag == tag]
    if not found:
        raise UsageError(f"{tag}: no working order has this orderRef at {s.where}; nothing "
                         "was sent", f"{_CHECK}; `runner recover` settles orders the ledger "
                         "has no end for").about(tag=tag)
    if len(found) > 1 and not all_matching:
        listed = "; ".join(_named(w) for w in found)
        raise UsageError(f"{tag}: {len(found)} working orders have this orderRef at "
                         f"{s.where}: {listed}; nothing was sent", "--all cancels every "
                         "one of them").about(tag=tag, orders=[
                             order_json(w, book.match(w) is not None) for w in found])
    targets = [(w, book.match(w)) for w in found]
    for w, placed in targets:
        _may_cancel(book, w, placed, any_tag)
        if placed is not None:
            check_writable(root, placed.day)
    return targets


def _may_cancel(book: Book, w: WorkingOrder, placed: Placed | None, any_tag: bool) -> None:
    tag = book.tag
    if placed is None and book.live_runs:
        raise UsageError(f"{tag}: {_named(w)} is worked by a live run ({', '.join(book.live_runs)}"
                         "); nothing was sent", "that run cancels it at its TTL; Ctrl-C or "
                         "SIGTERM to it cancels it now").about(tag=tag)
    if placed is None and not any_tag:
        raise UsageError(f"{tag}: {_named(w)} is not the order runner placed with this tag "
                         "(its ids do not match an open order of the ledger's); nothing was "
                         "sent",
                         "--any cancels it anyway").about(tag=tag)
    if not w.order_id:
        raise UsageError(f"{tag}: {_named(w)} was placed in TWS and has no API order id to "
                         "cancel by; nothing was sent", "cancel it in TWS").about(tag=tag)


def _named(w: WorkingOrder) -> str:
    return (f"order {w.order_id} (perm {number_text(w.perm_id)}, client {w.client_id}, "
            f"{w.side} {number_text(w.filled)}/{size_text(w)} {w.contract.name}"
            f" {w.order_type}{' ' + price_text(w.limit) if w.limit is not None else ''}, "
            f"{w.status})")


async def _cancel_all(s: Session, targets: list[tuple[WorkingOrder, Placed | None]],
                      root: Path, verbose: int) -> list[Result]:
    """Each cancel from a session with the order's client id, one client at a time."""
    from runner.ib.manage import Canceller, owner_session

    results = []
    for client_id in dict.fromkeys(w.client_id for w, _ in targets):
        owner = await owner_session(s, client_id, verbose)
        try:
            canceller = Canceller(owner)
            for w, placed in targets:
                if w.client_id == client_id:
                    answer, found = await canceller.cancel(w)
                    results.append(_settle(w, placed, answer, found, owner.conn, root))
        finally:
            if owner is not s:
                await owner.close()
    return results


def _settle(w: WorkingOrder, placed: Placed | None, answer: CancelAnswer, found: Found,
            conn: Connection, root: Path) -> Result:
    """What became of the order, as the gateway shows it; for runner's order, the
    executions the ledger does not have yet (recover's rows) and the end, recorded."""
    from runner.recover import fill_rows

    rows = fill_rows(placed.orphan, found.fills) if placed is not None else []
    filled = max([found.filled, w.filled, *(f.cum_qty for f in found.fills),
                  *([placed.orphan.fill_qty] if placed is not None else [])])
    # totalQuantity 0: an order sized by cashQty; only the gateway's status ends it
    outcome = _outcome(answer, found, all_filled=w.qty > 0 and filled >= w.qty - 1e-9)
    result = Result(w, placed, outcome, "", answer.code or None, filled)
    if placed is not None:
        avg = next((r.avg_px for r in reversed(rows) if r.avg_px is not None), found.avg_px)
        end = _end_row(placed.orphan, outcome, filled, avg)
        rows += [end] if end is not None and not any(r.event == end.event for r in rows) else []
        if rows:
            result.ledger = _record(root, placed, rows, ended=end is not None)
    result.line = _line(result, answer, conn)
    return result


def _outcome(answer: CancelAnswer, found: Found, all_filled: bool) -> str:
    if found.state == Lookup.WORKING:
        return "refused" if answer.code else "unconfirmed"
    if found.state == Lookup.UNKNOWN:
        return "unknown"
    if found.end == Ev.FILL or all_filled:
        return "filled"
    return "inactive" if found.end == Ev.REJ else "cancelled"


def _end_row(o: Orphan, outcome: str, filled: float, avg_px: float | None) -> LedgerEvent | None:
    """The order's end as the gateway shows it; None while it may still be working."""
    if outcome == "filled":
        return _end(o, Ev.FILL, f"filled before the cancel ({_MESSAGE})", filled, avg_px)
    if outcome == "inactive":
        return _end(o, Ev.REJ, f"inactive at the broker before the cancel ({_MESSAGE})", filled,
                    avg_px)
    if outcome == "cancelled":
        return _end(o, Ev.CANCEL, f"cancelled by {_MESSAGE}", filled, avg_px)
    return None


def _end(o: Orphan, event: Ev, message: str, fill_qty: float,
         avg_px: float | None = None) -> LedgerEvent:
    """The order's end, carrying its INTENT's order fields and what the broker said of it
    (ids, totals so far), never before its last recorded event (the ledger is in time
    order)."""
    from runner.ledger import LedgerEvent

    o.last_ts = max(time.time_ns(), o.last_ts + 1)
    known = {k: v for k, v in o.ids.items() if v is not None}
    return LedgerEvent.carried(o.intent, ts=o.last_ts, event=event, **known, message=message,
                               fill_qty=fill_qty,
                               avg_px=avg_px if avg_px is not None else o.avg_px,
                               commission=o.commission or None)


def _record(root: Path, placed: Placed, rows: list[LedgerEvent], ended: bool) -> str:
    """Journal and merge the rows into the day's ledger (as recover does); an ended order
    is no longer left for recover. The ledger file's path."""
    from runner.ledger import Ledger
    from runner.recover import mark

    with Ledger(root, placed.day, f"cancel-{uuid.uuid4().hex[:12]}") as ledger:
        for row in rows:
            ledger.append(row)
    if ended:
        o = placed.orphan
        mark(root, placed.day, o.tag, unsettled=False, order_id=o.intent.get("order_id"))
    return str(ledger.ledger_path)


def _line(r: Result, answer: CancelAnswer, conn: Connection) -> str:
    w, tag = r.order, r.order.tag
    named = f"order {w.order_id}, perm {number_text(w.perm_id)}, client {w.client_id}"
    kept = f"; recorded in {r.ledger}" if r.ledger else "; not runner's: nothing recorded" \
        if r.placed is None else ""
    part = f", {number_text(r.fill_qty)} of {size_text(w)} filled" if r.fill_qty else ""
    return {
        "cancelled": f"{tag}: cancelled ({named}{part}){kept}",
        "refused": f"{tag}: IB refused the cancel ({answer.code} {answer.text}); {named} is "
                   f"still working{kept}",
        "unconfirmed": f"{tag}: no answer to the cancel within {conn.cancel_timeout_sec:g} s "
                       f"(IB_CANCEL_TIMEOUT); {named} is still working{kept}",
        "unknown": f"{tag}: after the cancel the gateway shows {named} neither working nor "
                   f"done{kept}",
        "filled": f"{tag}: the cancel came too late: {named} filled{part}{kept}",
        "inactive": f"{tag}: {named} became inactive before the cancel{part}{kept}",
    }[r.outcome]


def _report(tag: str, results: list[Result], connection: Connection, as_json: bool) -> int:
    """The lines (stdout) or the document; a result that is not a cancel is the error."""
    failed = [r for r in results if r.outcome != "cancelled"]
    body: dict[str, Any] = {"gateway": where(connection),
                            "cancels": [r.to_json() for r in results]}
    if not failed:
        if as_json:
            emit(document("cancel", True, tag=tag, **body))
        else:
            for r in results:
                print(r.line)
        return 0
    if not as_json:
        for r in results:
            if r.outcome == "cancelled":
                print(r.line)
    still = [r for r in failed if r.outcome in WORKING_OUTCOMES]
    shown = still or failed  # what may still be working comes first: it is the error
    for r in failed:
        if r not in shown:
            print(f"runner: {r.line}", file=sys.stderr)
    error: RunnerError = GatewayError(
        " | ".join(r.line for r in shown), f"try again, or cancel it in TWS; {_CHECK}") \
        if still else OrderRejected(" | ".join(r.line for r in shown),
                                    "`runner positions` shows what it holds now")
    raise error.about(tag=tag, **body)
