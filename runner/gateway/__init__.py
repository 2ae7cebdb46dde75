"""A fake IB gateway speaking the TWS API socket protocol (server version 178).

It lets the unmodified ib_async client, and so the `ib` broker, be tested
end to end over 127.0.0.1 without IB. Modules: `wire` (framing and message
layouts), `server` (FakeGateway: sessions and requests), `orders` (the order
engine running per-order scripts), `book` (state that survives disconnects),
`steps` (script steps), `barclock` (bars mode), `thread` (GatewayThread),
`cli` (`runner gateway`).
"""

from __future__ import annotations

from runner.gateway.cli import main
from runner.gateway.server import FakeGateway
from runner.gateway.steps import (
    Ack,
    Delay,
    DropAfterAck,
    DropBeforeAck,
    Error,
    Fill,
    Reject,
    Script,
)
from runner.gateway.thread import GatewayThread
from runner.gateway.values import Execution, OrderSnapshot

__all__ = [
    "Ack",
    "Delay",
    "DropAfterAck",
    "DropBeforeAck",
    "Error",
    "Execution",
    "FakeGateway",
    "Fill",
    "GatewayThread",
    "OrderSnapshot",
    "Reject",
    "Script",
    "main",
]
