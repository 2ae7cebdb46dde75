from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

# ---------------------------------------------------------------------------
# Fake IB gateway fixtures (runner/gateway; owner: the gateway engineer).
# Each gateway runs on its own event loop in a background thread, listening on
# 127.0.0.1 at a free port (`.port`), so the code under test may run its own
# loop in the test's thread or in a subprocess. Script orders with
# `gw.script(ref, [Ack(), Fill(...)], on_cancel=...)`; see runner/gateway/steps.py.
# ---------------------------------------------------------------------------


@pytest.fixture
def make_gateway() -> Iterator[Callable[..., Any]]:
    """Factory: `make_gateway(accounts=("U7654321",), read_only=True, bars=...)`."""
    from runner.gateway import GatewayThread

    started: list[GatewayThread] = []

    def make(*args: Any, **kwargs: Any) -> GatewayThread:
        gateway = GatewayThread(*args, **kwargs).start()
        started.append(gateway)
        return gateway

    yield make
    for gateway in reversed(started):
        gateway.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., Any]) -> Any:
    """A started fake gateway with the defaults (paper account DU1234567, no bars)."""
    return make_gateway()


# ----------------------------------------------------- end of gateway fixtures
