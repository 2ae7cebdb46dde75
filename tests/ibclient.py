"""The unmodified ib_async client against a fake gateway, for the gateway-level tests:
run a coroutine with a bound, connect, and wait for a condition packet by packet."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from ib_async import IB, LimitOrder, Stock


def run(coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@contextlib.asynccontextmanager
async def connected(gw: Any, client_id: int = 7, timeout: float = 3.0,
                    **kw: Any) -> AsyncIterator[IB]:
    """A connected IB() to `gw` (a FakeGateway or a GatewayThread) on 127.0.0.1."""
    ib = IB()
    await ib.connectAsync("127.0.0.1", gw.port, clientId=client_id, timeout=timeout, **kw)
    try:
        yield ib
    finally:
        ib.disconnect()


async def until(ib: IB, predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait until `predicate()` holds, re-checking after each packet ib_async handles."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        left = deadline - loop.time()
        if left <= 0:
            raise TimeoutError("condition not met")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ib.updateEvent, left)


def error_log(ib: IB) -> list[tuple[int, int, str]]:
    """Every error ib_async reports from now on, as (reqId, code, text)."""
    seen: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, text, contract: seen.append((req_id, code, text))
    return seen


async def place(ib: IB, ref: str, qty: float = 10, limit: float = 100.0, **kw: Any) -> Any:
    """A BUY limit order for SPY with this orderRef; its Trade."""
    [contract] = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
    return ib.placeOrder(contract, LimitOrder("BUY", qty, limit, orderRef=ref, **kw))
