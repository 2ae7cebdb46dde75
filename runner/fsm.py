"""The order state machine the engine runs: a transition table, and what the engine
knows of its one order.

A state is the last event that changed it. An end (FILL, CANCEL, REJ: `Ev.TERMINAL`)
comes only from the broker's order status; UNSETTLED and UNKNOWN (`Ev.OPEN_ENDED`) are
where the run stops watching an order that may still work (left for `runner recover`).
"""

from __future__ import annotations

from dataclasses import dataclass

from runner.broker import Ev, OrderRequest
from runner.errors import InvalidTransition as InvalidTransition  # its home is errors.py

_WORKING = (Ev.INTENT, Ev.ACK, Ev.PARTIAL)
TRANSITIONS: dict[tuple[Ev, Ev], Ev] = {
    (Ev.INTENT, Ev.ACK): Ev.ACK,
    (Ev.INTENT, Ev.PARTIAL): Ev.PARTIAL,  # an execution can overtake the status message
    (Ev.ACK, Ev.PARTIAL): Ev.PARTIAL,
    (Ev.PARTIAL, Ev.PARTIAL): Ev.PARTIAL,
    **{(s, end): end for s in _WORKING for end in Ev.TERMINAL},
    **{(s, left): left for s in _WORKING for left in Ev.OPEN_ENDED},
}
# Repeats that carry nothing new: not journaled, state unchanged.
IGNORED = frozenset({(Ev.ACK, Ev.ACK), (Ev.PARTIAL, Ev.ACK)})


@dataclass
class TrackedOrder:
    """What the engine knows of its one order."""

    req: OrderRequest
    intent_ns: int
    state: Ev = Ev.INTENT
    order_id: int | None = None
    perm_id: int | None = None
    client_id: int | None = None
    fill_qty: float = 0.0
    avg_px: float | None = None
    commission: float | None = None
    first_fill_ns: int | None = None
    end_ns: int | None = None
    message: str = ""
    placed: bool = False
    cancel_sent: bool = False
    cancel_refused: str = ""  # the broker's last refusal of our cancel

    @property
    def done(self) -> bool:
        return self.state in Ev.TERMINAL

    @property
    def stopped(self) -> bool:
        """Ended, or left for recover: the run watches it no longer."""
        return self.state in Ev.TERMINAL or self.state in Ev.OPEN_ENDED
