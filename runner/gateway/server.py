"""FakeGateway: an asyncio TCP server that speaks the TWS API at server version 178.

The unmodified ib_async client (and the official ibapi client) connect to it,
qualify stocks, place, modify and cancel orders and get acks, fills,
commissions and errors, as scripted per orderRef by the test. The wire facts it
follows are in TWS_PROTOCOL ("Handshake and what `connectAsync` needs" and on).
This module holds the gateway itself (lifecycle, the test surface, connections and
dispatch); the answers to each request are in `handlers`, a connection in `session`.

Loopback only unless `allow_remote=True`. Every frame a client sends is kept
in `received`, and every frame the gateway writes in `sent`, as (clientId,
fields), so tests can assert on what went over the wire; `place_orders()` names
the fields of each placeOrder received.

It can also misbehave the way real gateways do (TWS_PROTOCOL, "The real gateway
misbehaves"): refused cancels, duplicated messages, late or missing commissions,
execution corrections, connectivity outages that hold messages, restarts that roll
nextValidId back or forget orders, slow sync answers. See docs/gateway-scripts.md.

With bars (or a quote a test sets with `set_quote`) it answers market-data
snapshots and 1-second historical bars; without, 354 / 162 (docs/gateway-scripts.md,
"Market data").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from runner.errors import UsageError
from runner.gateway import wire
from runner.gateway.barclock import BarClock
from runner.gateway.book import Book
from runner.gateway.contracts import HOURS_MODES
from runner.gateway.handlers import HANDLERS, Handler
from runner.gateway.marketdata import Quote, check_price, quote_from_bars
from runner.gateway.orders import OrderEngine
from runner.gateway.requests import PlaceOrderFields, place_order_fields
from runner.gateway.session import Session, is_loopback
from runner.gateway.steps import CancelPolicy, Step, make_script
from runner.gateway.values import Execution, OrderSnapshot, PlacedOrder

if TYPE_CHECKING:
    from runner.bars import Bars

log = logging.getLogger("runner.gateway")

DEFAULT_ACCOUNT = "DU1234567"  # a paper account (U… would be a live one)
Received = tuple[int | None, tuple[str, ...]]
Sent = Received  # (clientId, fields) of a frame the gateway wrote

# The sync requests whose answers `sync_delay` can hold back, by message id.
SYNC_KINDS = ("open_orders", "completed_orders", "executions", "positions")
_SYNC_KIND = {"5": "open_orders", "16": "open_orders", "99": "completed_orders",
              "7": "executions", "61": "positions"}


class FakeGateway:
    """A fake IB gateway. `async with FakeGateway() as gw:` then connect to `gw.port`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        accounts: Iterable[str] = (DEFAULT_ACCOUNT,),
        bars: Bars | None = None,
        *,
        client_id_in_use: Iterable[int] = (),
        read_only: bool = False,
        bars_start_ns: int | None = None,
        speed: float = 1.0,
        participation: float = 0.10,
        first_order_id: int = 1,
        clock: Callable[[], int] = time.time_ns,
        allow_remote: bool = False,
        hours: str = "open",
        sync_delay: Mapping[str, float] | None = None,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise UsageError(f"refusing to listen on non-loopback host {host!r}",
                             "the fake gateway is for 127.0.0.1; pass --allow-remote to insist")
        if hours not in HOURS_MODES:
            raise UsageError(f"hours must be one of {', '.join(HOURS_MODES)}, got {hours!r}")
        self.hours = hours  # the contracts' liquid hours: open (always), regular, closed
        self.host = host
        self._port = port
        self.book = Book(tuple(accounts), first_order_id)
        self.bars = bars
        self.client_id_in_use = frozenset(client_id_in_use)
        self.read_only = read_only
        self.clock = clock
        self.received: list[Received] = []
        self.sent: list[Sent] = []
        self.sync_delay: dict[str, float] = dict.fromkeys(SYNC_KINDS, 0.0)
        if sync_delay:
            self.set_sync_delay(**sync_delay)
        self._down_until = 0.0  # loop time: until then a restart refuses connections
        self._later: set[asyncio.TimerHandle] = set()
        self._after_answer: dict[str, list[Any]] = {}  # msg id -> [answers left, action]
        self.what_ifs: list[PlacedOrder] = []  # what-if previews asked for (no order made)
        self._bars_start_ns = bars_start_ns
        self._speed = speed
        self.engine = OrderEngine(self.book, self, clock, participation=participation)
        self.quotes: dict[str, Quote] = {}  # set_quote: a symbol's quote, before the bars'
        self._sessions: dict[int, Session] = {}  # live sessions by clientId
        self._conns: set[Session] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._changed: asyncio.Future[None] | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the gateway is not started")
        return self._port

    @property
    def accounts(self) -> tuple[str, ...]:
        return self.book.accounts

    async def start(self) -> FakeGateway:
        if self.bars is not None:
            start = self._bars_start_ns if self._bars_start_ns is not None else self.clock()
            self.engine.bar_clock = BarClock(self.bars, start, self._speed)
        self._changed = asyncio.get_running_loop().create_future()
        self._server = await asyncio.start_server(self._serve, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("fake TWS gateway listening on %s:%d", self.host, self._port)
        return self

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        await self.engine.close()
        for handle in self._later:
            handle.cancel()
        self._later.clear()
        for session in list(self._conns):
            session.close()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=2)
        await self._server.wait_closed()

    async def __aenter__(self) -> FakeGateway:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ test surface

    def script(self, order_ref: str | None, steps: Iterable[Step | tuple[Any, ...]],
               on_cancel: str = "ok", refuse_code: int = 161,
               refuse_state: str = "PendingCancel", refusals: int | None = None,
               duplicate: int = 1) -> None:
        """What to do with orders whose orderRef is `order_ref` (None: any other order).

        on_cancel: "ok" | "ignore" | "reject_filled" | "refuse" (error `refuse_code`,
        161 / 10147 / 10148 with `refuse_state`; the order keeps working; `refusals`
        None refuses every cancel, N the first N). `duplicate`: every message about
        the order is sent that many times in a row.
        """
        self.engine.scripts[order_ref] = make_script(
            steps, on_cancel, refuse_code, refuse_state, refusals, duplicate)

    def set_cancel(self, order_ref: str, on_cancel: str = "ok", refuse_code: int = 161,
                   refuse_state: str = "PendingCancel", refusals: int | None = None) -> None:
        """Change how the working order(s) with this orderRef answer a cancel, now
        (e.g. let a refused cancel through). The refusal count starts again.
        LookupError if no such order is working."""
        policy = CancelPolicy(on_cancel, refuse_code, refuse_state,  # type: ignore[arg-type]
                              refusals)
        self.engine.set_cancel(order_ref, policy)

    def set_quote(self, symbol: str, last: float | None, bid: float | None = None,
                  ask: float | None = None, close: float | None = None) -> None:
        """The quote reqMktData shows for `symbol` from now on (before any from the bars):
        tickPrice LAST / BID / ASK / CLOSE for each one given. All None: no quote of its
        own again (the bars' if any, else 354). Prices are sent as given, IB's "no value"
        ones (-1, nan, 1.7976931348623157E308) included."""
        quote = Quote(last=check_price("last", last), bid=check_price("bid", bid),
                      ask=check_price("ask", ask), close=check_price("close", close))
        key = symbol.upper()
        if quote == Quote():
            self.quotes.pop(key, None)
            return
        self.quotes[key] = quote

    def quote(self, symbol: str) -> Quote | None:
        """What a market-data snapshot of `symbol` shows now (None: 354)."""
        own = self.quotes.get(symbol.upper())
        if own is not None:
            return own
        clock = self.engine.bar_clock
        return None if clock is None else quote_from_bars(clock, self.clock())

    def set_sync_delay(self, open_orders: float = 0.0, completed_orders: float = 0.0,
                       executions: float = 0.0, positions: float = 0.0) -> None:
        """Answer reqOpenOrders / reqAllOpenOrders, reqCompletedOrders, reqExecutions
        and reqPositions that many seconds late (the read loop keeps serving; the
        answer is made when it is sent)."""
        delays = {"open_orders": open_orders, "completed_orders": completed_orders,
                  "executions": executions, "positions": positions}
        for kind, seconds in delays.items():
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) \
                    or not 0 <= seconds < float("inf"):
                raise ValueError(f"sync delay {kind} must be a number >= 0, got {seconds!r}")
        self.sync_delay = {k: float(v) for k, v in delays.items()}

    async def outage(self, seconds: float, restored: int = wire.CONNECTIVITY_RESTORED) -> None:
        """Connectivity between the gateway and IB is lost for every client: 1100, every
        message held for `seconds` (sockets stay up), then `restored` (1102 or 1101) and
        the held messages in order. Returns at once."""
        self.client_outage(None, seconds, restored)

    async def restart(self, down: float = 0.5, lose_orders: bool = False,
                      rollback_ids: bool = True) -> None:
        """A gateway restart: every client socket closes; for `down` seconds new
        connections are closed at once. `rollback_ids`: nextValidId goes back to the
        first order id (reusing a known id gets 103). `lose_orders`: every order so far
        is hidden (working at IB, shown to no one) until `restore_orders()`."""
        self.restart_now(down, lose_orders, rollback_ids)
        await self._wait_handlers()

    def restore_orders(self) -> None:
        """The gateway knows its lost orders again (from now on; nothing is pushed)."""
        for record in self.book.orders.values():
            record.hidden = False

    @property
    def is_down(self) -> bool:
        """Whether a restart is still refusing connections."""
        return asyncio.get_running_loop().time() < self._down_until

    async def wait_up(self) -> None:
        """Return once a restart no longer refuses connections."""
        loop = asyncio.get_running_loop()
        while (left := self._down_until - loop.time()) > 0:
            await asyncio.sleep(left)

    def live_orders(self) -> list[OrderSnapshot]:
        """Every order still working, hidden ones included (`snapshot.hidden`)."""
        return [r.snapshot() for r in self.book.live()]

    async def fill(self, order_ref: str, qty: float, px: float,
                   commission: float = 1.0) -> Execution:
        """Fill the live order with this orderRef now, as the exchange would."""
        return self.engine.fill(order_ref, qty, px, commission)

    async def cancel_from_server(self, order_ref: str) -> None:
        """Cancel the live order with this orderRef from the IB side (Cancelled + 202)."""
        self.engine.cancel_from_server(order_ref)

    async def notice(self, code: int, text: str | None = None) -> None:
        """Tell every client something with reqId -1, e.g. 1100 / 1102 (connectivity)."""
        fields = wire.error(wire.NO_REQ_ID, code,
                            wire.ERROR_TEXT.get(code, "") if text is None else text)
        for session in self._sessions.values():
            session.send(fields)

    def orders_by_ref(self, order_ref: str) -> list[OrderSnapshot]:
        return [r.snapshot() for r in self.book.by_ref(order_ref)]

    @property
    def executions(self) -> tuple[Execution, ...]:
        return tuple(self.book.executions)

    async def drop_all(self) -> None:
        """Close every client connection at once, as a gateway restart would."""
        self._close_all()
        await self._wait_handlers()

    def _close_all(self) -> None:
        for session in list(self._conns):
            self._forget(session)
            session.close()

    async def _wait_handlers(self) -> None:
        tasks = [t for t in self._handlers if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=2)

    def frames(self, msg_id: int) -> list[Received]:
        """Frames with this message id that clients sent."""
        return [r for r in self.received if r[1] and r[1][0] == str(msg_id)]

    def place_orders(self) -> list[PlaceOrderFields]:
        """Every placeOrder (3) a client sent, what-ifs and refused ones too, in order:
        its fields by name, as sent."""
        return [place_order_fields(fields) for _, fields in self.frames(3)]

    def sent_frames(self, msg_id: int, client_id: int | None = None) -> list[Sent]:
        """Frames with this message id that the gateway wrote (to one client id)."""
        return [r for r in self.sent if r[1] and r[1][0] == str(msg_id)
                and client_id in (None, r[0])]

    async def wait_for(self, msg_id: int, count: int = 1,
                       timeout: float = 5.0) -> list[Received]:
        """Wait until `count` frames with this message id have arrived; return them."""
        return await self._wait(lambda: self.frames(msg_id), count, timeout,
                                f"frames with msg id {msg_id}")

    async def wait_sent(self, msg_id: int, count: int = 1, timeout: float = 5.0,
                        client_id: int | None = None) -> list[Sent]:
        """Wait until the gateway has written `count` frames with this message id."""
        return await self._wait(lambda: self.sent_frames(msg_id, client_id), count, timeout,
                                f"sent frames with msg id {msg_id}")

    async def _wait(self, found: Callable[[], list[Received]], count: int, timeout: float,
                    what: str) -> list[Received]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(now := found()) < count:
            left = deadline - loop.time()
            if left <= 0 or self._changed is None:
                raise TimeoutError(f"{len(now)} of {count} {what} after {timeout} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._changed), left)
        return now[:count]

    # ------------------------------------------------------------ Outbox

    def send(self, client_id: int, fields: list[str]) -> None:
        session = self._sessions.get(client_id)
        if session is not None:
            session.send(fields)

    def drop(self, client_id: int) -> None:
        session = self._sessions.get(client_id)
        if session is not None:
            self._forget(session)  # gone at once, so a quick reconnect is not a 326
            session.close()

    def client_outage(self, client_id: int | None, seconds: float,
                      restored: int = wire.CONNECTIVITY_RESTORED,
                      lose_held: bool = False) -> None:
        """1100 now to the sessions of `client_id` (None: all), hold what they are
        sent for `seconds`, then `restored` and the held messages (`lose_held`: not
        those, which only a resync of the book shows again). A second outage during one
        extends it (one 1100, one restore, at the later end)."""
        if restored not in (wire.CONNECTIVITY_RESTORED, wire.CONNECTIVITY_RESTORED_DATA_LOST):
            raise ValueError(f"restored must be 1101 or 1102, got {restored!r}")
        for session in list(self._sessions.values()):
            if client_id is not None and session.client_id != client_id:
                continue
            if session.held is None:
                session.write(wire.ib_error(wire.NO_REQ_ID, wire.CONNECTIVITY_LOST))
                session.held = []
            session.outage_token += 1
            self._call_later(seconds, self._end_outage, session, session.outage_token,
                             restored, lose_held)

    def _end_outage(self, session: Session, token: int, restored: int,
                    lose_held: bool = False) -> None:
        if session.outage_token != token or session.held is None:
            return  # a later outage took over
        held, session.held = session.held, None
        session.write(wire.ib_error(wire.NO_REQ_ID, restored))
        for fields in [] if lose_held else held:
            session.write(fields)

    def restart_now(self, down: float, lose_orders: bool, rollback_ids: bool) -> None:
        if lose_orders:
            for record in self.book.orders.values():
                record.hidden = True
        if rollback_ids:
            self.book.next_order_id = self.book.first_order_id
        loop = asyncio.get_running_loop()
        self._down_until = max(self._down_until, loop.time() + down)
        self._close_all()

    def _call_later(self, seconds: float, fn: Callable[..., None], *args: Any) -> None:
        def fire() -> None:
            self._later.discard(handle)
            fn(*args)

        handle = asyncio.get_running_loop().call_later(seconds, fire)
        self._later.add(handle)

    # ------------------------------------------------------------ connections

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        session = Session(reader, writer, self._record_sent)
        if self.is_down:  # restarting: the port takes the connection and closes it
            session.close()
            self._handlers.discard(task)
            return
        self._conns.add(session)
        try:
            if await self._handshake(session):
                await self._read_loop(session)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError) as e:
            log.debug("connection ended: %r", e)
        finally:
            self._forget(session)
            session.close()
            self._handlers.discard(task)

    async def _handshake(self, session: Session) -> bool:
        if await session.reader.readexactly(len(wire.GREETING)) != wire.GREETING:
            return False
        version = wire.negotiate(await wire.read_payload(session.reader))
        if version is None:
            log.warning("client does not speak server version %d; closing", wire.SERVER_VERSION)
            return False
        session.send(wire.handshake_reply(self.clock()))
        return True

    async def _read_loop(self, session: Session) -> None:
        while True:
            fields = wire.split_fields(await wire.read_payload(session.reader))
            if not fields:
                continue
            if fields[0] == "71":  # startApi carries the clientId
                session.client_id = wire.opt_int(fields[2] if len(fields) > 2 else "", -1)
            self._record(session.client_id, fields)
            self._dispatch(session, fields)

    def _record(self, client_id: int | None, fields: list[str]) -> None:
        self.received.append((client_id, tuple(fields)))
        self._wake()

    def _record_sent(self, client_id: int | None, fields: list[str]) -> None:
        self.sent.append((client_id, tuple(fields)))
        self._wake()

    def _wake(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = asyncio.get_running_loop().create_future()

    def _forget(self, session: Session) -> None:
        self._conns.discard(session)
        cid = session.client_id
        if cid is not None and self._sessions.get(cid) is session:
            del self._sessions[cid]

    def _dispatch(self, session: Session, fields: list[str]) -> None:
        if fields[0] == "71":
            self._start_api(session)
            return
        handler = HANDLERS.get(fields[0])
        if handler is None:
            return  # recorded, otherwise ignored, like a gateway ignoring what it cannot do
        if session.client_id is None:
            return  # nothing is served before startApi
        delay = self.sync_delay.get(_SYNC_KIND.get(fields[0], ""), 0.0)
        if delay > 0:  # a slow sync: answered later, made when sent
            self._call_later(delay, self._handle, handler, session, fields)
            return
        self._handle(handler, session, fields)

    def _handle(self, handler: Handler, session: Session, fields: list[str]) -> None:
        try:
            handler(self, session, fields)
        except (ValueError, IndexError) as e:
            log.warning("malformed %s message %s: %r", fields[0], fields, e)
        hook = self._after_answer.get(fields[0])
        if hook is not None:
            hook[0] -= 1
            if hook[0] == 0:
                del self._after_answer[fields[0]]
                hook[1](self)

    def after_answer(self, msg_id: int, nth: int, action: Callable[[FakeGateway], Any]) -> None:
        """Run `action(self)` right after the `nth` answer from now to requests `msg_id`:
        a change just after IB made an answer, which the client reads stale."""
        self._after_answer[str(msg_id)] = [nth, action]

    def _start_api(self, session: Session) -> None:
        """startApi (71), its clientId read by `_read_loop`: register the session, or 326."""
        cid = session.client_id
        if cid is None or cid in self.client_id_in_use or cid in self._sessions:
            session.send(wire.ib_error(wire.NO_REQ_ID, wire.CLIENT_ID_IN_USE))
            session.client_id = None  # never registered, so _forget leaves the holder alone
            session.close()
            return
        self._sessions[cid] = session
        session.send(wire.managed_accounts(self.accounts))
        session.send(wire.next_valid_id(self.book.next_order_id))
        for code, text in wire.FARM_NOTICES:
            session.send(wire.error(wire.NO_REQ_ID, code, text))
