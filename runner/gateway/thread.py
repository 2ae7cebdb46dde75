"""GatewayThread: a FakeGateway on its own event loop in a background thread.

For synchronous tests and for code under test that runs its own loop in the
main thread (the runner CLI, the official ibapi client). The methods here are
thread-safe: each one hops onto the gateway's loop and waits for the answer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from runner.gateway.requests import PlaceOrderFields
from runner.gateway.server import FakeGateway, Received, Sent
from runner.gateway.steps import Step
from runner.gateway.values import Execution, OrderSnapshot, PlacedOrder

T = TypeVar("T")
_START_TIMEOUT_S = 10.0


class GatewayThread:
    """`with GatewayThread() as gt:` then connect to `gt.port` from any thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self.gateway: FakeGateway | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> GatewayThread:
        self._thread = threading.Thread(target=self._main, name="fake-gateway", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT_S):
            raise RuntimeError("fake gateway did not start")
        if self._failure is not None:
            raise self._failure
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        if self.gateway is not None:
            asyncio.run_coroutine_threadsafe(self.gateway.stop(), loop).result(_START_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_START_TIMEOUT_S)

    def __enter__(self) -> GatewayThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self.gateway = FakeGateway(*self._args, **self._kwargs)
            loop.run_until_complete(self.gateway.start())
        except BaseException as e:  # handed to the thread that called start()
            self._failure = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    # ------------------------------------------------------------ hopping

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 10.0) -> T:
        """Run a coroutine on the gateway's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._live_loop()).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call a plain function on the gateway's loop and wait for its result."""

        async def wrapped() -> T:
            return fn(*args, **kwargs)

        return self.run(wrapped())

    def _live_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self.gateway is None:
            raise RuntimeError("the gateway thread is not started")
        return self._loop

    def _gw(self) -> FakeGateway:
        if self.gateway is None:
            raise RuntimeError("the gateway thread is not started")
        return self.gateway

    # ------------------------------------------------------------ the gateway's surface

    @property
    def port(self) -> int:
        return self._gw().port

    @property
    def received(self) -> list[Received]:
        return self.call(lambda: list(self._gw().received))

    @property
    def what_ifs(self) -> list[PlacedOrder]:
        return self.call(lambda: list(self._gw().what_ifs))

    @property
    def sent(self) -> list[Sent]:
        return self.call(lambda: list(self._gw().sent))

    @property
    def executions(self) -> tuple[Execution, ...]:
        return self.call(lambda: self._gw().executions)

    @property
    def is_down(self) -> bool:
        return self.call(lambda: self._gw().is_down)

    def frames(self, msg_id: int) -> list[Received]:
        return self.call(self._gw().frames, msg_id)

    def place_orders(self) -> list[PlaceOrderFields]:
        return self.call(self._gw().place_orders)

    def sent_frames(self, msg_id: int, client_id: int | None = None) -> list[Sent]:
        return self.call(self._gw().sent_frames, msg_id, client_id)

    def script(self, order_ref: str | None, steps: Iterable[Step | tuple[Any, ...]],
               on_cancel: str = "ok", refuse_code: int = 161,
               refuse_state: str = "PendingCancel", refusals: int | None = None,
               duplicate: int = 1) -> None:
        self.call(self._gw().script, order_ref, list(steps), on_cancel, refuse_code,
                  refuse_state, refusals, duplicate)

    def set_cancel(self, order_ref: str, on_cancel: str = "ok", refuse_code: int = 161,
                   refuse_state: str = "PendingCancel", refusals: int | None = None) -> None:
        self.call(self._gw().set_cancel, order_ref, on_cancel, refuse_code, refuse_state,
                  refusals)

    def set_sync_delay(self, open_orders: float = 0.0, completed_orders: float = 0.0,
                       executions: float = 0.0, positions: float = 0.0) -> None:
        self.call(self._gw().set_sync_delay, open_orders, completed_orders, executions,
                  positions)

    def after_answer(self, msg_id: int, nth: int, action: Callable[[FakeGateway], Any]) -> None:
        self.call(self._gw().after_answer, msg_id, nth, action)

    def set_quote(self, symbol: str, last: float | None, bid: float | None = None,
                  ask: float | None = None, close: float | None = None) -> None:
        self.call(self._gw().set_quote, symbol, last, bid, ask, close)

    def outage(self, seconds: float, restored: int = 1102) -> None:
        self.run(self._gw().outage(seconds, restored))

    def restart(self, down: float = 0.5, lose_orders: bool = False,
                rollback_ids: bool = True) -> None:
        self.run(self._gw().restart(down, lose_orders, rollback_ids))

    def wait_up(self, timeout: float = 30.0) -> None:
        self.run(self._gw().wait_up(), timeout)

    def restore_orders(self) -> None:
        self.call(self._gw().restore_orders)

    def live_orders(self) -> list[OrderSnapshot]:
        return self.call(self._gw().live_orders)

    def wait_sent(self, msg_id: int, count: int = 1, timeout: float = 5.0,
                  client_id: int | None = None) -> list[Sent]:
        return self.run(self._gw().wait_sent(msg_id, count, timeout, client_id), timeout + 5.0)

    def fill(self, order_ref: str, qty: float, px: float, commission: float = 1.0) -> Execution:
        return self.run(self._gw().fill(order_ref, qty, px, commission))

    def cancel_from_server(self, order_ref: str) -> None:
        self.run(self._gw().cancel_from_server(order_ref))

    def notice(self, code: int, text: str | None = None) -> None:
        self.run(self._gw().notice(code, text))

    def orders_by_ref(self, order_ref: str) -> list[OrderSnapshot]:
        return self.call(self._gw().orders_by_ref, order_ref)

    def drop_all(self) -> None:
        self.run(self._gw().drop_all())

    def wait_for(self, msg_id: int, count: int = 1, timeout: float = 5.0) -> list[Received]:
        return self.run(self._gw().wait_for(msg_id, count, timeout), timeout + 5.0)
