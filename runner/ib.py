"""The `ib` broker: ib_async at the edge, runner's events inside.

IB strings and camelCase stay in this module. Status and error codes are tabled
below with what they mean for us. ib_async forgets trades on disconnect, so the
broker keeps its own key for the order — its tag, IB's orderRef — and after a
reconnect finds the order again by it (open orders, executions, completed orders).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runner.broker import BrokerEvent, Ev, OrderRequest, SessionInfo
from runner.errors import GatewayError
from runner.plan import Connection

if TYPE_CHECKING:
    from runner.whatif import WhatIf

ACK_STATUSES = frozenset({"PreSubmitted", "Submitted"})
CANCEL_STATUSES = frozenset({"Cancelled", "ApiCancelled"})
DONE_STATUSES = frozenset({"Filled", "Cancelled", "ApiCancelled", "Inactive"})
COMMISSION_WAIT_SEC = 1.0  # how long a fill waits for its commissionReport before going out

# IB error codes that matter here (https://interactivebrokers.github.io/tws-api/message_codes.html)
CANCEL_CODES = frozenset({0, 202})  # 202 - Order cancelled (by us or the server)
FILLED_ON_CANCEL = 10148  # 10148 - cannot be cancelled, state: Filled -> a fill is coming
NOT_FOUND_ON_CANCEL = 10147  # 10147 - order to cancel not found
READ_ONLY = 321  # 321 - API in Read-Only mode (also other validation errors)
CLIENT_ID_IN_USE = 326  # 326 - client id already in use
NO_SECURITY = 200  # 200 - no security definition found

READ_ONLY_HINT = ("the gateway's API is read-only: in TWS/IB Gateway open Configure > API > "
                  "Settings and disable Read-Only API")
RECOVER_HINT = "runner recover will find it by its tag and settle it"
IB_UNSET = 1.7976931348623157e308  # IB's "no value" double (e.g. an unknown margin figure)


@dataclass(frozen=True, slots=True)
class FillView:
    """One execution as the broker reports it."""

    exec_id: str
    ts_ns: int
    qty: float
    px: float
    cum_qty: float
    avg_px: float
    commission: float | None
    order_id: int | None
    perm_id: int | None


@dataclass
class OrderView:
    """What the gateway knows of one tag right now."""

    tag: str
    trade: Any = None  # the live ib_async Trade, if the order is still working
    status: str | None = None  # last status of any order with this tag
    fills: list[FillView] = field(default_factory=list)

    @property
    def live(self) -> bool:
        return self.trade is not None


class IBBroker:
    """Broker over ib_async. One order per run; events arrive on a queue."""

    name = "ib"

    def __init__(self, connection: Connection, verbose: int = 0) -> None:
        from ib_async import IB

        _quiet_ib_async(verbose)
        self.conn = connection
        self.reconnect_sec = connection.reconnect_sec
        self.ib = IB()
        self.trade: Any = None
        self.contract: Any = None
        self.req: OrderRequest | None = None
        self.queue: asyncio.Queue[BrokerEvent | Exception] = asyncio.Queue()
        self.connect_errors: list[tuple[int, str]] = []
        self.pending: dict[str, _PendingFill] = {}
        self.sent_fills: set[str] = set()
        self.commission = 0.0
        self.closing = False
        self.cancel_wanted = False
        self.refused = asyncio.Event()
        self.reconnecting: asyncio.Task[None] | None = None

    def now_ns(self) -> int:
        return time.time_ns()

    @property
    def where(self) -> str:
        return f"{self.conn.host}:{self.conn.port}"

    # --- connection -------------------------------------------------------------

    async def connect(self) -> SessionInfo:
        await self._connect(self.conn.timeout_sec)
        self._check_connect_errors()
        self.ib.disconnectedEvent += self._on_disconnect
        return SessionInfo(accounts=tuple(self.ib.managedAccounts()),
                           server_version=self.ib.client.serverVersion())

    async def _connect(self, timeout: float) -> None:
        self.connect_errors.clear()
        self.ib.errorEvent += self._on_connect_error
        try:
            await self._connect_or_refused(timeout)
        except ConnectionRefusedError:
            raise GatewayError(
                f"cannot connect to {self.where}: connection refused",
                "is TWS/IB Gateway running with the API enabled on that port? paper TWS 7497, "
                "live 7496, Gateway 4002/4001; set IB_GATEWAY_HOST/IB_GATEWAY_PORT") from None
        except TimeoutError:
            raise self._timeout_error(timeout) from None
        except OSError as e:  # includes ConnectionError("Not connected") after a 326 close
            if self._client_id_refused():
                raise self._timeout_error(timeout) from None
            raise GatewayError(f"cannot connect to {self.where}: {e.strerror or e}",
                               "check IB_GATEWAY_HOST and IB_GATEWAY_PORT") from None
        finally:
            self.ib.errorEvent -= self._on_connect_error

    async def _connect_or_refused(self, timeout: float) -> None:
        """connectAsync, but give up at once on 326 (ib_async would wait out its timeout)."""
        c = self.conn
        self.refused.clear()
        connecting = asyncio.ensure_future(
            self.ib.connectAsync(c.host, c.port, clientId=c.client_id, timeout=timeout))
        refused = asyncio.ensure_future(self.refused.wait())
        try:
            await asyncio.wait({connecting, refused}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            refused.cancel()
        if not connecting.done():
            connecting.cancel()
            self.ib.disconnect()
            raise TimeoutError
        connecting.result()

    def _on_connect_error(self, req_id: int, code: int, text: str, contract: Any) -> None:
        self.connect_errors.append((code, text))
        if code == CLIENT_ID_IN_USE:
            self.refused.set()

    def _client_id_refused(self) -> bool:
        return any(code == CLIENT_ID_IN_USE for code, _ in self.connect_errors)

    def _timeout_error(self, timeout: float) -> GatewayError:
        if self._client_id_refused():
            return GatewayError(
                f"client id {self.conn.client_id} is already in use at {self.where}",
                "set IB_CLIENT_ID to another number, or close the other client")
        return GatewayError(
            f"no API handshake from {self.where} within {timeout:g} s",
            "is it an IB API port (not the web/FIX port)? is the gateway logged in? "
            "is 127.0.0.1 in its Trusted IPs?")

    def _check_connect_errors(self) -> None:
        if any(code == READ_ONLY for code, _ in self.connect_errors):
            self.ib.disconnect()
            raise GatewayError(f"{self.where} answered 321: the API is in Read-Only mode; "
                               "nothing was sent", READ_ONLY_HINT)

    async def handshake(self) -> SessionInfo:
        """Connect, read accounts and the gateway's clock, disconnect."""
        try:
            info = await self.connect()
            server_time = await asyncio.wait_for(self.ib.reqCurrentTimeAsync(), 5)
            return SessionInfo(info.accounts, info.server_version,
                               int(server_time.timestamp() * 1e9))
        finally:
            await self.close()

    async def close(self) -> None:
        self.closing = True
        if self.reconnecting is not None:
            self.reconnecting.cancel()
        for pending in self.pending.values():
            pending.timer.cancel()
        if self.ib.isConnected():
            self.ib.disconnect()

    # --- reconnect --------------------------------------------------------------

    def _on_disconnect(self) -> None:
        if self.closing or self.reconnecting is not None:
            return
        self._flush_all()
        if self.req is None:
            return
        self.reconnecting = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        """Retry with backoff for `reconnect_sec`; then find the order again and go on."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.reconnect_sec
        delay = 0.1
        while True:
            left = give_up - loop.time()
            if left <= 0:
                return self._lost()
            with contextlib.suppress(GatewayError):
                await self._connect(max(0.5, min(self.conn.timeout_sec, left)))
                break
            await asyncio.sleep(min(delay, max(0.0, give_up - loop.time())))
            delay = min(delay * 2, 2.0)
        self.reconnecting = None
        await self._reconcile()

    def _lost(self) -> None:
        self.reconnecting = None
        tag = self.req.tag if self.req else "?"
        self.queue.put_nowait(GatewayError(
            f"connection to {self.where} lost and not restored within {self.reconnect_sec:g} s; "
            f"order {tag} may still be live at IB", RECOVER_HINT))

    async def _reconcile(self) -> None:
        """After a reconnect: record what happened meanwhile, re-attach to the live order."""
        assert self.req is not None
        view = await self.view(self.req.tag)
        for f in view.fills:
            if f.exec_id not in self.sent_fills:
                self.sent_fills.add(f.exec_id)
                self.commission += f.commission or 0.0
                self._emit_fill(f)
        if view.live:
            self._attach(view.trade)
            if self.cancel_wanted:
                self.ib.cancelOrder(view.trade.order)
        elif view.status in CANCEL_STATUSES:
            self._emit(Ev.CANCEL, fill_qty=_cum(view), message="cancelled while disconnected")
        elif view.status == "Inactive":
            self._emit(Ev.REJ, message="inactive at the broker after reconnect")
        elif view.status is None:
            self._emit(Ev.CANCEL, fill_qty=0.0,
                       message="not at the broker after reconnect: it never arrived")

    async def view(self, tag: str) -> OrderView:
        """The gateway's view of `tag`: open orders of every client, executions with their
        commissions, completed orders."""
        from ib_async import ExecutionFilter

        timeout = self.conn.timeout_sec
        trades = list(await asyncio.wait_for(self.ib.reqAllOpenOrdersAsync(), timeout))
        trades += await asyncio.wait_for(self.ib.reqCompletedOrdersAsync(apiOnly=True), timeout)
        await asyncio.wait_for(self.ib.reqExecutionsAsync(ExecutionFilter()), timeout)
        view = OrderView(tag)
        for t in trades + list(self.ib.trades()):
            if t.order.orderRef != tag:
                continue
            view.status = t.orderStatus.status or view.status
            if t.orderStatus.status not in DONE_STATUSES and t.order.orderId:
                view.trade = view.trade or t
        fills = {f.execution.execId: f for f in self.ib.fills() if f.execution.orderRef == tag}
        view.fills = sorted((_fill_view(f) for f in fills.values()),
                            key=lambda f: (f.cum_qty, f.ts_ns))
        if view.fills and view.status is None:
            view.status = "Filled" if not view.trade else view.status
        return view

    # --- orders -----------------------------------------------------------------

    async def qualify(self, order: OrderRequest) -> None:
        from ib_async import Contract

        contract = Contract(secType=order.sec_type, symbol=order.symbol,
                            exchange=order.exchange, currency=order.currency)
        self.ib.errorEvent += self._on_connect_error
        try:
            found = await asyncio.wait_for(self.ib.qualifyContractsAsync(contract),
                                           self.conn.timeout_sec)
        except TimeoutError:
            raise GatewayError(f"no contract details for {order.symbol} within "
                               f"{self.conn.timeout_sec:g} s", "is the gateway connected "
                               "to IB's servers (sec-def farm)?") from None
        finally:
            self.ib.errorEvent -= self._on_connect_error
        if not found or found[0] is None:
            raise GatewayError(
                f"unknown contract {order.symbol} {order.sec_type} {order.exchange} "
                f"{order.currency} (IB error {NO_SECURITY}: no security definition)",
                "check the symbol, sec_type, exchange and currency in the spec")
        self.contract = found[0]

    async def place(self, order: OrderRequest) -> None:
        self.req = order
        self._attach(self.ib.placeOrder(self.contract, _ib_order(order)))

    def _attach(self, trade: Any) -> None:
        self.trade = trade
        trade.statusEvent += self._on_status
        trade.fillEvent += self._on_fill
        trade.commissionReportEvent += self._on_commission

    async def cancel(self, tag: str) -> None:
        if self.trade is None:
            return
        self.cancel_wanted = True
        if self.ib.isConnected():
            self.ib.cancelOrder(self.trade.order)
        elif self.reconnecting is None:
            raise GatewayError(f"cannot cancel {tag}: not connected", RECOVER_HINT)
        # else: sent as soon as the connection is back (see _reconcile)

    async def next_event(self, deadline_ns: int) -> BrokerEvent | None:
        timeout = max(0.0, (deadline_ns - time.time_ns()) / 1e9)
        try:
            item = await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None
        if isinstance(item, Exception):
            raise item
        return item

    # --- ib_async events -> BrokerEvents -----------------------------------------

    def _on_status(self, trade: Any) -> None:
        if trade is not self.trade:
            return  # an old Trade object from before a reconnect
        status = trade.orderStatus.status
        code, text = _last_log(trade)
        if status in ACK_STATUSES:
            self._emit(Ev.ACK)
        elif status == "ValidationError" and code == READ_ONLY:
            self._emit(Ev.REJ, message=f"{code} {text} ({READ_ONLY_HINT})")
        elif status in CANCEL_STATUSES:
            self._on_cancelled(trade, code, text)
        elif status == "Inactive":
            self._emit(Ev.REJ, message=f"{code} {text}" if code else "Inactive")

    def _on_cancelled(self, trade: Any, code: int, text: str) -> None:
        if code == FILLED_ON_CANCEL:
            return  # ib_async calls it Cancelled; it filled, and the execution is on its way
        if code in CANCEL_CODES or code == NOT_FOUND_ON_CANCEL:
            self._flush_all()
            self._emit(Ev.CANCEL, fill_qty=float(trade.orderStatus.filled),
                       message=f"{code} {text}".strip() if code else "")
        else:  # 201 rejected, 103 duplicate id, ...: IB refused the order
            self._emit(Ev.REJ, message=f"{code} {text}")

    def _on_fill(self, trade: Any, fill: Any) -> None:
        exec_id = fill.execution.execId
        if exec_id in self.sent_fills or exec_id in self.pending:
            return
        loop = asyncio.get_running_loop()
        timer = loop.call_later(COMMISSION_WAIT_SEC, self._flush, exec_id)
        self.pending[exec_id] = _PendingFill(fill, timer)
        if fill.commissionReport and fill.commissionReport.execId == exec_id:
            self._on_commission(trade, fill, fill.commissionReport)

    def _on_commission(self, trade: Any, fill: Any, report: Any) -> None:
        exec_id = fill.execution.execId
        if exec_id in self.pending:
            self.commission += float(report.commission or 0.0)
            self._flush(exec_id)

    def _flush_all(self) -> None:
        for exec_id in list(self.pending):
            self._flush(exec_id)

    def _flush(self, exec_id: str) -> None:
        pending = self.pending.pop(exec_id, None)
        if pending is None:
            return
        pending.timer.cancel()
        self.sent_fills.add(exec_id)
        self._emit_fill(_fill_view(pending.fill))

    def _emit_fill(self, f: FillView) -> None:
        assert self.req is not None
        kind = Ev.FILL if f.cum_qty >= self.req.qty - 1e-9 else Ev.PARTIAL
        self._emit(kind, fill_qty=f.cum_qty, last_qty=f.qty, last_px=f.px, avg_px=f.avg_px,
                   commission=self.commission or None, exec_id=f.exec_id)

    def _emit(self, kind: Ev, **fields: Any) -> None:
        """Queue an event stamped with its arrival time (IB's execution times have 1 s
        resolution and come from another clock; the ledger keeps one clock per run)."""
        assert self.req is not None
        order = self.trade.order if self.trade is not None else None
        self.queue.put_nowait(BrokerEvent(
            kind=kind, ts_ns=time.time_ns(), tag=self.req.tag,
            order_id=(order.orderId or None) if order else None,
            perm_id=(order.permId or None) if order else None, **fields))

    # --- previews and facts for the gates (plan --broker, pre_place) -----------------

    async def what_if(self, order: OrderRequest) -> WhatIf:
        """IB's what-if preview of the order (margin, commission, warning); IB creates no
        order. After `qualify`."""
        failed: list[tuple[int, str]] = []
        refused = asyncio.Event()

        def on_error(req_id: int, code: int, text: str, contract: Any) -> None:
            if req_id > 0:  # the what-if is the only request in flight with an id
                failed.append((code, text))
                refused.set()

        self.ib.errorEvent += on_error
        try:
            state = await self._first(self.ib.whatIfOrderAsync(self.contract, _ib_order(order)),
                                      refused.wait())
        finally:
            self.ib.errorEvent -= on_error
        if failed or state is None:
            code, text = failed[0] if failed else (0, "no answer")
            hint = READ_ONLY_HINT if code == READ_ONLY else "check the order and the account"
            raise GatewayError(f"IB refused the what-if of {order.tag}: {code} {text}", hint)
        return _what_if_value(state)

    async def _first(self, wanted: Any, failure: Any) -> Any:
        """`wanted`'s result, or None if `failure` comes first; GatewayError on timeout."""
        want, fail = asyncio.ensure_future(wanted), asyncio.ensure_future(failure)
        done, _ = await asyncio.wait({want, fail}, timeout=self.conn.timeout_sec,
                                     return_when=asyncio.FIRST_COMPLETED)
        for task in (want, fail):
            task.cancel()  # a no-op on the one that is done
        if not done:
            raise GatewayError(f"no what-if answer from {self.where} within "
                               f"{self.conn.timeout_sec:g} s", "is the gateway logged in?")
        return want.result() if want in done else None

    async def liquid_sessions(self) -> tuple[tuple[int, int], ...] | None:
        """The qualified contract's liquid (regular) trading sessions, [start, end) ns,
        from IB's contract details; None if IB gave none we can read."""
        try:
            details = await asyncio.wait_for(self.ib.reqContractDetailsAsync(self.contract),
                                             self.conn.timeout_sec)
        except (TimeoutError, ConnectionError):
            return None  # unknown hours: the gate is skipped, the order's own errors remain
        if not details:
            return None
        return parse_hours(details[0].liquidHours, details[0].timeZoneId)


@dataclass
class _PendingFill:
    fill: Any
    timer: asyncio.TimerHandle


def _fill_view(fill: Any) -> FillView:
    ex, report = fill.execution, fill.commissionReport
    commission = float(report.commission) if report and report.execId == ex.execId else None
    return FillView(exec_id=ex.execId, ts_ns=int(fill.time.timestamp() * 1e9),
                    qty=float(ex.shares), px=float(ex.price), cum_qty=float(ex.cumQty),
                    avg_px=float(ex.avgPrice), commission=commission,
                    order_id=ex.orderId or None, perm_id=ex.permId or None)


def _cum(view: OrderView) -> float:
    return max((f.cum_qty for f in view.fills), default=0.0)


def _last_log(trade: Any) -> tuple[int, str]:
    if not trade.log:
        return 0, ""
    entry = trade.log[-1]
    text = entry.message.split(": ", 1)[-1] if entry.errorCode else entry.message
    return int(entry.errorCode or 0), text


def _ib_order(o: OrderRequest) -> Any:
    from ib_async import Order

    order = Order(action=o.side, totalQuantity=o.qty, orderType=o.order_type, tif=o.tif,
                  orderRef=o.tag, outsideRth=o.outside_rth)
    if o.limit is not None:
        order.lmtPrice = o.limit
    if o.good_till_ns is not None:
        order.goodTillDate = gtd_string(o.good_till_ns)
    if o.account:
        order.account = o.account
    return order


def gtd_string(t_ns: int) -> str:
    """IB's goodTillDate in UTC: `yyyyMMdd-HH:mm:ss`."""
    return datetime.fromtimestamp(t_ns // 1_000_000_000, UTC).strftime("%Y%m%d-%H:%M:%S")


def _quiet_ib_async(verbose: int) -> None:
    """ib_async logs every error and warning; runner prints one line of its own instead."""
    level = logging.INFO if verbose > 1 else logging.WARNING if verbose else logging.CRITICAL
    logging.getLogger("ib_async").setLevel(level)


def _what_if_value(state: Any) -> WhatIf:
    """ib_async's OrderState (IB's strings; 1.7976931348623157E308 = unset) -> WhatIf."""
    from runner.whatif import WhatIf

    n = _ib_number
    return WhatIf(
        init_margin_before=n(state.initMarginBefore), init_margin_change=n(state.initMarginChange),
        init_margin_after=n(state.initMarginAfter), maint_margin_before=n(state.maintMarginBefore),
        maint_margin_change=n(state.maintMarginChange),
        maint_margin_after=n(state.maintMarginAfter),
        equity_with_loan_before=n(state.equityWithLoanBefore),
        equity_with_loan_change=n(state.equityWithLoanChange),
        equity_with_loan_after=n(state.equityWithLoanAfter), commission=n(state.commission),
        min_commission=n(state.minCommission), max_commission=n(state.maxCommission),
        currency=state.commissionCurrency or "", warning=state.warningText or "",
    )


def _ib_number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if x >= IB_UNSET or x != x else x


def parse_hours(text: str, tz_id: str) -> tuple[tuple[int, int], ...] | None:
    """IB's liquidHours (`20250106:0930-20250106:1600;20250111:CLOSED`, in the contract's
    timeZoneId) -> sessions as [start, end) ns UTC; None if unreadable."""
    try:
        tz = ZoneInfo(tz_id)
        sessions = []
        for part in filter(None, (text or "").split(";")):
            if part.endswith(":CLOSED"):
                continue
            start, end = part.split("-")
            sessions.append((_ib_local_ns(start, tz), _ib_local_ns(end, tz)))
    except (ValueError, ZoneInfoNotFoundError):
        return None
    return tuple(sessions) if text else None


def _ib_local_ns(text: str, tz: ZoneInfo) -> int:
    local = datetime.strptime(text, "%Y%m%d:%H%M").replace(tzinfo=tz)
    return int(local.timestamp()) * 1_000_000_000
