"""CI runs what the README tells people to run: `.ci/run` calls exactly the README's test
command, and that command checks the code before it tests it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_test_command() -> str:
    """The command under the README's "run the tests" comment, in its opening block."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"\(this is what CI runs: \.ci/run\)\n(.+)\n", readme)
    assert match, "README.md has no test command marked 'this is what CI runs: .ci/run'"
    return match.group(1)


def test_ci_runs_exactly_the_readme_test_command() -> None:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_test_command() in lines


def test_the_test_command_checks_before_it_tests() -> None:
    steps = readme_test_command().split(" && ")
    checks = [".venv/bin/ruff check runner tests", ".venv/bin/mypy runner"]
    tests = steps.index(".venv/bin/python -m pytest -q --cov")
    assert max(steps.index(c) for c in checks) < tests
