"""A fake IB gateway speaking the TWS API socket protocol (server version 178).

It lets the unmodified ib_async client, and so the `ib` broker, be tested
end to end over 127.0.0.1 without IB. Modules: `wire` (framing and the
messages it writes), `requests` (the requests it reads by field, e.g.
`place_order_fields`), `server` (FakeGateway: lifecycle, test surface,
connections), `session` (one connection), `handlers` (the answer to each
request), `orders` (the order engine running per-order scripts), `book`
(state that survives disconnects), `steps` (script steps), `scenario` (YAML
scenario files), `barclock` (bars mode), `marketdata` (quotes and 1 s
historical bars, from the bars or `set_quote`), `thread` (GatewayThread),
`cli` (`runner gateway`); the instruments: `instruments` (the table), `contracts`
(matching a request), `rules` (market rules), `hours`, `checks` (what an order is
refused for), `commissions`. How to make it misbehave like a real gateway:
docs/gateway-scripts.md; its instruments: docs/gateway-instruments.md.
"""

from __future__ import annotations

from runner.gateway.cli import main
from runner.gateway.requests import PlaceOrderFields, place_order_fields
from runner.gateway.scenario import load_scenario
from runner.gateway.server import FakeGateway
from runner.gateway.steps import (
    Ack,
    CancelAt,
    CancelPolicy,
    Correct,
    Delay,
    DropAfterAck,
    DropBeforeAck,
    Error,
    Fill,
    FillAt,
    Inactive,
    Outage,
    Reject,
    Restart,
    Script,
)
from runner.gateway.thread import GatewayThread
from runner.gateway.values import Execution, OrderSnapshot

__all__ = [
    "Ack",
    "CancelAt",
    "CancelPolicy",
    "Correct",
    "Delay",
    "DropAfterAck",
    "DropBeforeAck",
    "Error",
    "Execution",
    "FakeGateway",
    "Fill",
    "FillAt",
    "GatewayThread",
    "Inactive",
    "OrderSnapshot",
    "Outage",
    "PlaceOrderFields",
    "Reject",
    "Restart",
    "Script",
    "load_scenario",
    "main",
    "place_order_fields",
]
