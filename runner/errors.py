"""One error base; `cli.main` is the only place that catches it.

Each error carries its exit code (DESIGN §2) and prints as one line: the cause,
then a hint for the fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from runner.policy import Policy


class RunnerError(Exception):
    """Something the user can act on. `str()` is the one line we print."""

    exit_code = 1
    spec: str | None = None  # the spec (file, or file#N) it is about, where known
    tag: str | None = None  # the order's tag, where known
    document: dict[str, Any] | None = None  # --json: keys for the failure document

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def about(self, spec: str | None = None, tag: str | None = None, **document: Any) -> Self:
        """Say what the error is about, for `--json` (what is known first stays)."""
        self.spec = self.spec or spec
        self.tag = self.tag or tag
        self.document = {**document, **(self.document or {})}
        return self


class UsageError(RunnerError):
    exit_code = 2


class SpecError(RunnerError):
    """One or more problems in spec files; each line is `file:line:col: msg`."""

    exit_code = 2

    def __init__(self, lines: list[str], specs: int = 1, invalid: int = 1) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines
        self.specs = specs  # documents in the file
        self.invalid = invalid  # of which invalid


class DataError(RunnerError):
    """A bars file (or other input data) that cannot be used as it is."""

    exit_code = 2


class GatewayError(RunnerError):
    """Cannot reach, or refused by, the gateway."""

    exit_code = 3


class OrderRejected(RunnerError):
    exit_code = 4


class ExpectFailed(RunnerError):
    exit_code = 4


class LedgerError(RunnerError):
    """The ledger cannot be written or read safely."""

    exit_code = 1


class Stopped(RunnerError):
    """The kill switch was turned on while an order worked: it was cancelled."""

    exit_code = 1


class Interrupted(RunnerError):
    """Ctrl-C (130) or SIGTERM (143) during a run, after the cleanup."""

    def __init__(self, signum: int, outcome: str = "") -> None:
        name = {2: "Ctrl-C (SIGINT)", 15: "SIGTERM"}.get(signum, f"signal {signum}")
        super().__init__(f"interrupted by {name}" + (f"; {outcome}" if outcome else ""))
        self.exit_code = 128 + signum


# --- raised below the CLI: kept here so that every error class lives in one module --------


class Refused(RunnerError):
    """A gate said no. Nothing was sent and no ledger row was written."""

    exit_code = 2

    def __init__(self, spec: str, policy: Policy, reasons: list[str]) -> None:
        from runner.flags import for_source  # here: errors.py imports no runner module above

        reasons = [for_source(spec, r) for r in reasons]  # the classic flags' names
        lines = "\n".join(f"  - {r}" for r in reasons)
        super().__init__(f"{spec}: refused by {policy.name}; nothing was sent:\n{lines}")
        self.reasons = reasons


class NotQualified(RunnerError):
    """IB's answer to qualification does not name the spec's one instrument (several
    candidates; another symbol or multiplier). Nothing was sent and no ledger row was
    written: bad input, like a spec error."""

    exit_code = 2


class OffGrid(RunnerError):
    """A price off the instrument's price grid (IB's market rule) or a size it does not
    take (minSize, sizeIncrement), found at qualification with the nearest valid values
    (runner.grid). Nothing was sent and no ledger row was written: bad input."""

    exit_code = 2


class InvalidTransition(RunnerError):
    """An order event the FSM's table has no transition for (a bug, not a user error)."""

    exit_code = 1


class ScenarioError(UsageError):
    """A gateway scenario file that cannot be used: one line naming the file and key."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        at = f"{path}: {key}: " if key else f"{path}: "
        super().__init__(f"{at}{problem}".replace("\n", " "))  # always one line


class NotRegular(Exception):
    """The path exists but is not a regular file (a folder, a FIFO, a device, a dangling
    link): it is refused without being read. A signal for the reader's caller, which
    words the SpecError: not a RunnerError itself."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class TooBig(Exception):
    """The file is larger than the reader's limit (a signal, like NotRegular)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes")
        self.size = size
