"""What the fake gateway does with an order: a script of small steps.

A test registers a script for an orderRef (or a default one) with
`gateway.script(ref, steps, on_cancel=...)`. Steps run in order, each after its
own `delay` (seconds, wall clock), until the order is done. A step may also be
written as a tuple naming it: `("ack",)`, `("fill", 5, 101.5)`, `("reject", "why")`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args


@dataclass(frozen=True, slots=True)
class Ack:
    """openOrder + orderStatus with `status` (Submitted or PreSubmitted)."""

    status: str = "Submitted"
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution: execDetails(-1), openOrder, orderStatus, commissionReport.

    The quantity is capped at what remains; the orderStatus says Filled when
    nothing remains, else Submitted. Repeat for partial fills.
    """

    qty: float
    px: float
    commission: float = 1.0
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Reject:
    """Error 201 `Order rejected - reason:<text>`, then orderStatus Inactive."""

    text: str
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Error:
    """An error with reqId = orderId (e.g. 103, 321, 399). The order's state is kept
    unless `final`, which ends it server side (Inactive, no orderStatus sent)."""

    code: int
    text: str
    delay: float = 0.0
    final: bool = False


@dataclass(frozen=True, slots=True)
class Delay:
    seconds: float


@dataclass(frozen=True, slots=True)
class DropBeforeAck:
    """Accept the order server side (Submitted) without telling the client, and close
    the client's socket. The order stays alive; later steps still run."""

    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class DropAfterAck:
    """Ack (openOrder + orderStatus Submitted), then close the client's socket."""

    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class FillAt:
    """A fill at an absolute wall time (ns): how bars mode schedules its fills."""

    wall_ns: int
    qty: float
    px: float
    commission: float | None = None  # None: IB fixed-rate pricing on the cumulative qty


@dataclass(frozen=True, slots=True)
class CancelAt:
    """The gateway cancels the rest of the order at a wall time (ns): IOC remainder."""

    wall_ns: int


Step = Ack | Fill | Reject | Error | Delay | DropBeforeAck | DropAfterAck | FillAt | CancelAt
OnCancel = Literal["ok", "ignore", "reject_filled"]
CANCEL_MODES: tuple[str, ...] = get_args(OnCancel)

_BY_NAME: dict[str, type] = {
    "ack": Ack, "fill": Fill, "reject": Reject, "error": Error, "delay": Delay,
    "drop_before_ack": DropBeforeAck, "drop_after_ack": DropAfterAck,
}


@dataclass(frozen=True, slots=True)
class Script:
    steps: tuple[Step, ...]
    on_cancel: OnCancel = "ok"

    def __post_init__(self) -> None:
        if self.on_cancel not in CANCEL_MODES:
            raise ValueError(f"on_cancel must be one of {CANCEL_MODES}, got {self.on_cancel!r}")


DEFAULT_SCRIPT = Script((Ack(),))  # no script, no bars: acknowledge and sit there


def as_step(step: Step | tuple[object, ...]) -> Step:
    """A step, or a tuple `(name, *args)` naming one (`("fill", 5, 101.5)`)."""
    if not isinstance(step, tuple):
        return step
    name, *args = step
    cls = _BY_NAME.get(str(name).lower())
    if cls is None:
        raise ValueError(f"unknown step {name!r}; known: {', '.join(_BY_NAME)}")
    made: Step = cls(*args)
    return made


def make_script(steps: Iterable[Step | tuple[object, ...]], on_cancel: str = "ok") -> Script:
    if on_cancel not in CANCEL_MODES:
        raise ValueError(f"on_cancel must be one of {CANCEL_MODES}, got {on_cancel!r}")
    return Script(tuple(as_step(s) for s in steps), on_cancel)  # type: ignore[arg-type]


def step_delay_s(step: Step, now_ns: int) -> float:
    """How long to wait before running `step`."""
    if isinstance(step, Delay):
        return step.seconds
    if isinstance(step, FillAt | CancelAt):
        return max(step.wall_ns - now_ns, 0) / 1e9
    return step.delay
