"""`runner recover`: no orphan orders, nothing lost.

Reads a day's ledger and the journals of crashed runs, finds the orders with an
INTENT but no final event (FILL, CANCEL, REJ) whose run is no longer alive, asks
the gateway what became of each (by its tag, IB's orderRef: open orders of every
client, executions with commissions, completed orders), records what happened
while nobody was watching, and cancels what is still working past its deadline
(or everything, with --cancel-all). Running it twice records nothing new.
The same step runs, automatically, before every non-dry `runner run`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import GatewayError
from runner.plan import Connection, trading_day

TERMINAL = frozenset({"FILL", "CANCEL", "REJ"})
CARRIED = ("spec", "tag", "broker", "account", "order_id", "perm_id", "symbol", "side", "qty",
           "order_type", "limit", "tif")  # copied from the INTENT onto every recovered row
CANCEL_CONFIRM_SEC = 10.0


@dataclass
class Orphan:
    """An order the ledger has no end for, and what the ledger already knows of it."""

    intent: dict[str, Any]
    exec_ids: set[str] = field(default_factory=set)
    fill_qty: float = 0.0
    commission: float = 0.0
    last_ts: int = 0  # of the order's last recorded event

    @property
    def tag(self) -> str:
        return str(self.intent["tag"])

    @property
    def deadline_ns(self) -> int | None:
        return self.intent.get("deadline")


def find_orphans(out_dir: Path, day: str) -> list[Orphan]:
    """Merge crashed runs' journals, then list the day's orders that never ended."""
    from runner import ledger

    day_dir = Path(out_dir) / day
    if not day_dir.is_dir():
        return []
    ledger.merge_leftovers(Path(out_dir), day)
    alive = ledger.live_runs(Path(out_dir), day)
    rows = ledger.table_to_rows(ledger.read_ledger(day_dir))
    orders: dict[str, Orphan] = {}
    for row in rows:  # in (ts, run_id, seq) order
        tag, event = row["tag"], row["event"]
        if event == "INTENT":
            orders[tag] = Orphan(row, last_ts=row["ts"])
            continue
        order = orders.get(tag)
        if order is None:
            continue
        order.last_ts = max(order.last_ts, row["ts"])
        if event in TERMINAL:
            del orders[tag]
        elif event in ("PARTIAL", "FILL"):
            _note_fill(order, row)
    return [o for o in orders.values() if o.intent["run_id"] not in alive]


def _note_fill(o: Orphan, row: dict[str, Any]) -> None:
    if row.get("exec_id"):
        o.exec_ids.add(row["exec_id"])
    o.fill_qty = max(o.fill_qty, row.get("fill_qty") or 0.0)
    o.commission = max(o.commission, row.get("commission") or 0.0)


@dataclass
class Settled:
    """What recovery found out about one orphan: rows to record and a line to print."""

    tag: str
    rows: list[dict[str, Any]]
    summary: str
    settled: bool = True  # False: a cancel we sent was not confirmed; still live at the broker


async def settle_ib(orphans: list[Orphan], broker: Any, cancel_all: bool,
                    now_ns: Callable[[], int] = time.time_ns) -> list[Settled]:
    """Ask the gateway about each orphan and decide; `broker` is a connected IBBroker."""
    return [await _settle_one(o, broker, cancel_all, now_ns) for o in orphans]


async def _settle_one(o: Orphan, broker: Any, cancel_all: bool,
                      now_ns: Callable[[], int]) -> Settled:
    view = await broker.view(o.tag)
    rows = _fill_rows(o, view.fills)
    if o.fill_qty >= o.intent["qty"] - 1e-9:
        return Settled(o.tag, rows, f"filled {o.fill_qty:g} while runner was away")
    if view.live:
        deadline = o.deadline_ns
        if not cancel_all and deadline is not None and now_ns() < deadline:
            return Settled(o.tag, rows, f"still working until its deadline; left alone "
                           f"(filled {o.fill_qty:g}); run recover again after it")
        return await _cancel(o, broker, view, rows, now_ns)
    status = view.status
    if status == "Inactive":
        rows.append(_row(o, "REJ", now_ns(), message="inactive at the broker (recover)"))
        return Settled(o.tag, rows, "rejected at the broker")
    message = ("cancelled at the broker (recover)" if status else
               "never reached the broker (recover): the runner stopped before sending it")
    rows.append(_row(o, "CANCEL", now_ns(), fill_qty=o.fill_qty, message=message))
    return Settled(o.tag, rows, message.replace(" (recover)", ""))


async def _cancel(o: Orphan, broker: Any, view: Any, rows: list[dict[str, Any]],
                  now_ns: Callable[[], int]) -> Settled:
    trade = view.trade
    broker.ib.cancelOrder(trade.order)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + CANCEL_CONFIRM_SEC
    while not trade.isDone() and loop.time() < give_up:
        try:
            await asyncio.wait_for(trade.statusEvent, give_up - loop.time())
        except TimeoutError:
            break
    later = await broker.view(o.tag)
    rows += _fill_rows(o, later.fills)
    if later.live:
        return Settled(o.tag, rows, f"cancel not confirmed within {CANCEL_CONFIRM_SEC:g} s; "
                       "still live at the broker", settled=False)
    if o.fill_qty >= o.intent["qty"] - 1e-9:
        return Settled(o.tag, rows, "filled before the cancel reached it")
    rows.append(_row(o, "CANCEL", now_ns(), fill_qty=o.fill_qty, message="cancelled by recover"))
    return Settled(o.tag, rows, f"cancelled (filled {o.fill_qty:g})")


def _fill_rows(o: Orphan, fills: list[Any]) -> list[dict[str, Any]]:
    """The executions the ledger does not have yet, at the broker's times."""
    rows = []
    for f in fills:
        if f.exec_id in o.exec_ids or f.cum_qty <= o.fill_qty + 1e-9:
            continue
        o.exec_ids.add(f.exec_id)
        o.fill_qty = f.cum_qty
        o.commission += f.commission or 0.0
        event = "FILL" if f.cum_qty >= o.intent["qty"] - 1e-9 else "PARTIAL"
        rows.append(_row(o, event, f.ts_ns, fill_qty=f.cum_qty, last_qty=f.qty, last_px=f.px,
                         avg_px=f.avg_px, commission=o.commission or None, exec_id=f.exec_id,
                         order_id=f.order_id, perm_id=f.perm_id))
    return rows


def _row(o: Orphan, event: str, ts_ns: int, **values: Any) -> dict[str, Any]:
    """A recovered event at the broker's time, but never before the order's last recorded
    event: IB's execution times have 1 s resolution, and the ledger is in time order."""
    o.last_ts = max(ts_ns, o.last_ts + 1)
    row = {k: o.intent.get(k) for k in CARRIED}
    row.update(event=event, ts=o.last_ts)
    row.update({k: v for k, v in values.items() if v is not None})
    return row


def settle_sim(orphans: list[Orphan], now_ns: int) -> list[Settled]:
    """A dry run has no broker to ask: its order ended with its process."""
    return [Settled(o.tag, [_row(o, "CANCEL", now_ns, fill_qty=o.fill_qty,
                                 message="dry run ended without a final event (recover)")],
                    "dry run ended without a final event") for o in orphans]


def record(out_dir: Path, day: str, settled: list[Settled]) -> None:
    from runner.ledger import Ledger

    rows = [r for s in settled for r in s.rows]
    if not rows:
        return
    with Ledger(Path(out_dir), day, f"recover-{uuid.uuid4().hex[:12]}") as ledger:
        for row in rows:
            ledger.append(row)


async def recover_day(out_dir: Path, day: str, connection: Connection, cancel_all: bool,
                      verbose: int = 0) -> list[Settled]:
    """Find, settle and record one day's orphans; connects only if an IB order needs it."""
    orphans = find_orphans(out_dir, day)
    sim = [o for o in orphans if o.intent.get("broker") == "sim"]
    ib = [o for o in orphans if o.intent.get("broker") != "sim"]
    settled = settle_sim(sim, time.time_ns())
    if ib:
        from runner.ib import IBBroker

        broker = IBBroker(connection, verbose=verbose)
        try:
            await broker.connect()
            settled += await settle_ib(ib, broker, cancel_all)
        finally:
            record(out_dir, day, settled)
            await broker.close()
    else:
        record(out_dir, day, settled)
    return settled


def recover(out_dir: str, date: str | None, cancel_all: bool, connection: Connection,
            verbose: int = 0) -> int:
    """The command: every day given (or today and any day with journals left over)."""
    from runner.ledger import leftover_days

    root = Path(out_dir)
    days = [date] if date else sorted(set(leftover_days(root)) | {trading_day(time.time_ns())})
    results = [(d, s) for d in days
               for s in asyncio.run(recover_day(root, d, connection, cancel_all, verbose))]
    for day, s in results:
        print(f"recover {day} {s.tag}: {s.summary}")
    if not results:
        print(f"recover: nothing to recover in {out_dir} ({', '.join(days)})")
    unsettled = [s.tag for _, s in results if not s.settled]
    if unsettled:
        raise GatewayError(f"cancel not confirmed for {len(unsettled)} order(s), still live at "
                           f"the broker: {', '.join(unsettled)}",
                           "check the gateway, then run `runner recover` again")
    return 0
