"""The order engine: places, modifies, fills and cancels orders in the book.

It runs each order's script as an asyncio task, and talks to clients only
through an `Outbox` (send fields to the session of a client id, or drop that
session), so it never cares whether the client is connected right now: a
fill while the client is away lands in the book and is replayed later.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from runner.gateway import wire
from runner.gateway.barclock import BarClock, bar_steps, cumulative_commission
from runner.gateway.book import Book, OrderKey, OrderRecord
from runner.gateway.steps import (
    DEFAULT_SCRIPT,
    Ack,
    CancelAt,
    Delay,
    DropAfterAck,
    DropBeforeAck,
    Error,
    Fill,
    FillAt,
    Reject,
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
        self._timers: dict[OrderKey, asyncio.TimerHandle] = {}
        self._bars_driven: set[OrderKey] = set()

    # ------------------------------------------------------------ requests

    def place(self, client_id: int, placed: PlacedOrder) -> None:
        record = self.book.orders.get((client_id, placed.order_id))
        if record is None:
            self._place_new(client_id, placed)
        elif record.done:
            self._error(record, wire.DUPLICATE_ORDER_ID)
        else:
            self._modify(record, placed)

    def cancel(self, client_id: int, order_id: int) -> None:
        record = self.book.orders.get((client_id, order_id))
        if record is None:
            self.outbox.send(client_id, wire.ib_error(order_id, wire.CANCEL_NOT_FOUND, order_id))
        elif record.done:
            self._error(record, wire.CANCEL_TOO_LATE, order_id, record.status)
        else:
            self._cancel_live(record)

    def global_cancel(self) -> None:
        for record in self.book.live():
            self._cancel_live(record)

    # ------------------------------------------------------------ from outside

    def live_by_ref(self, order_ref: str) -> OrderRecord:
        live = [r for r in self.book.by_ref(order_ref) if not r.done]
        if not live:
            raise LookupError(f"no live order with orderRef {order_ref!r}")
        return live[-1]

    def fill(self, order_ref: str, qty: float, px: float, commission: float) -> Execution:
        execution = self._fill(self.live_by_ref(order_ref), qty, px, commission)
        if execution is None:
            raise LookupError(f"order {order_ref!r} has nothing left to fill")
        return execution

    def cancel_from_server(self, order_ref: str) -> None:
        record = self.live_by_ref(order_ref)
        self._stop(record)
        self._cancelled(record)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for timer in self._timers.values():
            timer.cancel()
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
        old = self._timers.pop(record.key, None)
        if old is not None:
            old.cancel()
        at_ns = wire.parse_ib_time(record.order.good_till_date)
        if record.order.tif != "GTD" or at_ns is None:
            return
        delay = max(at_ns - self.clock(), 0) / 1e9
        loop = asyncio.get_running_loop()
        self._timers[record.key] = loop.call_later(delay, self._expire, record)

    def _expire(self, record: OrderRecord) -> None:
        self._timers.pop(record.key, None)
        if not record.done:
            self._stop(record)
            self._cancelled(record)

    # ------------------------------------------------------------ cancelling

    def _cancel_live(self, record: OrderRecord) -> None:
        mode = record.script.on_cancel
        if mode == "ignore":
            return
        self._stop(record)
        if mode == "reject_filled":
            # The cancel lost the race: fills already in flight land first.
            fills = [s for s in record.pending if isinstance(s, Fill | FillAt)]
            record.pending = deque(s for s in record.pending if s not in fills)
            for step in fills:
                self._apply(record, step)
            self._error(record, wire.CANCEL_TOO_LATE, record.order_id, record.status)
            if not record.done and record.pending:
                self._start(record)  # the order lives on, and so does its script
            return
        self._cancelled(record)

    def _cancelled(self, record: OrderRecord, reason: str = "") -> None:
        # orderStatus Cancelled before error 202: ib_async then fires cancelledEvent once.
        record.finish("Cancelled", self.clock())
        self._disarm(record)
        self.outbox.send(record.client_id, wire.order_status(record.snapshot()))
        self._error(record, wire.ORDER_CANCELLED, reason)

    # ------------------------------------------------------------ scripts

    def _start(self, record: OrderRecord) -> None:
        task = asyncio.get_running_loop().create_task(self._run(record))
        self._tasks[record.key] = task
        task.add_done_callback(lambda t: self._task_done(record.key, t))

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
        while record.pending and not record.done:
            step = record.pending[0]
            await self._wait_for_step(step)
            if record.done or not record.pending:
                return
            record.pending.popleft()
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
            case Fill(qty=qty, px=px, commission=commission):
                self._fill(record, qty, px, commission)
            case FillAt(qty=qty, px=px, commission=commission):
                if commission is None:
                    commission = (cumulative_commission(record.filled + min(qty, record.remaining))
                                  - cumulative_commission(record.filled))
                self._fill(record, qty, px, commission)
            case Reject(text=text):
                self._error(record, wire.ORDER_REJECTED, text)  # 201 first: text in trade.log
                record.finish("Inactive", self.clock())
                self._disarm(record)
                self.outbox.send(record.client_id, wire.order_status(record.snapshot()))
            case Error(code=code, text=text, final=final):
                self.outbox.send(record.client_id, wire.error(record.order_id, code, text))
                if final:
                    record.finish("Inactive", self.clock())
                    self._disarm(record)
            case DropBeforeAck():
                if record.status == "PendingSubmit":
                    record.status = "Submitted"  # the order reached IB; the client never hears
                self.outbox.drop(record.client_id)
            case DropAfterAck():
                record.status = "Submitted"
                self._send_order(record)
                self.outbox.drop(record.client_id)
            case CancelAt():
                self._cancelled(record)
            case Delay():
                pass

    # ------------------------------------------------------------ messages

    def _fill(self, record: OrderRecord, qty: float, px: float,
              commission: float) -> Execution | None:
        execution = self.book.execute(record, qty, px, commission, self.clock())
        if execution is None:
            return None
        # The order of a real gateway: execution, then the order's new state,
        # then the commission (which ib_async drops if its execution is unknown).
        send = self.outbox.send
        send(record.client_id, wire.exec_details(LIVE_FILL_REQ_ID, execution))
        self._send_order(record)
        send(record.client_id, wire.commission_report(execution))
        if record.done:
            self._disarm(record)
        return execution

    def _send_order(self, record: OrderRecord) -> None:
        # ib_async takes a known trade's status only from orderStatus, so always both.
        snapshot = record.snapshot()
        self.outbox.send(record.client_id, wire.open_order(snapshot))
        self.outbox.send(record.client_id, wire.order_status(snapshot))

    def _error(self, record: OrderRecord, code: int, *args: object) -> None:
        self.outbox.send(record.client_id, wire.ib_error(record.order_id, code, *args))

    def _disarm(self, record: OrderRecord) -> None:
        timer = self._timers.pop(record.key, None)
        if timer is not None:
            timer.cancel()
        self._bars_driven.discard(record.key)
