"""The gateway's state that outlives connections: orders, executions, id counters.

A real gateway keeps orders working after the API client goes away, and tells
a client that comes back about them (open orders, completed orders,
executions). This book is that memory; sessions come and go around it.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field, replace
from decimal import Decimal

from runner.gateway.commissions import rate_of
from runner.gateway.steps import AFTER_DONE_STEPS, Script, Step
from runner.gateway.values import (
    DONE_STATUSES,
    Contract,
    Execution,
    OrderSnapshot,
    PlacedOrder,
    cash_buys,
    remaining_units,
)

OrderKey = tuple[int, int]  # (clientId, orderId): how IB and ib_async key an order
_EPS = 1e-9
_FIRST_PERM_ID = 1_000_001


@dataclass(slots=True)
class OrderRecord:
    """One order's mutable book-keeping. Hand out `snapshot()`s, never this."""

    client_id: int
    order_id: int
    perm_id: int
    order: PlacedOrder
    script: Script
    pending: deque[Step] = field(default_factory=deque)
    status: str = "PendingSubmit"
    filled: float = 0.0
    avg_px: float = 0.0
    last_fill_px: float = 0.0
    commission: float = 0.0
    done_ns: int = 0
    hidden: bool = False  # the gateway lost it (a restart with lose_orders); IB did not
    refused: int = 0  # cancels refused so far (on_cancel "refuse" with refusals=N)
    execs: list[Execution] = field(default_factory=list)  # in force (corrections applied)

    @property
    def key(self) -> OrderKey:
        return (self.client_id, self.order_id)

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES

    @property
    def remaining(self) -> float:
        return remaining_units(self.order, self.filled, self.spent, self.last_fill_px)

    @property
    def spent(self) -> float:
        """What the executions in force cost, summed in decimal (a cash order's measure)."""
        return float(sum((Decimal(repr(e.shares)) * Decimal(repr(e.price)) for e in self.execs),
                         Decimal(0)))

    def buys(self, px: float) -> float:
        """The most a fill at `px` may take: the remaining qty; a cash order's, what is
        left of its cash buys at `px`."""
        if self.order.cash_qty is None:
            return self.remaining
        return cash_buys(self.order, self.spent, px)

    def finish(self, status: str, now_ns: int) -> None:
        """The order is done. Only steps that make sense for a done order stay in
        its script (corrections, information, outages, restarts, delays)."""
        self.status = status
        self.done_ns = now_ns
        self.pending = deque(s for s in self.pending if isinstance(s, AFTER_DONE_STEPS))

    def recompute(self) -> None:
        """filled / avgFillPrice / commission from the executions in force."""
        self.filled = sum(e.shares for e in self.execs)
        notional = sum(e.shares * e.price for e in self.execs)
        self.avg_px = notional / self.filled if self.filled > _EPS else 0.0
        self.last_fill_px = self.execs[-1].price if self.execs else 0.0
        self.commission = sum(e.commission for e in self.execs)

    def snapshot(self) -> OrderSnapshot:
        return OrderSnapshot(
            client_id=self.client_id, order_id=self.order_id, perm_id=self.perm_id,
            order=self.order, status=self.status, filled=self.filled, avg_px=self.avg_px,
            last_fill_px=self.last_fill_px, commission=self.commission, hidden=self.hidden,
            spent=self.spent,
        )


class Book:
    def __init__(self, accounts: tuple[str, ...], first_order_id: int = 1) -> None:
        if not accounts:
            raise ValueError("a gateway needs at least one account (ib_async waits for one)")
        self.accounts = accounts
        self.first_order_id = first_order_id
        self.next_order_id = first_order_id
        self.orders: dict[OrderKey, OrderRecord] = {}
        self.executions: list[Execution] = []  # every one ever reported, in time order
        self.superseded: set[str] = set()  # execIds replaced by a correction
        self._perm_ids = itertools.count(_FIRST_PERM_ID)
        self._exec_seq = itertools.count(1)

    def add(self, client_id: int, placed: PlacedOrder, script: Script) -> OrderRecord:
        record = OrderRecord(client_id, placed.order_id, next(self._perm_ids), placed, script)
        record.pending.extend(script.steps)
        self.orders[record.key] = record
        self.see_order_id(placed.order_id)
        return record

    def see_order_id(self, order_id: int) -> None:
        self.next_order_id = max(self.next_order_id, order_id + 1)

    def execute(self, record: OrderRecord, qty: float, px: float, commission: float,
                now_ns: int, over: bool = False, reported: bool = True) -> Execution | None:
        """Fill up to `qty` of a live order (all of it if `over`); None if nothing is
        left to fill."""
        if not over:
            qty = min(qty, record.buys(px))  # a cash order: what its cash left buys
        if record.done or qty <= _EPS:
            return None
        execution = Execution(
            exec_id=f"{record.perm_id:08x}.{next(self._exec_seq):08x}.01.01",
            time_ns=now_ns, client_id=record.client_id, order_id=record.order_id,
            perm_id=record.perm_id, order_ref=record.order.order_ref,
            account=record.order.account, contract=record.order.contract,
            side="BOT" if record.order.action == "BUY" else "SLD", shares=qty, price=px,
            cum_qty=0.0, avg_price=0.0, commission=commission, commission_reported=reported,
            commission_currency=rate_of(record.order.contract).currency,
        )
        record.execs.append(execution)
        record.recompute()
        execution = replace(execution, cum_qty=record.filled, avg_price=record.avg_px)
        record.execs[-1] = execution
        self._settle(record, now_ns)
        self.executions.append(execution)
        return execution

    def correct(self, record: OrderRecord, index: int, qty: float | None, px: float | None,
                commission: float | None, now_ns: int) -> Execution | None:
        """Replace the order's execution number `index` (in force) by a correction;
        None if there is no such execution."""
        try:
            old = record.execs[index]
        except IndexError:
            return None
        head, _, last = old.exec_id.rpartition(".")
        exec_id = f"{head}.{int(last) + 1:0{len(last)}d}"
        corrected = replace(
            old, exec_id=exec_id, time_ns=now_ns,
            shares=old.shares if qty is None else qty, price=old.price if px is None else px,
            commission=old.commission if commission is None else commission,
            corrects=old.exec_id)
        record.execs[index] = corrected
        record.recompute()
        corrected = replace(corrected, cum_qty=record.filled, avg_price=record.avg_px)
        record.execs[index] = corrected
        if not record.done:
            self._settle(record, now_ns)
        self.superseded.add(old.exec_id)
        self.executions.append(corrected)
        return corrected

    @staticmethod
    def _settle(record: OrderRecord, now_ns: int) -> None:
        if record.remaining <= _EPS:
            record.finish("Filled", now_ns)
        elif record.status in ("PendingSubmit", "PreSubmitted", "ApiPending"):
            record.status = "Submitted"

    def record_of(self, e: Execution) -> OrderRecord | None:
        return self.orders.get((e.client_id, e.order_id))

    def visible(self, e: Execution) -> bool:
        record = self.record_of(e)
        return record is None or not record.hidden

    def live(self, client_id: int | None = None, hidden: bool = True) -> list[OrderRecord]:
        """Orders still working (of one client id); `hidden=False` leaves out those the
        gateway lost."""
        return [r for r in self.orders.values()
                if not r.done and client_id in (None, r.client_id) and (hidden or not r.hidden)]

    def finished(self, hidden: bool = True) -> list[OrderRecord]:
        return [r for r in self.orders.values() if r.done and (hidden or not r.hidden)]

    def by_ref(self, order_ref: str) -> list[OrderRecord]:
        return [r for r in self.orders.values() if r.order.order_ref == order_ref]

    def positions(self) -> list[tuple[str, Contract, float, float]]:
        """(account, contract, position, average cost) from the executions so far."""
        book: dict[tuple[str, int], tuple[Contract, float, float]] = {}
        for e in self.executions:
            if e.exec_id in self.superseded:
                continue  # corrected: its correction counts instead
            contract, pos, cost = book.get((e.account, e.contract.con_id), (e.contract, 0.0, 0.0))
            signed = e.shares if e.side == "BOT" else -e.shares
            pos, cost = _add_position(pos, cost, signed, e.price)
            book[(e.account, e.contract.con_id)] = (contract, pos, cost)
        return [(acct, c, pos, cost) for (acct, _), (c, pos, cost) in book.items()]


def _add_position(pos: float, avg: float, qty: float, px: float) -> tuple[float, float]:
    """Average cost of a position after trading `qty` (signed) at `px`."""
    new = pos + qty
    if abs(new) <= _EPS:
        return 0.0, 0.0
    if pos == 0 or (pos > 0) == (qty > 0):  # opening or adding: cost averages in
        return new, (avg * abs(pos) + px * abs(qty)) / abs(new)
    if (pos > 0) == (new > 0):  # reducing: average cost unchanged
        return new, avg
    return new, px  # flipped through zero: the rest opened at px
