"""The `ib` broker: ib_async at the edge, runner's events inside.

- `session`: the connection (connect, reconnect, owned tasks, taps on order messages);
- `codes`: runner's table of IB's message codes;
- `orders`: one order's truth from the broker's messages (`Tracker`);
- `queries`: asking the gateway (contracts, orders by identity, executions, what-if).

`IBBroker` wires them into the Broker interface. ib_async objects and IB's status
strings stay inside this package: the engine and `runner recover` see BrokerEvents,
Notes, `Lookup`, `Found` and `FillView`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import TYPE_CHECKING, Any

from runner.broker import BrokerEvent, Ev, Lookup, Note, NoteKind, OrderRequest, SessionInfo
from runner.broker import WhatIf as WhatIf
from runner.contract import ContractTerms
from runner.errors import GatewayError
from runner.ib import grid, prepared, qualify, queries
from runner.ib.codes import CANCEL_TOO_LATE, DUPLICATE_ORDER_ID, Kind, classify, refused_state
from runner.ib.orders import END_OF_STATUS, Execution, Tracker
from runner.ib.queries import Found, Identity, gtd_string, parse_hours
from runner.ib.session import Session, hint_321
from runner.plan import Connection

if TYPE_CHECKING:
    from runner.bars import Bars

__all__ = ["IBBroker", "Found", "Identity", "gtd_string", "parse_hours"]

REJECT_CONFIRM_SEC = 1.0  # a rejection code without a status: ask the gateway after this
RECOVER_HINT = "runner recover will find it and settle it"
_NO_REQ_ID = -1
_RESYNC_CODES = frozenset({1101, 1102})  # connectivity restored: check what we missed


class IBBroker:
    """Broker over ib_async. One order per run; events arrive on a queue."""

    name = "ib"

    def __init__(self, connection: Connection, verbose: int = 0) -> None:
        self.conn = connection
        self.session = Session(connection, verbose, on_error=self._background_error)
        self.session.tap(self)
        self.queue: asyncio.Queue[BrokerEvent | Note | BaseException] = asyncio.Queue()
        self.tracker: Tracker | None = None
        self.contract: Any = None
        self._ib_order: Any = None  # built by qualify, sent by place
        self.details: Any = None  # the qualified contract's ContractDetails (qualify)
        self._qualified: OrderRequest | None = None  # the request _ib_order was built from
        self.cancel_wanted = False
        self.reconnecting: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._commission_query: asyncio.Task[None] | None = None
        self._order_id: int | None = None
        self._prepared: prepared.Prepared | None = None  # the order's message, pre-encoded
        self._id_refused = False  # 103: the id belongs to another order; never cancel by it

    def now_ns(self) -> int:
        return time.time_ns()

    @property
    def where(self) -> str:
        return self.session.where

    @property
    def client_id(self) -> int:
        return self.session.client_id

    # --- connection -------------------------------------------------------------------

    async def connect(self) -> SessionInfo:
        await self.session.connect()
        self.session.ib.disconnectedEvent += self._on_disconnect
        return SessionInfo(accounts=self.session.accounts(),
                           server_version=self.session.ib.client.serverVersion(),
                           client_id=self.client_id)

    async def handshake(self) -> SessionInfo:
        """Connect, read accounts and the gateway's clock, disconnect."""
        try:
            info = await self.connect()
            return SessionInfo(info.accounts, info.server_version,
                               await self.session.server_time_ns(), self.client_id)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        await self.session.close()

    def _background_error(self, error: BaseException) -> None:
        self.queue.put_nowait(error)

    def _on_disconnect(self) -> None:
        if self.session.closing or self.reconnecting is not None or self.tracker is None:
            return
        self.reconnecting = self.session.spawn(self._reconnect())

    async def _reconnect(self) -> None:
        try:
            back = await self.session.reconnect(self.conn.reconnect_sec)
        finally:
            self.reconnecting = None
        tag = self.tracker.req.tag if self.tracker else "?"
        if not back:
            raise GatewayError(
                f"connection to {self.where} lost and not restored within "
                f"{self.conn.reconnect_sec:g} s; order {tag} may still be live at IB",
                RECOVER_HINT)
        await self._resync(after="reconnect")

    async def _resync(self, after: str) -> None:
        """Find the order again and record what happened meanwhile."""
        t = self.tracker
        if t is None:
            return
        found = await self._find()
        self._apply(found)
        if found.state == Lookup.WORKING and self.cancel_wanted:
            self._send_cancel()
        elif found.state == Lookup.UNKNOWN and t.ended is None:
            said = "acknowledged" if t.acked else "placed"
            self._put(BrokerEvent(
                kind=Ev.UNKNOWN, ts_ns=self.now_ns(), tag=t.req.tag, order_id=t.order_id,
                perm_id=t.perm_id, client_id=t.client_id, fill_qty=t.fill_qty,
                avg_px=t.avg_px, commission=t.commission,
                message=f"{said} order not shown by {self.where} after {after}; "
                        "it may still be working at IB (runner recover settles it)"))

    # --- orders -----------------------------------------------------------------------

    async def qualify(self, order: OrderRequest) -> ContractTerms:
        self.contract = await qualify.qualify(self.session, order)
        # one contract-details request: the grids now, the liquid hours for the gates
        self.details = await grid.details(self.session, self.contract)
        await grid.check(self.session, self.details, order)  # off-grid price or size: OffGrid
        self._ib_order = queries.ib_order(order)  # ~40 µs: built before the INTENT's clock
        self._qualified = order
        return qualify.terms_of(self.contract)

    def next_order_id(self) -> int | None:
        """The id the order will go out with, taken now so the INTENT can carry it; the
        order's message is encoded with it now too, so `place` only sends it."""
        if self._order_id is None:
            self._order_id = int(self.session.ib.client.getReqId())
            if self._ib_order is not None:
                self._prepared = prepared.encode(self.session.ib, self.contract,
                                                 self._ib_order, self._order_id)
        return self._order_id

    async def place(self, order: OrderRequest) -> None:
        """Send the order: the message encoded by `next_order_id` if there is one, else
        as ib_async's placeOrder encodes it."""
        if self._qualified is None or qualify.instrument(order) != qualify.instrument(
                self._qualified):
            # self.contract is the qualified one of another request: never send it
            raise RuntimeError("place() of an instrument qualify() was not asked for (a bug); "
                               "nothing was sent")
        self.tracker = Tracker(order, self.client_id, self._put, self.now_ns)
        if dataclasses.replace(
                order, good_till_ns=self._qualified.good_till_ns) != self._qualified:
            # terms other than the INTENT's goodTillDate changed since qualify: what was
            # built then is not this order, so build it again (never send stale terms)
            self._ib_order, self._prepared = queries.ib_order(order), None
            self._qualified = order
        ib, ib_order, order_id = self.session.ib, self._ib_order, self.next_order_id()
        # the backstop is taken from the INTENT's clock
        good_till = None if order.good_till_ns is None else queries.gtd_string(order.good_till_ns)
        ready, trade = self._prepared, None
        if ready is not None and ready.order_id == order_id:
            trade = prepared.send(ib, self.contract, ib_order, ready, good_till)
        if trade is None:
            if good_till is not None:
                ib_order.goodTillDate = good_till
            ib_order.orderId = order_id
            trade = ib.placeOrder(self.contract, ib_order)
        self.tracker.order_id = trade.order.orderId or None

    async def cancel(self, tag: str) -> None:
        if self.tracker is None:
            return
        self.cancel_wanted = True
        if self.session.connected:
            self._send_cancel()
        elif self.reconnecting is None:
            raise GatewayError(f"cannot cancel {tag}: not connected", RECOVER_HINT)
        # else: sent as soon as the connection is back (see _resync)

    def _send_cancel(self) -> None:
        assert self.tracker is not None and self.tracker.order_id is not None
        if self._id_refused:
            return  # IB refused the id (103): a cancel by it would hit another order
        self.session.cancel(self.tracker.order_id)

    async def lookup(self, tag: str) -> Lookup:
        found = await self._find()
        self._apply(found)
        return found.state

    async def _find(self) -> Found:
        t = self.tracker
        assert t is not None
        return await queries.find(self.session, Identity(t.req.tag, t.perm_id, t.client_id,
                                                         t.order_id))

    def _apply(self, found: Found) -> None:
        """Feed what the gateway shows into the tracker (duplicates fall away there)."""
        t = self.tracker
        assert t is not None
        for f in found.fills:
            t.on_execution(Execution(f.exec_id, f.ts_ns, f.qty, f.px))
            if f.commission is not None:
                t.on_commission(f.exec_id, f.commission)
        if found.state == Lookup.DONE and found.status:
            t.on_status(found.status, found.filled, found.avg_px, found.perm_id)
        elif found.state == Lookup.UNKNOWN and not t.acked and t.reason:
            # refused on placement and never listed: the gateway's answer is its code
            t.on_reason(f"{t.reason} (not among the gateway's orders)")
            t.on_status("Inactive", 0.0, None)
        self._arm()

    async def next_event(self, deadline_ns: int) -> BrokerEvent | Note | None:
        if self.queue.empty():
            timeout = (deadline_ns - time.time_ns()) / 1e9
            if timeout <= 0:
                return None
            try:
                item = await asyncio.wait_for(self.queue.get(), timeout)
            except TimeoutError:
                return None
        else:
            item = self.queue.get_nowait()
        if isinstance(item, BaseException):
            raise item
        return item

    def reconnecting_now(self) -> bool:
        return self.reconnecting is not None

    def pending(self) -> bool:
        """Something is still to come for an ended order: a held row or a commission.
        Asks the gateway's executions once for commissions that did not come live."""
        t = self.tracker
        if t is None or t.settled:
            return False
        if (t.ended is not None and not t.held and t.missing_commissions
                and self._commission_query is None and self.session.connected):
            self._commission_query = self.session.spawn(self._query_commissions())
        return True

    async def _query_commissions(self) -> None:
        t = self.tracker
        assert t is not None
        who = Identity(t.req.tag, t.perm_id, t.client_id, t.order_id)
        try:
            fills = await queries.executions(self.session, who)
        except GatewayError as e:  # after the end: a note, not the run's failure
            self._put(Note(NoteKind.INFO, self.now_ns(), f"asking for the commissions: "
                           f"{e.message}"))
            return
        for f in fills:
            if f.commission is not None:
                t.on_commission(f.exec_id, f.commission)
        self._arm()

    def _put(self, item: BrokerEvent | Note) -> None:
        self.queue.put_nowait(item)

    def _arm(self) -> None:
        """One timer: when the tracker next has something to decide by the clock."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        t = self.tracker
        due = t.next_due_ns() if t is not None else None
        if due is not None:
            delay = max(0.0, (due - self.now_ns()) / 1e9) + 0.001
            self._timer = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            if self.tracker is not None:
                self.tracker.pump()
            self._arm()
        except Exception as e:  # noqa: BLE001 - a timer callback: hand it to the engine
            self._background_error(e)

    # --- taps: every decoded order message, before ib_async's bookkeeping ------------

    def orderStatus(self, order_id: int, status: str, filled: float, remaining: float,  # noqa: N802
                    avg_px: float, perm_id: int, parent_id: int, last_px: float,
                    client_id: int, *rest: Any) -> None:
        t = self.tracker
        if t is None or not self._mine(order_id, perm_id, client_id):
            return
        t.on_status(status, float(filled), float(avg_px) or None, perm_id or None)
        self._arm()

    def execDetails(self, req_id: int, contract: Any, ex: Any) -> None:  # noqa: N802
        t = self.tracker
        if t is None or (ex.orderRef or "") != t.req.tag:
            return
        if not self._mine(ex.orderId, ex.permId, ex.clientId):
            return
        t.on_execution(Execution(ex.execId, self.now_ns(), float(ex.shares), float(ex.price)))
        self._arm()

    def commissionReport(self, report: Any) -> None:  # noqa: N802
        t = self.tracker
        if t is None:
            return
        # a commission names only its execution; keep it even if that has not come yet
        # (it is used only if an execution of ours with that id turns up)
        t.on_commission(report.execId, float(report.commission or 0.0))
        self._arm()

    def error(self, req_id: int, code: int, text: str, *rest: Any) -> None:
        t = self.tracker
        if t is None:
            return
        if req_id == _NO_REQ_ID:
            self._notice(code, text)
        elif req_id == t.order_id:
            self._order_code(t, code, text)

    def _notice(self, code: int, text: str) -> None:
        c = classify(code)
        if c.kind != Kind.CONNECTIVITY:
            return
        self._put(Note(NoteKind.INFO, self.now_ns(), f"IB {code}: {text}", code))
        if code in _RESYNC_CODES and self.session.connected:
            self.session.spawn(self._resync(after=f"IB {code}"))

    def _order_code(self, t: Tracker, code: int, text: str) -> None:
        c = classify(code)
        said = f"{code} {text}".strip()
        if c.kind == Kind.INFO:
            extra = ("; the order works on as DAY: its GTD backstop is gone"
                     if code == 10349 else "; the order works on")
            self._put(Note(NoteKind.INFO, self.now_ns(), f"IB {said}{extra}", code))
        elif c.kind == Kind.CANCEL_REFUSED:
            if code == CANCEL_TOO_LATE and refused_state(text) == "Filled":
                self._put(Note(NoteKind.INFO, self.now_ns(),
                               f"IB {said}: the cancel came too late", code))
            else:
                self._put(Note(NoteKind.CANCEL_REFUSED, self.now_ns(), f"IB {said}", code))
        elif c.kind in (Kind.REJECTED, Kind.CLIENT):
            if code == DUPLICATE_ORDER_ID and not t.acked:
                self._id_refused = True
            hint = f" ({hint_321(text)})" if code == 321 else ""
            t.on_reason(said + hint)
            self.session.spawn(self._confirm_reject())

    async def _confirm_reject(self) -> None:
        """A rejection code alone ends nothing: wait for the status, else ask the gateway."""
        await asyncio.sleep(REJECT_CONFIRM_SEC)
        t = self.tracker
        if t is None or t.ended is not None or t.status in END_OF_STATUS:
            return
        if self.session.connected:
            self._apply(await self._find())

    def _mine(self, order_id: int, perm_id: int, client_id: int) -> bool:
        t = self.tracker
        assert t is not None
        if perm_id and t.perm_id:
            return perm_id == t.perm_id
        return order_id == t.order_id and client_id == t.client_id

    # --- previews and facts for the gates (plan --broker, pre_place) -----------------

    async def what_if(self, order: OrderRequest) -> WhatIf:
        return await queries.what_if(self.session, self.contract, order)

    async def liquid_sessions(self) -> tuple[tuple[int, int], ...] | None:
        if self.details is not None:  # asked at qualify: not asked again
            return queries.parse_hours(self.details.liquidHours, self.details.timeZoneId)
        return await queries.liquid_sessions(self.session, self.contract)

    async def reference_price(self) -> tuple[float, int] | None:
        """The broker's reference price of the qualified contract and the instant it was
        known (ns, UTC), or None if the gateway has none (see `queries.reference`).
        GatewayError only for a connection problem."""
        if self.contract is None:
            raise RuntimeError("reference_price() needs qualify() first")
        return await queries.reference(self.session, self.contract)

    async def order_bars(self, start_ns: int, end_ns: int) -> Bars | None:
        """IB's 1-second bars over an order's life (`queries.order_bars`); None when IB
        has none, or the connection is not there (post-trade figures are then null)."""
        if self.contract is None or not self.session.connected:
            return None
        try:
            return await queries.order_bars(self.session, self.contract, start_ns,  # type: ignore[no-any-return]
                                            end_ns)
        except ConnectionError:
            return None

    # --- for runner recover -------------------------------------------------------------

    def accounts(self) -> tuple[str, ...]:
        return self.session.accounts()

    async def find(self, who: Identity) -> Found:
        return await queries.find(self.session, who)

    async def find_executions(self, who: Identity) -> list[queries.FillView]:
        return await queries.executions(self.session, who)

    def missing_commissions(self) -> list[str]:
        """Executions of the order whose commission never came (after the end)."""
        return self.tracker.missing_commissions if self.tracker is not None else []

    def cancel_found(self, found: Found) -> None:
        """Send a cancel for an order found at the gateway (this session's client id)."""
        assert found.order_id is not None
        self.session.cancel(found.order_id)
