"""The connection to the gateway: connect (failing fast on a client id in use), read-only
detection, reconnect with backoff, the background tasks a session owns, and taps on
the decoded order messages.

Why taps: ib_async 2.1.0 rewrites a trade's status on error codes (10349 makes it
Cancelled), drops a commission whose execution it has not seen yet, and forgets its
trades on a disconnect. runner reads each decoded orderStatus, execDetails,
commissionReport and error message as the gateway sent it, before ib_async's own
bookkeeping (which still runs, unchanged).

Every task the session starts is kept and awaited or cancelled on close; an error in
one reaches `on_error` (the broker queues it for the engine) instead of asyncio's
"Task exception was never retrieved".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from runner.errors import GatewayError
from runner.ib.codes import CLIENT_ID_IN_USE, READ_ONLY
from runner.plan import Connection

READ_ONLY_HINT = ("the gateway's API is read-only: in TWS/IB Gateway open Configure > API > "
                  "Settings and disable Read-Only API")


def hint_321(text: str) -> str:
    """What to do about IB's 321 ("Error validating request"), by its cause: the API in
    Read-Only mode, an account the login does not manage or did not name, or the order."""
    cause = text.lower()
    if "read-only" in cause:
        return READ_ONLY_HINT
    if "account" in cause:
        return ("name an account this gateway's login manages (order.account, --account); "
                "with several, one must be named")
    return "IB found the request invalid: check the order's fields and the account"


class Session:
    """One API client connection (one client id) and the tasks that serve it."""

    def __init__(self, connection: Connection, verbose: int = 0,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        from ib_async import IB

        quiet_ib_async(verbose)
        self.conn = connection
        self.ib = IB()
        self.connect_errors: list[tuple[int, str]] = []
        self.refused = asyncio.Event()
        self.closing = False
        self.on_error = on_error
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def where(self) -> str:
        return f"{self.conn.host}:{self.conn.port}"

    @property
    def connected(self) -> bool:
        return bool(self.ib.isConnected())

    @property
    def client_id(self) -> int:
        return self.conn.client_id

    def accounts(self) -> tuple[str, ...]:
        return tuple(self.ib.managedAccounts())

    def tap(self, listener: Listener) -> None:
        """Show `listener` every order message first (once per session object)."""
        wrapper = self.ib.wrapper
        for name in ("orderStatus", "execDetails", "commissionReport", "error"):
            original = getattr(wrapper, name)
            mine = getattr(listener, name)
            setattr(wrapper, name, _tee(mine, original, self))

    # --- owned tasks ------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None and self.on_error is not None and not self.closing:
            self.on_error(error)

    # --- connecting -------------------------------------------------------------------

    async def connect(self, timeout: float | None = None) -> None:
        timeout = self.conn.timeout_sec if timeout is None else timeout
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
        if any(code == READ_ONLY for code, _ in self.connect_errors):
            self.ib.disconnect()
            raise GatewayError(f"{self.where} answered 321: the API is in Read-Only mode; "
                               "nothing was sent", READ_ONLY_HINT)

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
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await connecting
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

    async def reconnect(self, within_sec: float) -> bool:
        """Retry with backoff for `within_sec`; True once connected again."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + within_sec
        delay = 0.1
        while not self.closing:
            left = give_up - loop.time()
            if left <= 0:
                return False
            with contextlib.suppress(GatewayError):
                await self.connect(max(0.5, min(self.conn.timeout_sec, left)))
                return True
            await asyncio.sleep(min(delay, max(0.0, give_up - loop.time())))
            delay = min(delay * 2, 2.0)
        return False

    def cancel(self, order_id: int) -> None:
        """cancelOrder on the wire only: ib_async's IB.cancelOrder also rewrites its trade's
        status locally (PendingCancel), which is not the broker speaking."""
        self.ib.client.cancelOrder(order_id, "")  # type: ignore[no-untyped-call]

    async def server_time_ns(self) -> int:
        server_time = await asyncio.wait_for(self.ib.reqCurrentTimeAsync(), 5)
        return int(server_time.timestamp() * 1e9)

    async def timed(self, what: str, request: Awaitable[Any]) -> Any:
        """A request with the connection's timeout; GatewayError naming it on expiry."""
        try:
            return await asyncio.wait_for(request, self.conn.timeout_sec)
        except TimeoutError:
            raise GatewayError(f"no answer to {what} from {self.where} within "
                               f"{self.conn.timeout_sec:g} s",
                               "is the gateway logged in and connected to IB?") from None

    async def close(self) -> None:
        self.closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.ib.isConnected():
            self.ib.disconnect()


class Listener(Protocol):
    def orderStatus(self, *args: Any) -> None: ...  # noqa: N802 - ib_async's names
    def execDetails(self, *args: Any) -> None: ...  # noqa: N802
    def commissionReport(self, *args: Any) -> None: ...  # noqa: N802
    def error(self, *args: Any) -> None: ...


def _tee(mine: Callable[..., None], original: Callable[..., Any],
         session: Session) -> Callable[..., Any]:
    def both(*args: Any) -> Any:
        try:
            mine(*args)
        except Exception as e:  # noqa: BLE001 - ours must not break ib_async's decoder
            if session.on_error is not None:
                session.on_error(e)
        return original(*args)
    return both


def quiet_ib_async(verbose: int) -> None:
    """ib_async logs every error and warning; runner prints one line of its own instead."""
    level = logging.INFO if verbose > 1 else logging.WARNING if verbose else logging.CRITICAL
    logging.getLogger("ib_async").setLevel(level)
