"""The repository's pre-trade policy: `runner-policy.yaml`, found upward from a spec.

Read with the spec loader's machinery (safe YAML, marks, `file:line:col` errors),
checked against `schemas/policy.schema.json`, frozen into a `Policy`. Without a
policy file runner uses `DEFAULT`, which keeps the behaviour runner had before
policies: only the sanity-cancel distance (5%) is enforced.

A spec's `limits` can only tighten the policy; a key that loosens it is an error
naming both files and lines. Cheap to import: `validate` and `plan` use it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import SpecError, UsageError
from runner.spec import (
    Mark,
    Path_,
    Spec,
    _Doc,
    _parse,
    _read_text,
    schema_checked,
)

POLICY_FILE = "runner-policy.yaml"
SCHEMA_PATH = Path(__file__).parent / "schemas" / "policy.schema.json"
SANITY_MIN_DISTANCE_BPS = 500.0  # a sanity-cancel limit 5% through the market cannot fill
PAPER_PORTS = (7497, 4002)  # paper TWS, paper IB Gateway
LIVE_PORTS = (7496, 4001)  # live TWS, live IB Gateway
TIGHTEN_ONLY = ("max_qty", "max_notional")  # spec `limits` keys the policy also caps


@dataclass(frozen=True, slots=True)
class Policy:
    source: str | None  # the file as runner shows it; None: the built-in default
    symbols: tuple[str, ...] | None = None  # None: any
    sec_types: tuple[str, ...] | None = None
    max_qty: float | None = None
    max_notional: float | None = None
    max_day_notional: float | None = None
    max_day_orders: int | None = None
    max_slippage_bps: float | None = None
    max_reference_age_sec: float | None = None
    require_reference: bool = False
    min_sanity_distance_bps: float = SANITY_MIN_DISTANCE_BPS
    allow_market: bool = True
    allow_live: bool = True
    kill_switch: str | None = None  # resolved against the policy file's folder
    paper_ports: tuple[int, ...] = PAPER_PORTS
    live_ports: tuple[int, ...] = LIVE_PORTS
    marks: Mapping[str, Mark] = field(default_factory=dict, compare=False)  # key -> value

    @property
    def name(self) -> str:
        return self.source or "the built-in policy"

    def where(self, key: str) -> str:
        """`runner-policy.yaml:5:10` for a key's value, for messages."""
        mark = self.marks.get(key, Mark(1, 1))
        return f"{self.name}:{mark.line}:{mark.col}"

    @property
    def needs_day_totals(self) -> bool:
        return self.max_day_orders is not None or self.max_day_notional is not None


# No file: what runner did before policies. Market and live orders stay behind
# their spec-level keys (allow_market, mode: live + --live).
DEFAULT = Policy(source=None)




# --- finding -----------------------------------------------------------------------


def find(start: Path) -> Path | None:
    """The nearest runner-policy.yaml in `start` or above it, stopping at the repository
    root (a folder with .git), so a stray file far above a project is never picked up."""
    folder = start.resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / POLICY_FILE).is_file():
            return candidate / POLICY_FILE
        if (candidate / ".git").exists():
            return None
    return None


def for_spec(source: str, explicit: str | None = None) -> Policy:
    """The policy that governs a spec file (or, for a spec built in memory, the working
    directory): `--policy` if given, else the nearest file upward, else DEFAULT."""
    path = locate(source, explicit)
    return load(path) if path else DEFAULT


def locate(source: str, explicit: str | None = None) -> str | None:
    """The policy file for a spec, as the user would type it; None: no policy file."""
    if explicit:
        if not Path(explicit).is_file():
            raise UsageError(f"--policy {explicit}: no such file")
        return explicit
    found = find(Path.cwd() if source.startswith("<") else Path(source).parent)
    return _shown(found) if found else None


def governing(spec: Spec, explicit: str | None = None) -> Policy:
    """The spec's policy, after checking that the spec's limits do not loosen it."""
    policy = for_spec(spec.source, explicit)
    errors = loosening_errors(spec, policy)
    if errors:
        raise SpecError(errors)
    return policy


class Policies:
    """Policies by folder, each file read once: `validate` meets many specs per folder."""

    def __init__(self, explicit: str | None = None) -> None:
        self.explicit = explicit
        self.broken: set[str] = set()  # policy files that failed to load
        self._by_folder: dict[str, Policy | SpecError] = {}

    def for_spec(self, source: str) -> Policy:
        folder = "<cwd>" if source.startswith("<") else str(Path(source).parent)
        if folder not in self._by_folder:
            path = locate(source, self.explicit)
            try:
                self._by_folder[folder] = load(path) if path else DEFAULT
            except SpecError as e:
                self.broken.add(str(path))
                self._by_folder[folder] = e
        found = self._by_folder[folder]
        if isinstance(found, SpecError):
            raise found
        return found


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# --- loading -----------------------------------------------------------------------


def load(path: str) -> Policy:
    """One policy file, or SpecError listing every problem in it as `file:line:col: ...`."""
    docs, errors = _parse(_read_text(path), path)
    errors = [(m, _policy_words(msg)) for m, msg in errors]
    if not errors and len(docs) > 1:
        errors = [(docs[1].mark(()), "a policy file holds one document; remove the '---'")]
    policy = None
    if not errors:
        policy = _check(docs[0], path)
        errors = docs[0].errors
    if errors or policy is None:
        errors.sort(key=lambda e: (e[0].line, e[0].col))
        raise SpecError([f"{path}:{m.line}:{m.col}: {msg}" for m, msg in errors])
    return policy


def _policy_words(message: str) -> str:
    if message.startswith("empty file"):
        return "empty file: no policy in it (start with `version: 1`)"
    return message


def _check(doc: _Doc, path: str) -> Policy | None:
    if not isinstance(doc.data, dict):
        doc.error((), "a policy must be a mapping of keys (`version: 1`, `max_qty: ...`)")
        return None
    data = schema_checked(doc, SCHEMA_PATH)
    if data is None:
        return None
    for port in sorted(set(data["paper_ports"]) & set(data["live_ports"])):
        doc.error(("live_ports",), f"port {port} is in both paper_ports and live_ports")
    return None if doc.errors else _build(doc, data, path)


def _build(doc: _Doc, data: dict[str, Any], path: str) -> Policy:
    def opt(key: str, kind: type = float) -> Any:
        return None if key not in data else kind(data[key])

    kill = data.get("kill_switch")
    if kill is not None:
        kill = os.path.normpath(os.path.join(os.path.dirname(path), kill))
    marks = {str(p[0]): m for p, m in doc.marks.items() if len(p) == 1}
    return Policy(
        source=path, symbols=_tuple(data.get("symbols")), sec_types=_tuple(data.get("sec_types")),
        max_qty=opt("max_qty"), max_notional=opt("max_notional"),
        max_day_notional=opt("max_day_notional"), max_day_orders=opt("max_day_orders", int),
        max_slippage_bps=opt("max_slippage_bps"),
        max_reference_age_sec=opt("max_reference_age_sec"),
        require_reference=data["require_reference"],
        min_sanity_distance_bps=float(data["min_sanity_distance_bps"]),
        allow_market=data["allow_market"], allow_live=data["allow_live"], kill_switch=kill,
        paper_ports=tuple(data["paper_ports"]), live_ports=tuple(data["live_ports"]),
        marks=marks,
    )


def _tuple(items: list[Any] | None) -> tuple[Any, ...] | None:
    return None if items is None else tuple(items)


# --- checks against a spec ------------------------------------------------------------


def kill_switch_on(policy: Policy) -> bool:
    return policy.kill_switch is not None and os.path.exists(policy.kill_switch)


def loosening_errors(spec: Spec, policy: Policy) -> list[str]:
    """Each spec `limits` key that is looser than the policy, as a spec error line."""
    out: list[str] = []
    for key in TIGHTEN_ONLY:
        mine, cap = getattr(spec.limits, key), getattr(policy, key)
        if mine is not None and cap is not None and mine > cap:
            out.append(f"{spec_where(spec, ('limits', key))}: limits.{key}: {fmt(mine)} loosens "
                       f"the policy's {key} {fmt(cap)} ({policy.where(key)}); a spec's limits "
                       "can only tighten the policy")
    return out


def spec_where(spec: Spec, path: Path_) -> str:
    """`file:line:col` of a key's value in the spec's own document, for messages.

    Specs keep no marks (they are values), so the file is read again; this only
    happens on the way to an error."""
    if spec.source.startswith("<"):
        return spec.source
    try:
        docs, _ = _parse(_read_text(spec.source), spec.source)
    except SpecError:
        docs = []
    mark = docs[spec.index].mark(path) if spec.index < len(docs) else Mark(spec.line, 1)
    return f"{spec.source}:{mark.line}:{mark.col}"


def fmt(x: float) -> str:
    """10,000 / 4,729.2 / 0.01: numbers in messages, as the user wrote them."""
    if x == int(x):
        return f"{int(x):,}"
    return f"{x:,.4f}".rstrip("0").rstrip(".")
