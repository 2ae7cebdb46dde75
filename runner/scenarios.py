"""`runner test`: run every spec that has an `expect:` block on the simulator, report
like a test suite, and optionally write JUnit XML for CI."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from runner.errors import RunnerError, SpecError, UsageError
from runner.run import RunOptions, run_spec
from runner.spec import Spec, load, spec_files


@dataclass(frozen=True, slots=True)
class Result:
    source: str
    name: str
    status: str  # pass | fail | error
    detail: str
    seconds: float


def test(paths: Sequence[str], junit: str | None, out_dir: str | None, as_json: bool,
         environ: Mapping[str, str]) -> int:
    files = spec_files(paths)
    if not files:
        raise UsageError(f"no spec files (*.yaml, *.yml) in {' '.join(paths)}")
    with tempfile.TemporaryDirectory(prefix="runner-test-") as tmp:
        results = [r for f in files for r in _run_file(f, out_dir or tmp, environ)]
    if junit:
        write_junit(results, Path(junit))
    _print(results, as_json)
    if not results:
        raise UsageError("no spec with an expect: block to test")
    return 4 if any(r.status != "pass" for r in results) else 0


def _run_file(path: str, out_dir: str, environ: Mapping[str, str]) -> list[Result]:
    try:
        specs = load(path)
    except SpecError as e:
        return [Result(path, Path(path).stem, "error", "\n".join(e.lines), 0.0)]
    return [_run_one(s, out_dir, environ) for s in specs if s.expect is not None]


def _run_one(spec: Spec, out_dir: str, environ: Mapping[str, str]) -> Result:
    opts = RunOptions(dry_run=True, out_dir=out_dir)
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the status line is not the report
            run_spec(spec, opts, environ)
        status, detail = "pass", ""
    except RunnerError as e:
        status = "fail" if e.exit_code == 4 else "error"
        detail = str(e).split(": expect failed: ", 1)[-1]
    return Result(spec.source, spec.name, status, detail, time.perf_counter() - start)


def _print(results: list[Result], as_json: bool) -> None:
    if as_json:
        doc = {"version": 1, "results": [dataclasses.asdict(r) for r in results]}
        print(json.dumps(doc, indent=2))
        return
    for r in results:
        print(f"{r.status.upper():5} {r.source} ({r.name})")
        for part in r.detail.split("; ") if r.detail else []:
            print(f"      {part}")
    failed = sum(r.status != "pass" for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")


def write_junit(results: list[Result], path: Path) -> None:
    suite = ET.Element("testsuite", name="runner", tests=str(len(results)),
                       failures=str(sum(r.status == "fail" for r in results)),
                       errors=str(sum(r.status == "error" for r in results)))
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=r.source, name=r.name,
                             time=f"{r.seconds:.3f}")
        if r.status != "pass":
            tag = "failure" if r.status == "fail" else "error"
            ET.SubElement(case, tag, message=r.detail.split("; ")[0]).text = r.detail
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
