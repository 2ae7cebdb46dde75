"""`runner test`: run every spec document that has an `expect:` block on the simulator,
judge its Outcome against that block, and report like a test suite (text, `--json`,
`--junit FILE`).

Each document is one case:
- pass: every `expect:` key met;
- fail: an `expect:` key not met (the differences are the report);
- error: the case could not be judged: an invalid spec file, unusable bars, a gate
  refused it, or an unexpected exception (each case runs on its own; the others still run);
- skip: the document has no `expect:` block (counted and listed, never run).

Exit code: 0 every case passed (skips allowed); 4 any failed (errors may be reported
too); else, when some errored, 2 if each of them was invalid input or a refusal (exit 2
in a run) and 1 if one was unexpected (a bug, an unwritable ledger); 2 when there is
nothing to test (no document with `expect:`), for a folder without spec files, or for a
bad `--policy` or `--junit`.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path, PurePath
from typing import Any, ClassVar

from runner.errors import Interrupted, RunnerError, SpecError, UsageError
from runner.expect import expect_diff
from runner.output import emit
from runner.plan import iso
from runner.run import RunOptions, run_spec
from runner.spec import Spec, load, spec_files

NOTHING = "nothing to test: no spec document with an expect: block"
JSON_VERSION = 2  # 2: counts, skips, differences and errors as values (1: "detail" text)


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a case errored: its exit code in a run, the one message, the hint."""

    exit_code: int
    message: str
    hint: str | None
    type: str  # the error's class, e.g. SpecError, Refused, DataError

    @classmethod
    def of(cls, e: Exception) -> Problem:
        if isinstance(e, RunnerError):
            return cls(e.exit_code, str(e), e.hint or None, type(e).__name__)
        return cls(1, f"unexpected error: {type(e).__name__}: {e}", None, type(e).__name__)


@dataclass(frozen=True, slots=True)
class Case:
    """One spec document's result."""

    STATUSES: ClassVar[tuple[str, ...]] = ("pass", "fail", "error", "skip")

    source: str  # the file as named
    spec: str  # the file, with #N for its later documents
    name: str
    status: str  # one of STATUSES
    seconds: float = 0.0
    tag: str | None = None
    state: str | None = None  # how the order ended (pass and fail)
    differences: tuple[str, ...] = ()  # fail: each unmet expect: key
    problem: Problem | None = None  # error


@dataclass(frozen=True, slots=True)
class Counts:
    passed: int
    failed: int
    errored: int
    skipped: int

    @classmethod
    def of(cls, cases: Sequence[Case]) -> Counts:
        return cls(*(sum(c.status == s for c in cases) for s in Case.STATUSES))

    def text(self) -> str:
        return (f"{self.passed} passed, {self.failed} failed, {self.errored} errored, "
                f"{self.skipped} skipped")


def test(paths: Sequence[str], junit: str | None, out_dir: str | None, as_json: bool,
         environ: Mapping[str, str], policy: str | None = None) -> int:
    """Run the cases, write the JUnit file, print the report; the exit code."""
    started = time.time_ns()
    try:
        target = _junit_target(junit) if junit else None
        if policy:  # a bad --policy is the command's error, not every case's
            _check_policy(policy)
        cases = _run_all(paths, out_dir, policy, environ)
        seconds = (time.time_ns() - started) / 1e9
        if target is not None:
            write_junit(cases, target, started, seconds)
    except Interrupted:
        raise
    except RunnerError as e:  # the command itself could not run: exit 2, one line
        return _refused(e, as_json)
    code = exit_code(cases)
    if not _judged_count(Counts.of(cases)):
        print(f"runner: {NOTHING} in {' '.join(paths)}", file=sys.stderr)
    if as_json:
        emit(json_doc(cases, code, started, seconds))
    else:
        _print(cases)
    return code


def exit_code(cases: Sequence[Case]) -> int:
    counts = Counts.of(cases)
    if counts.failed:
        return 4
    if counts.errored:
        return 2 if all(c.problem and c.problem.exit_code == 2 for c in cases
                        if c.status == "error") else 1
    return 0 if counts.passed else 2  # nothing to test is not a pass (NOTHING)


def _judged_count(n: Counts) -> int:
    return n.passed + n.failed + n.errored


def _check_policy(path: str) -> None:
    from runner.policy import load as load_policy

    if not os.path.lexists(path):
        raise UsageError(f"--policy {path}: no such file")
    load_policy(path)


def _refused(e: RunnerError, as_json: bool) -> int:
    print(str(e) if isinstance(e, SpecError) else f"runner: {e}", file=sys.stderr)
    if as_json:
        emit({"version": JSON_VERSION, "command": "test", "ok": False, "spec": None,
              "tag": None, "error": {"exit_code": e.exit_code, "message": str(e),
                                     "hint": e.hint or None}})
    return e.exit_code


def _junit_target(path: str) -> Path:
    """Where the JUnit XML goes, checked before anything runs; its folder is made."""
    target = Path(path).expanduser()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--junit {path}: cannot make its folder: {e.strerror or e}",
                         "name a file in a writable folder") from None
    if target.is_dir():
        raise UsageError(f"--junit {path}: is a folder", "name the XML file itself")
    return target


def _run_all(paths: Sequence[str], out_dir: str | None, policy: str | None,
             environ: Mapping[str, str]) -> list[Case]:
    from runner.policy import POLICY_FILE

    files = [f for f in spec_files(paths) if Path(f).name != POLICY_FILE]  # not specs
    if not files:
        raise UsageError(f"no spec files (*.yaml, *.yml) in {' '.join(paths)}")
    with tempfile.TemporaryDirectory(prefix="runner-test-") as tmp:
        opts = RunOptions(dry_run=True, out_dir=out_dir or tmp, policy=policy)
        return [case for f in files for case in _file_cases(f, opts, environ)]


def _file_cases(path: str, opts: RunOptions, environ: Mapping[str, str]) -> list[Case]:
    try:
        specs = load(path)
    except SpecError as e:  # the file is invalid: one case, its error
        return [Case(path, path, Path(path).stem, "error", problem=Problem.of(e))]
    return [_case(spec, opts, environ) for spec in specs]


def _case(spec: Spec, opts: RunOptions, environ: Mapping[str, str]) -> Case:
    where = spec.source if spec.index == 0 else f"{spec.source}#{spec.index + 1}"
    if spec.expect is None:
        return Case(spec.source, where, spec.name, "skip")
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # nothing of a run is the report
            outcome = run_spec(spec, opts, environ)
    except Interrupted:
        raise
    except Exception as e:  # this case cannot be judged; the other cases still run
        return Case(spec.source, where, spec.name, "error", time.perf_counter() - start,
                    problem=Problem.of(e))
    diff = tuple(expect_diff(spec.expect, outcome))
    return Case(spec.source, where, spec.name, "fail" if diff else "pass",
                time.perf_counter() - start, outcome.tag, outcome.state, diff)


def _print(cases: Sequence[Case]) -> None:
    for c in cases:
        print(f"{c.status.upper():5} {c.spec} ({c.name})")
        for line in _detail(c):
            print(f"      {line}")
    print(Counts.of(cases).text())


def _detail(c: Case) -> list[str]:
    """The lines under a case: each difference, or the error as it was written."""
    if c.problem is not None:
        return c.problem.message.splitlines()
    return list(c.differences)


# --- --json ------------------------------------------------------------------------


def json_doc(cases: Sequence[Case], code: int, started_ns: int, seconds: float) -> dict[str, Any]:
    """`runner test --json`: schemas/output/test.schema.json."""
    counts = Counts.of(cases)
    doc: dict[str, Any] = {
        "version": JSON_VERSION, "command": "test", "ok": code == 0, "started": iso(started_ns),
        "seconds": round(seconds, 3), "counts": {"passed": counts.passed, "failed":
                                                 counts.failed, "errored": counts.errored,
                                                 "skipped": counts.skipped},
        "results": [_case_json(c) for c in cases],
    }
    if code:
        message = counts.text() if _judged_count(counts) else NOTHING
        doc.update(spec=None, tag=None, error={"exit_code": code, "message": message,
                                               "hint": None})
    return doc


def _case_json(c: Case) -> dict[str, Any]:
    return {"file": c.source, "spec": c.spec, "name": c.name, "status": c.status,
            "seconds": round(c.seconds, 3), "tag": c.tag, "state": c.state,
            "differences": list(c.differences),
            "error": None if c.problem is None else _problem_json(c.problem)}


def _problem_json(p: Problem) -> dict[str, Any]:
    return {"exit_code": p.exit_code, "message": p.message, "hint": p.hint, "type": p.type}


# --- --junit -----------------------------------------------------------------------


def write_junit(cases: Sequence[Case], path: Path, started_ns: int, seconds: float) -> None:
    """JUnit XML as GitLab, Jenkins and GitHub's reporters read it: <testsuites>, one
    <testsuite> per spec file, one <testcase> per document (classname: the file's path
    dotted, as pytest names modules; name: the spec's name), with <failure type="expect">
    (the differences), <error type="<class>"> or <skipped/>."""
    import xml.etree.ElementTree as ET

    stamp = _timestamp(started_ns)
    root = ET.Element("testsuites", {"name": "runner test", **_totals(cases),
                                     "time": f"{seconds:.3f}", "timestamp": stamp})
    for source, group in groupby(cases, key=lambda c: c.source):
        mine = list(group)
        suite = ET.SubElement(root, "testsuite", {
            "name": source, **_totals(mine), "time": f"{sum(c.seconds for c in mine):.3f}",
            "timestamp": stamp})
        for c in mine:
            _testcase(ET.SubElement(suite, "testcase", classname=classname(source),
                                    name=c.name, time=f"{c.seconds:.3f}", file=source), c)
    try:
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    except OSError as e:
        raise UsageError(f"--junit {path}: cannot write it: {e.strerror or e}",
                         "name a file in a writable folder") from None


def _testcase(case: Any, c: Case) -> None:
    import xml.etree.ElementTree as ET

    from runner.redact import masked  # the file says what stderr said: ids masked alike

    if c.status == "fail":
        failure = ET.SubElement(case, "failure", message=masked("; ".join(c.differences)),
                                type="expect")
        failure.text = masked("\n".join(c.differences))
    elif c.problem is not None:
        message = masked(c.problem.message)
        error = ET.SubElement(case, "error", message=message.splitlines()[0],
                              type=c.problem.type)
        error.text = message
    elif c.status == "skip":
        ET.SubElement(case, "skipped", message="no expect: block")


def _totals(cases: Sequence[Case]) -> dict[str, str]:
    n = Counts.of(cases)
    return {"tests": str(len(cases)), "failures": str(n.failed), "errors": str(n.errored),
            "skipped": str(n.skipped)}


def classname(source: str) -> str:
    """specs/scenarios/fill.yaml -> specs.scenarios.fill (a CI shows package, then class)."""
    parts = PurePath(source).with_suffix("").parts
    return ".".join(p for p in parts if p not in ("/", ".", "..")) or source


def _timestamp(t_ns: int) -> str:
    """ISO 8601 with its UTC offset, to the second, as pytest writes it."""
    return datetime.fromtimestamp(t_ns // 1_000_000_000, UTC).isoformat(timespec="seconds")
