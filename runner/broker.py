"""The one interface both brokers implement, and the values that cross it.

Times are integers: nanoseconds since the Unix epoch, UTC. The broker owns the
clock (`now_ns`), so the simulator can run on a virtual one and the executor
never reads the wall clock itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class Ev(enum.StrEnum):
    """Order events, as they appear in the ledger's `event` column."""

    INTENT = "INTENT"
    ACK = "ACK"
    REJ = "REJ"
    PARTIAL = "PARTIAL"
    FILL = "FILL"
    CANCEL = "CANCEL"
    PNL_SNAPSHOT = "PNL_SNAPSHOT"


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """Everything a broker needs to place one order; resolved by the plan."""

    tag: str  # IB's orderRef; our own key for the order
    symbol: str
    sec_type: str
    exchange: str
    currency: str
    side: str  # BUY | SELL
    qty: float
    order_type: str  # LMT | MKT
    limit: float | None
    tif: str  # DAY | IOC | GTC | GTD (GTD = the TTL backstop)
    good_till_ns: int | None = None  # GTD expiry, with tif == "GTD"
    outside_rth: bool = False
    account: str = ""


@dataclass(frozen=True, slots=True)
class BrokerEvent:
    """One thing the broker told us about an order.

    `fill_qty` is cumulative; `last_qty`/`last_px` describe the execution that
    caused a PARTIAL or FILL; `avg_px` is the average over all fills so far.
    """

    kind: Ev
    ts_ns: int
    tag: str
    order_id: int | None = None
    perm_id: int | None = None
    fill_qty: float = 0.0
    last_qty: float | None = None
    last_px: float | None = None
    avg_px: float | None = None
    commission: float | None = None  # cumulative commission, when known
    message: str = ""
    exec_id: str = ""  # the broker's execution id on PARTIAL/FILL, when it has one


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What the broker reports on connect."""

    accounts: tuple[str, ...]
    server_version: int | None = None
    server_time_ns: int | None = None


class Broker(Protocol):
    """A place orders go. `sim` and `ib` implement it."""

    name: str  # "sim" | "ib"

    def now_ns(self) -> int:
        """The broker's clock."""
        ...

    async def connect(self) -> SessionInfo: ...

    async def qualify(self, order: OrderRequest) -> None:
        """Check that the contract exists; raise GatewayError if not."""
        ...

    async def place(self, order: OrderRequest) -> None:
        """Send the order. Its fate arrives through `next_event`."""
        ...

    async def cancel(self, tag: str) -> None: ...

    async def next_event(self, deadline_ns: int) -> BrokerEvent | None:
        """The next event, or None once the broker clock reaches `deadline_ns`."""
        ...

    async def close(self) -> None: ...
