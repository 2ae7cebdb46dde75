"""The order engine: places, modifies, fills and cancels orders in the book.

It runs each order's script as an asyncio task, and talks to clients only
through an `Outbox` (send fields to the session of a client id, drop that
session, hold its messages for a while, restart the gateway), so it never cares
whether the client is connected right now: a fill while the client is away
lands in the book and is replayed later.

Every message about an order goes through `_send`, which sends it
`script.duplicate` times and not at all while the order is hidden (a gateway
that lost it in a restart).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from runner.gateway import wire
from runner.gateway.barclock import BarClock, bar_steps
from runner.gateway.book import Book, OrderKey, OrderRecord
from runner.gateway.commissions import fill_commission
from runner.gateway.steps import (
    AFTER_DONE_STEPS,
    DEFAULT_SCRIPT,
    Ack,
    CancelAt,
    CancelPolicy,
    Correct,
    Delay,
    DropAfterAck,
    DropBeforeAck,
    Error,
    Fill,
    FillAt,
    Inactive,
    Outage,
    Reject,
    Restart,
    Script,
    Step,
    step_delay_s,
)
from runner.gateway.values import Execution, PlacedOrder

log = logging.getLogger("runner.gateway")
LIVE_FILL_REQ_ID = -1  # execDetails of a live fill carry reqId -1


class Outbox(Protocol):
    def send(self, client_id: int, fields: list[str]) -> None: ...

    def drop(self, client_id: int) -> None: ...

    def client_outage(self, client_id: int | None, seconds: float, restored: int,
                      lose_held: bool = False) -> None: ...

    def restart_now(self, down: float, lose_orders: bool, rollback_ids: bool) -> None: ...


class OrderEngine:
    def __init__(self, book: Book, outbox: Outbox, clock: Callable[[], int],
                 bar_clock: BarClock | None = None, participation: float = 0.10) -> None:
        self.book = book
        self.outbox = outbox
        self.clock = clock
        self.bar_clock = bar_clock
        self.participation = participation
        self.scripts: dict[str | None, Script] = {}
        self._tasks: dict[OrderKey, asyncio.Task[None]] = {}
        self._timers: dict[OrderKey, asyncio.TimerHandle] = {}  # GTD expiries
        self._later: set[asyncio.TimerHandle] = set()  # late commissions
        self._bars_driven: set[OrderKey] = set()

    # ------------------------------------------------------------ requests

    def place(self, client_id: int, placed: PlacedOrder) -> None:
        record = self.book.orders.get((client_id, placed.order_id))
        if record is None:
            self._place_new(client_id, placed)
        elif record.done or record.hidden or not _same_instrument(record.order, placed):
            # IB knows the id (done, or working but lost by this gateway): not a modify.
            self.outbox.send(client_id, wire.ib_error(placed.order_id, wire.DUPLICATE_ORDER_ID))
        else:
            self._modify(record, placed)

    def cancel(self, client_id: int, order_id: int) -> None:
        """cancelOrder: only the client id that placed an order can cancel it."""
        record = self.book.orders.get((client_id, order_id))
        if record is None or record.hidden:
            self.outbox.send(client_id, wire.ib_error(order_id, wire.CANCEL_NOT_FOUND, order_id))
        elif record.done:
            self._error(record, wire.CANCEL_TOO_LATE, order_id, record.status)
        else:
            self._cancel_live(record)

    def global_cancel(self) -> None:
        """reqGlobalCancel: every working order, of every client (and hidden ones too:
        the request goes to IB, which knows them)."""
        for record in self.book.live():
            self._cancel_live(record)

    # ------------------------------------------------------------ from outside

    def live_by_ref(self, order_ref: str) -> OrderRecord:
        live = [r for r in self.book.by_ref(order_ref) if not r.done]
        if not live:
            raise LookupError(f"no live order with orderRef {order_ref!r}")
        return live[-1]

    def fill(self, order_ref: str, qty: float, px: float, commission: float) -> Execution:
        execution = self._fill(self.live_by_ref(order_ref), Fill(qty, px, commission))
        if execution is None:
            raise LookupError(f"order {order_ref!r} has nothing left to fill")
        return execution

    def cancel_from_server(self, order_ref: str) -> None:
        record = self.live_by_ref(order_ref)
        self._stop(record)
        self._cancelled(record)

    def set_cancel(self, order_ref: str, policy: CancelPolicy) -> int:
        """New cancel behaviour for the working order(s) with this orderRef (hidden ones
        included); the count of refusals starts again. Returns how many orders."""
        records = [r for r in self.book.by_ref(order_ref) if not r.done]
        if not records:
            raise LookupError(f"no live order with orderRef {order_ref!r}")
        for record in records:
            record.script = record.script.with_cancel(policy)
            record.refused = 0
        return len(records)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for timer in [*self._timers.values(), *self._later]:
            timer.cancel()
        self._later.clear()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------ placing

    def _script_for(self, placed: PlacedOrder) -> tuple[Script, bool]:
        """The order's script, and whether bars mode drives it."""
        script = self.scripts.get(placed.order_ref) if placed.order_ref else None
        script = script or self.scripts.get(None)
        if script is not None:
            return script, False
        if self.bar_clock is not None:
            steps = bar_steps(self.bar_clock, placed, placed.qty, self.clock(),
                              self.participation)
            return Script(steps), True
        return DEFAULT_SCRIPT, False

    def _place_new(self, client_id: int, placed: PlacedOrder) -> None:
        script, bars_driven = self._script_for(placed)
        record = self.book.add(client_id, placed, script)
        if bars_driven:
            self._bars_driven.add(record.key)
        self._start(record)
        self._arm_good_till(record)

    def _modify(self, record: OrderRecord, placed: PlacedOrder) -> None:
        record.order = placed
        if record.key in self._bars_driven and self.bar_clock is not None:
            # New price or size: match the rest again from now on.
            self._stop(record)
            record.pending = deque(bar_steps(self.bar_clock, placed, record.remaining,
                                             self.clock(), self.participation, ack=False))
            self._start(record)
        self._send_order(record)
        self._arm_good_till(record)

    def _arm_good_till(self, record: OrderRecord) -> None:
        """A GTD order dies at its goodTillDate, as at IB: the runner's TTL backstop."""
        self._disarm_good_till(record)
        at_ns = wire.parse_ib_time(record.order.good_till_date)
        if record.order.tif != "GTD" or at_ns is None:
            return
        delay = max(at_ns - self.clock(), 0) / 1e9
        loop = asyncio.get_running_loop()
        self._timers[record.key] = loop.call_later(delay, self._expire, record)

    def _disarm_good_till(self, record: OrderRecord) -> None:
        old = self._timers.pop(record.key, None)
        if old is not None:
            old.cancel()

    def _expire(self, record: OrderRecord) -> None:
        self._timers.pop(record.key, None)
        if not record.done:
            self._stop(record)
            self._cancelled(record)

    # ------------------------------------------------------------ cancelling

    def _cancel_live(self, record: OrderRecord) -> None:
        policy = record.script.cancel_policy()
        mode = policy.on_cancel
        if mode == "ignore":
            return
        if mode == "refuse" and (policy.refusals is None or record.refused < policy.refusals):
            record.refused += 1
            self._refuse(record, policy)  # and the order, and its script, go on
            return
        self._stop(record)
        if mode == "reject_filled":
            # The cancel lost the race: fills already in flight land first.
            fills = [s for s in record.pending if isinstance(s, Fill | FillAt)]
            record.pending = deque(s for s in record.pending if s not in fills)
            for step in fills:
                self._apply(record, step)
            self._error(record, wire.CANCEL_TOO_LATE, record.order_id, record.status)
            self._resume(record)  # the order lives on (or only its after-done steps)
            return
        self._cancelled(record)

    def _refuse(self, record: OrderRecord, policy: CancelPolicy) -> None:
        code = policy.refuse_code
        if code == wire.CANCEL_TOO_LATE:
            text = wire.ERROR_TEXT[code].format(record.order_id, policy.refuse_state)
        else:
            text = wire.order_error_text(code, record.snapshot(), self.clock())
        self._send(record, wire.error(record.order_id, code, text))

    def _cancelled(self, record: OrderRecord, reason: str = "") -> None:
        # orderStatus Cancelled before error 202: ib_async then fires cancelledEvent once.
        self._finish(record, "Cancelled")
        self._send(record, wire.order_status(record.snapshot()))
        self._error(record, wire.ORDER_CANCELLED, reason)
        self._resume(record)

    def _finish(self, record: OrderRecord, status: str) -> None:
        record.finish(status, self.clock())
        self._disarm(record)

    # ------------------------------------------------------------ scripts

    def _start(self, record: OrderRecord) -> None:
        task = asyncio.get_running_loop().create_task(self._run(record))
        self._tasks[record.key] = task
        task.add_done_callback(lambda t: self._task_done(record.key, t))

    def _resume(self, record: OrderRecord) -> None:
        """Run what is left of a stopped script (for a done order: its after-done steps)."""
        if record.pending and record.key not in self._tasks:
            self._start(record)

    def _task_done(self, key: OrderKey, task: asyncio.Task[None]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled() and task.exception() is not None:
            log.error("script of order %s failed", key, exc_info=task.exception())

    def _stop(self, record: OrderRecord) -> None:
        task = self._tasks.pop(record.key, None)
        if task is not None:
            task.cancel()

    async def _run(self, record: OrderRecord) -> None:
        while record.pending:
            step = record.pending[0]
            await self._wait_for_step(step)
            if not record.pending or record.pending[0] is not step:
                continue  # the script changed meanwhile (the order ended): look again
            record.pending.popleft()
            if record.done and not isinstance(step, AFTER_DONE_STEPS):
                continue
            self._apply(record, step)

    async def _wait_for_step(self, step: Step) -> None:
        delay = step_delay_s(step, self.clock())
        if delay > 0:
            await asyncio.sleep(delay)
        # The loop's timer may fire a hair before the wall clock gets there; a fill
        # at a wall time must never come early, so re-check (a few times at most).
        for _ in range(3):
            if not isinstance(step, FillAt | CancelAt):
                return
            late = step_delay_s(step, self.clock())
            if late <= 0:
                return
            await asyncio.sleep(late)

    def _apply(self, record: OrderRecord, step: Step) -> None:
        """Run one step. Synchronous on purpose: a cancel never lands halfway through."""
        match step:
            case Ack(status=status):
                record.status = status
                self._send_order(record)
            case Fill():
                self._fill(record, step)
            case FillAt(qty=qty, px=px, commission=commission):
                if commission is None:
                    commission = fill_commission(record.order.contract, record.filled,
                                                 record.filled * record.avg_px,
                                                 min(qty, record.buys(px)), px)
                self._fill(record, Fill(qty, px, commission))
            case Reject(text=text):
                self._error(record, wire.ORDER_REJECTED, text)  # 201 first: text in trade.log
                self._finish(record, "Inactive")
                self._send(record, wire.order_status(record.snapshot()))
            case Inactive(code=code, text=text):
                if code is not None:
                    text = text or wire.order_error_text(code, record.snapshot(), self.clock())
                    self._send(record, wire.error(record.order_id, code, text))
                self._finish(record, "Inactive")
                self._send(record, wire.order_status(record.snapshot()))
            case Error(code=code, text=text, final=final):
                if text is None:
                    text = wire.order_error_text(code, record.snapshot(), self.clock())
                self._send(record, wire.error(record.order_id, code, text))
                if code == wire.TIF_SET_TO_DAY:
                    # IB made it a DAY order: it no longer dies at its goodTillDate.
                    record.order = replace(record.order, tif="DAY", good_till_date="")
                    self._disarm_good_till(record)
                if final and not record.done:
                    self._finish(record, "Inactive")
            case Correct():
                self._correct(record, step)
            case Outage(seconds=seconds, restored=restored, lose_held=lose_held):
                self.outbox.client_outage(record.client_id, seconds, restored, lose_held)
            case Restart(down=down, lose_orders=lose, rollback_ids=rollback):
                self.outbox.restart_now(down, lose, rollback)
            case DropBeforeAck():
                if record.status == "PendingSubmit":
                    record.status = "Submitted"  # the order reached IB; the client never hears
                self.outbox.drop(record.client_id)
            case DropAfterAck():
                record.status = "Submitted"
                self._send_order(record)
                self.outbox.drop(record.client_id)
            case CancelAt(reason=reason):
                self._cancelled(record, reason)
            case Delay():
                pass

    # ------------------------------------------------------------ messages

    def _fill(self, record: OrderRecord, step: Fill) -> Execution | None:
        mode = step.commission_mode
        execution = self.book.execute(record, step.qty, step.px, step.commission, self.clock(),
                                      over=step.over, reported=mode != "absent")
        if execution is None:
            return None
        # A real gateway's order: the execution, then the order's new state, then the
        # commission (which ib_async drops if its execution is unknown). Scripts may
        # put the state first, the commission first, late, or leave it out.
        commission = wire.commission_report(execution)
        if step.status_first:
            self._send_order(record)
        if mode == "before":
            self._send(record, commission)
        self._send(record, wire.exec_details(LIVE_FILL_REQ_ID, execution))
        if not step.status_first:
            self._send_order(record)
        if mode == "after":
            if step.commission_delay > 0:
                self._send_later(step.commission_delay, record, commission)
            else:
                self._send(record, commission)
        if record.done:
            self._disarm(record)
        return execution

    def _correct(self, record: OrderRecord, step: Correct) -> None:
        correction = self.book.correct(record, step.index, step.qty, step.px, step.commission,
                                       self.clock())
        if correction is None:
            log.warning("order %s: no execution %d to correct", record.key, step.index)
            return
        self._send(record, wire.exec_details(LIVE_FILL_REQ_ID, correction))
        self._send_order(record)
        self._send(record, wire.commission_report(correction))
        if record.done:
            self._disarm(record)

    def _send_later(self, seconds: float, record: OrderRecord, fields: list[str]) -> None:
        def fire() -> None:
            self._later.discard(handle)
            self._send(record, fields)

        handle = asyncio.get_running_loop().call_later(seconds, fire)
        self._later.add(handle)

    def _send_order(self, record: OrderRecord) -> None:
        # ib_async takes a known trade's status only from orderStatus, so always both.
        snapshot = record.snapshot()
        self._send(record, wire.open_order(snapshot))
        self._send(record, wire.order_status(snapshot))

    def _send(self, record: OrderRecord, fields: list[str]) -> None:
        """A message about this order: `duplicate` times; never while it is hidden."""
        if record.hidden:
            return
        for _ in range(record.script.duplicate):
            self.outbox.send(record.client_id, fields)

    def _error(self, record: OrderRecord, code: int, *args: object) -> None:
        self._send(record, wire.ib_error(record.order_id, code, *args))

    def _disarm(self, record: OrderRecord) -> None:
        self._disarm_good_till(record)
        self._bars_driven.discard(record.key)


def _same_instrument(old: PlacedOrder, new: PlacedOrder) -> bool:
    """A modify may change price, size, tif...; not the contract or the side."""
    return old.contract.con_id == new.contract.con_id and old.action == new.action
