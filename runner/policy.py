"""The repository's pre-trade policy: every `runner-policy.yaml` on the way up from a spec.

Each file is read as a spec is (runner.yamldoc: safe YAML, marks, `file:line:col`
errors), checked against `schemas/policy.schema.json` and frozen into a `Policy`. The
policy that governs a spec is the cascade of every file from the spec's folder (for
a spec built in memory: the working directory) up to the filesystem root, plus
`--policy FILE`: each file is a whole policy with its own defaults, and the cascade is
the narrowest of them (allowlists intersect, caps take the minimum, `allow_*` need every
file, any `require_reference` or kill switch holds). Nothing stops the search: not a
`.git` folder, not a file that cannot be read — a policy path that exists but is not a
readable regular file refuses every run it would govern. Each limit remembers the file
(and line) it came from, for messages. Without any policy file runner uses `DEFAULT`,
which keeps the behaviour runner had before policies: only the sanity-cancel distance
(5%) is enforced.

A spec's `limits` can only tighten the policy; a key that loosens it is an error
naming both files and lines. Cheap to import: `validate` and `plan` use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.defaults import POLICY_SCHEMA, policy_default, spec_default
from runner.errors import NotRegular, SpecError, TooBig, UsageError
from runner.output import message_number as fmt
from runner.schemacheck import schema_checked
from runner.spec import Spec
from runner.yamldoc import Doc, Mark, Path_, decode, error_lines, parse, read_bounded

POLICY_FILE = "runner-policy.yaml"
MAX_POLICY_BYTES = 64 << 10  # a policy is a dozen lines; 64 KiB is a mistake or an attack
SCHEMA_PATH = POLICY_SCHEMA
# the schema's defaults (written there only): a sanity-cancel limit 5% through the market
# cannot fill; paper TWS 7497, paper IB Gateway 4002; live TWS 7496, live IB Gateway 4001
SANITY_MIN_DISTANCE_BPS = float(policy_default("min_sanity_distance_bps"))
PAPER_PORTS: tuple[int, ...] = policy_default("paper_ports")
LIVE_PORTS: tuple[int, ...] = policy_default("live_ports")
TIGHTEN_ONLY = ("max_qty", "max_notional")  # spec `limits` keys the policy also caps
CAPS = ("max_qty", "max_notional", "max_day_notional", "max_day_orders", "max_slippage_bps",
        "max_reference_age_sec")  # the smallest of the cascade holds
_NO_ITEM = object()


@dataclass(frozen=True, slots=True)
class Policy:
    source: str | None  # the file(s) as runner shows them; None: the built-in default
    symbols: tuple[str, ...] | None = None  # None: any
    sec_types: tuple[str, ...] | None = None
    max_qty: float | None = None
    max_notional: float | None = None
    max_day_notional: float | None = None
    max_day_orders: int | None = None
    max_slippage_bps: float | None = None
    max_reference_age_sec: float | None = None
    require_reference: bool = False
    broker_reference: bool = False  # live runs: the reference is the broker's, never bars
    min_sanity_distance_bps: float = SANITY_MIN_DISTANCE_BPS
    allow_market: bool = True
    allow_live: bool = True
    ledger_root: str | None = None  # the ledger this file's day caps count (see ledger_roots)
    kill_switch: str | None = None  # resolved against the policy file's folder; the first
    paper_ports: tuple[int, ...] = PAPER_PORTS
    live_ports: tuple[int, ...] = LIVE_PORTS
    marks: Mapping[str, Mark] = field(default_factory=dict, compare=False)  # key -> value
    kill_switches: tuple[str, ...] = ()  # every kill switch of the cascade; any one stops
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)  # key -> where
    layers: tuple[Policy, ...] = field(default=(), compare=False)  # the files, outermost first

    def __post_init__(self) -> None:
        if self.kill_switch is not None and not self.kill_switches:
            object.__setattr__(self, "kill_switches", (self.kill_switch,))

    @property
    def name(self) -> str:
        return self.source or "the built-in policy"

    @property
    def files(self) -> tuple[Policy, ...]:
        """The single-file policies this one is made of, outermost first."""
        return self.layers or ((self,) if self.origins else ())

    def where(self, key: str) -> str:
        """`runner-policy.yaml:5:10` for the value of a key that binds, for messages."""
        if key in self.origins:
            return self.origins[key]
        mark = self.marks.get(key, Mark(1, 1))
        return f"{self.name}:{mark.line}:{mark.col}"

    def origin(self, key: str, item: Any = _NO_ITEM) -> str:
        """` (from runner-policy.yaml:5:10)`: where the limit behind a refusal was set ("" for
        a policy that was not read from files). With `item`: for an allowlist, the file whose
        list leaves the item out; for the ports, the file that lists the port."""
        files = self.files
        if not files:
            return ""
        if item is not _NO_ITEM:
            for layer in files:
                listed = getattr(layer, key)
                if key.endswith("_ports") and item in listed:
                    return f" (from {layer.where(key)})"
                if not key.endswith("_ports") and listed is not None and item not in listed:
                    return f" (from {layer.where(key)})"
        return f" (from {self.where(key)})"

    @property
    def needs_day_totals(self) -> bool:
        return self.max_day_orders is not None or self.max_day_notional is not None

    @property
    def ledger_roots(self) -> tuple[str, ...]:
        """The ledger roots whose INTENTs the day caps count: of each file with a day cap,
        its `ledger_root` (default data/exec beside the file). A run under day caps writes
        its ledger there and nowhere else, so --out-dir cannot escape the count."""
        return tuple(dict.fromkeys(p.ledger_root for p in self.files
                                   if p.needs_day_totals and p.ledger_root))


# No file: what runner did before policies. Market and live orders stay behind
# their spec-level keys (allow_market, mode: live + --live).
DEFAULT = Policy(source=None)


# --- finding -----------------------------------------------------------------------


def find_all(start: Path) -> list[Path]:
    """Every runner-policy.yaml (or anything by that name) in `start` and every folder
    above it up to the filesystem root, outermost first. The folders are walked both as
    named and with symbolic links resolved, so a linked folder cannot hide a policy;
    a file reached both ways counts once. Nothing stops the walk (a `.git` does not)."""
    found: list[Path] = []
    seen: set[str] = set()
    for first in (Path(os.path.abspath(start)), start.resolve()):
        for folder in (first, *first.parents):
            candidate = folder / POLICY_FILE
            try:
                os.lstat(candidate)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError:
                pass  # it cannot be examined: the reader refuses it, naming the cause
            real = os.path.realpath(candidate)
            if real not in seen:
                seen.add(real)
                found.append(candidate)
    return found[::-1]


def find(start: Path) -> Path | None:
    """The nearest runner-policy.yaml in `start` or above it (one of `find_all`)."""
    found = find_all(start)
    return found[-1] if found else None


def locate_all(source: str, explicit: str | None = None) -> list[str]:
    """The policy files that govern a spec, as the user would type them, outermost first;
    `--policy FILE` comes last (one more policy: it can only narrow)."""
    folder = Path.cwd() if source.startswith("<") else Path(source).parent
    paths = [_shown(p) for p in find_all(folder)]
    if explicit:
        if not os.path.lexists(explicit):
            raise UsageError(f"--policy {explicit}: no such file")
        if os.path.realpath(explicit) not in {os.path.realpath(p) for p in paths}:
            paths.append(explicit)
    return paths


def for_spec(source: str, explicit: str | None = None) -> Policy:
    """The policy that governs a spec file (or, for a spec built in memory, the working
    directory): the cascade of every file found upward, plus `--policy`; else DEFAULT."""
    return Policies(explicit).for_spec(source)


def governing(spec: Spec, explicit: str | None = None,
              found: Policies | None = None) -> Policy:
    """The spec's policy, after checking that the spec's limits do not loosen it. `found`:
    the policies a command has read already (each file read once for all its documents)."""
    policy = (found or Policies(explicit)).for_spec(spec.source)
    errors = loosening_errors(spec, policy)
    if errors:
        raise SpecError(errors)
    return policy


class Policies:
    """Policies by folder, each file read once: `validate` meets many specs per folder."""

    def __init__(self, explicit: str | None = None) -> None:
        self.explicit = explicit
        self.broken: set[str] = set()  # policy files that failed to load
        self._files: dict[str, Policy | SpecError] = {}
        self._by_folder: dict[str, Policy | SpecError] = {}

    def for_spec(self, source: str) -> Policy:
        folder = "<cwd>" if source.startswith("<") else str(Path(source).parent)
        if folder not in self._by_folder:
            try:
                self._by_folder[folder] = self._cascade(locate_all(source, self.explicit))
            except SpecError as e:
                self._by_folder[folder] = e
        found = self._by_folder[folder]
        if isinstance(found, SpecError):
            raise found
        return found

    def _cascade(self, paths: list[str]) -> Policy:
        layers: list[Policy] = []
        lines: list[str] = []
        for path in paths:
            if path not in self._files:
                try:
                    self._files[path] = load(path)
                except SpecError as e:
                    self._files[path] = e
            got = self._files[path]
            if isinstance(got, SpecError):
                self.broken.add(path)
                lines += got.lines
            else:
                layers.append(got)
        if lines:
            raise SpecError(lines)
        return merge(layers)


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when inside it.
    The path is not resolved: a link is named as the link."""
    absolute, cwd = os.path.abspath(path), os.getcwd()
    if absolute == cwd or absolute.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(absolute, cwd)
    return absolute


# --- the cascade ---------------------------------------------------------------------


def merge(layers: Sequence[Policy]) -> Policy:
    """The narrowest of several policies (outermost first): what every one of them allows.
    Allowlists intersect, caps take the minimum, the sanity distance the maximum,
    `allow_*` need every file, `require_reference` any file, every kill switch counts and
    the port lists add up (a port one file calls paper and another live is an error)."""
    if not layers:
        return DEFAULT
    if len(layers) == 1:
        return layers[0]
    origins: dict[str, str] = {}

    def binding(key: str, pick: Callable[[list[Any]], Any]) -> Any:
        values = [(getattr(p, key), p) for p in layers if getattr(p, key) is not None]
        if not values:
            return None
        best = pick([v for v, _ in values])
        origins[key] = next(p.where(key) for v, p in values if v == best)
        return best

    caps = {key: binding(key, min) for key in CAPS}
    symbols = _intersect(layers, "symbols", binding)
    sec_types = _intersect(layers, "sec_types", binding)
    sanity = binding("min_sanity_distance_bps", max)
    allow_market = binding("allow_market", all)
    allow_live = binding("allow_live", all)
    require_reference = binding("require_reference", any)
    broker_reference = binding("broker_reference", any)
    kills = tuple(dict.fromkeys(k for p in layers for k in p.kill_switches))
    for key in ("kill_switch", "paper_ports", "live_ports"):
        origins[key] = " + ".join(p.where(key) for p in layers)
    paper = tuple(dict.fromkeys(port for p in layers for port in p.paper_ports))
    live = tuple(dict.fromkeys(port for p in layers for port in p.live_ports))
    conflicts = [_port_conflict(layers, port) for port in paper if port in live]
    if conflicts:
        raise SpecError(conflicts)
    return Policy(
        source=" + ".join(p.name for p in layers), symbols=symbols, sec_types=sec_types,
        require_reference=require_reference, broker_reference=broker_reference,
        min_sanity_distance_bps=sanity,
        allow_market=allow_market, allow_live=allow_live,
        kill_switch=kills[0] if kills else None, kill_switches=kills,
        paper_ports=paper, live_ports=live, origins=origins, layers=tuple(layers), **caps,
    )


def _intersect(layers: Sequence[Policy], key: str,
               binding: Callable[[str, Callable[[list[Any]], Any]], Any]) -> Any:
    def pick(lists: list[tuple[str, ...]]) -> tuple[str, ...]:
        return lists[0]  # the outermost list names the allowlist; the values intersect

    if binding(key, pick) is None:
        return None
    lists = [getattr(p, key) for p in layers if getattr(p, key) is not None]
    return tuple(item for item in lists[0] if all(item in other for other in lists[1:]))


def _port_conflict(layers: Sequence[Policy], port: int) -> str:
    paper = next(p for p in layers if port in p.paper_ports)
    live = next(p for p in layers if port in p.live_ports)
    return (f"{paper.where('paper_ports')}: port {port} is a paper port here but a live port "
            f"in {live.where('live_ports')}; the policies must agree (fix one of them)")


# --- loading -----------------------------------------------------------------------


def load(path: str) -> Policy:
    """One policy file, or SpecError: one line when the path is not a readable regular
    file (named, with the cause and the fix), else every problem as `file:line:col: ...`."""
    docs, errors = parse(decode(_read_policy(path), path), path)
    errors = [(m, _policy_words(msg)) for m, msg in errors]
    if not errors and len(docs) > 1:
        errors = [(docs[1].mark(()), "a policy file holds one document; remove the '---'")]
    policy = None
    if not errors:
        policy = _check(docs[0], path)
        errors = docs[0].errors
    if errors or policy is None:
        raise SpecError(error_lines(path, errors))
    return policy


def _read_policy(path: str) -> bytes:
    """The file's bytes, bounded, never opening a FIFO or a device for reading."""
    try:
        return read_bounded(path, MAX_POLICY_BYTES)
    except NotRegular as e:
        cause, fix = e.cause, _FIXES.get(e.cause.split(",")[0].split(" (")[0],
                                           "replace it with a policy file, or remove it")
    except TooBig as e:
        cause, fix = f"is {e.size:,} bytes, over the 64 KiB a policy may be", "shorten it"
    except FileNotFoundError:
        cause, fix = "does not exist", "give the path of a policy file"
    except OSError as e:
        cause = f"cannot be read ({e.strerror or e})"
        fix = "make it readable for this user, or remove it"
    raise SpecError([f"{path}: policy file {cause}: every run it governs is refused ({fix})"])


_FIXES = {
    "is a dangling symbolic link": "point the link at a policy file, or remove the link",
    "is a folder": "a policy is a file: rename or remove the folder",
}


def _policy_words(message: str) -> str:
    if message.startswith("empty file"):
        return "empty file: no policy in it (start with `version: 1`)"
    return message


def _check(doc: Doc, path: str) -> Policy | None:
    if not doc.constructed:
        return None
    if not isinstance(doc.data, dict):
        doc.error((), "a policy must be a mapping of keys (`version: 1`, `max_qty: ...`)")
        return None
    data = schema_checked(doc, SCHEMA_PATH)
    if data is None:
        return None
    for port in sorted(set(data["paper_ports"]) & set(data["live_ports"])):
        doc.error(("live_ports",), f"port {port} is in both paper_ports and live_ports")
    return None if doc.errors else _build(doc, data, path)


def _build(doc: Doc, data: dict[str, Any], path: str) -> Policy:
    def opt(key: str, kind: type = float) -> Any:
        return None if key not in data else kind(data[key])

    # relative to the file's real folder: a policy reached through a linked folder names
    # the same kill switch and ledger as the policy reached directly
    folder = os.path.dirname(os.path.realpath(path))
    kill = data.get("kill_switch")
    if kill is not None:
        kill = _shown(Path(os.path.normpath(os.path.join(folder, kill))))
    root = _shown(Path(os.path.normpath(
        os.path.join(folder, data.get("ledger_root") or DEFAULT_LEDGER_ROOT))))
    marks = {str(p[0]): m for p, m in doc.marks.items() if len(p) == 1}
    origins = {key: f"{path}:{marks[key].line}:{marks[key].col}" if key in marks
               else f"{path}, by default" for key in _KEYS}
    return Policy(
        source=path, symbols=_tuple(data.get("symbols")), sec_types=_tuple(data.get("sec_types")),
        max_qty=opt("max_qty"), max_notional=opt("max_notional"),
        max_day_notional=opt("max_day_notional"), max_day_orders=opt("max_day_orders", int),
        max_slippage_bps=opt("max_slippage_bps"),
        max_reference_age_sec=opt("max_reference_age_sec"),
        require_reference=data["require_reference"],
        broker_reference=data["broker_reference"],
        min_sanity_distance_bps=float(data["min_sanity_distance_bps"]),
        allow_market=data["allow_market"], allow_live=data["allow_live"], kill_switch=kill,
        ledger_root=root,
        paper_ports=tuple(data["paper_ports"]), live_ports=tuple(data["live_ports"]),
        marks=marks, origins=origins,
    )


DEFAULT_LEDGER_ROOT = spec_default("out_dir")  # where specs write by default, from the folder
_KEYS = (*CAPS, "ledger_root", "symbols", "sec_types", "require_reference", "broker_reference",
         "min_sanity_distance_bps", "allow_market", "allow_live", "kill_switch", "paper_ports",
         "live_ports")


def _tuple(items: list[Any] | None) -> tuple[Any, ...] | None:
    return None if items is None else tuple(items)


# --- checks against a spec ------------------------------------------------------------


def kill_switch_on(policy: Policy) -> bool:
    """Is any kill switch of the cascade there? A dangling link counts, and so does a path
    that cannot be examined: the switch fails closed."""
    return bool(kill_switches_on(policy))


def kill_switches_on(policy: Policy) -> list[str]:
    """The kill switches of the cascade that are there (see kill_switch_on)."""
    return [path for path in policy.kill_switches if _present(path)]


def _present(path: str) -> bool:
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


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
    """`file:line:col` of a key's value in the spec's own document, for messages: from the
    positions the spec was loaded with (the file is not read again: it may have changed)."""
    if spec.source.startswith("<"):
        return spec.source
    mark = spec.mark(path)
    return f"{spec.source}:{mark.line}:{mark.col}"


