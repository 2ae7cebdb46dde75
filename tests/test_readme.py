"""The README's examples, run: every ```console block is a session — its `$ ` lines run
in order in one bash (so `export OUT=$(mktemp -d)` carries to the next line), in a fresh
copy of the project (a temporary folder holding `.git`, the shipped specs, schemas, policy
and sample data); the lines under each are what it must print (stdout and stderr
together, in order). Masked on both sides, and nothing else: generated tags' timestamps
(not their document index), run ids (8 hex digits standing alone), `mktemp -d` folders
(shown as `$OUT`), and the fake gateway's port.

`$ runner gateway ... &` (first in its block) starts the fake gateway in the background
for the block, on a free port (the README says 7497); IB_GATEWAY_PORT points the block at
it, and wall-clock instants are masked in that block (the gateway's clock is the wall
clock: `at` lines and the day of `data/exec/DAY`).

A fenced block of another kind may not hold a `$ ` line or start a line with `runner `,
except ```text blocks, which are synopses (usage), not examples.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHIPPED = ("specs", "schemas", "data", "docs", "runner-policy.yaml")
README_PORT = "7497"


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    info: str
    lines: list[str] = field(default_factory=list)


@dataclass
class Step:
    line: int
    command: str
    expected: list[str]


def blocks(text: str) -> Iterator[Block]:
    current: Block | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if current is None:
                current = Block(n, line[3:].strip())
            else:
                yield current
                current = None
        elif current is not None:
            current.lines.append(line)


def steps(block: Block) -> list[Step]:
    out: list[Step] = []
    lines = iter(enumerate(block.lines, block.line + 1))
    for n, line in lines:
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\"):
                command = command[:-1] + next(lines)[1].strip()
            out.append(Step(n, command, []))
        elif out:
            out[-1].expected.append(line)
        elif line.strip():
            raise AssertionError(f"README.md:{n}: output before the first `$ ` line")
    return out


_MASKS = (
    (re.compile(r"\b((?:oneshot|sanity)_[A-Za-z0-9.]+_)\d{13}"), r"\1<T>"),  # -N kept
    (re.compile(r"(?<![\w.-])[0-9a-f]{8}(?![\w.-])"), "<RUN>"),
    (re.compile(r"/tmp/tmp\.\w+"), "$OUT"),  # a `mktemp -d` folder, shown as its variable
)
_WALL_CLOCK = (
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"), "<NOW>"),
    (re.compile(r"data/exec/\d{4}-\d\d-\d\d/"), "data/exec/<DAY>/"),
)


def masked(text: str, port: str | None) -> str:
    masks = _MASKS
    if port:
        text = text.replace(f":{port}", f":{README_PORT}")
        masks += _WALL_CLOCK
    for pattern, repl in masks:
        text = pattern.sub(repl, text)
    return text.rstrip("\n")


def console_blocks() -> list[Block]:
    return [b for b in blocks(README.read_text(encoding="utf-8")) if b.info == "console"]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in SHIPPED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name)
        elif source.exists():
            shutil.copy(source, tmp_path / name)
    (tmp_path / ".git").mkdir()  # the project root (DESIGN §3)
    return tmp_path


def test_every_example_block_is_a_console_session() -> None:
    stray = [f"README.md:{b.line}: ```{b.info} block with a command; make it ```console"
             for b in blocks(README.read_text(encoding="utf-8")) if b.info != "text"
             and b.info != "console"
             and any(x.startswith(("$ ", "runner ")) for x in b.lines)]
    assert not stray, "\n".join(stray)
    assert len(console_blocks()) >= 8  # the README's examples did not silently vanish


@pytest.mark.parametrize("block", console_blocks(), ids=lambda b: f"README.md:{b.line}")
def test_readme_example_prints_what_the_readme_says(block: Block, project: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONIOENCODING": "utf-8", "COLUMNS": "100", "IB_CONNECT_TIMEOUT": "5"}
    env.pop("IB_GATEWAY_PORT", None)
    todo = steps(block)
    gateways: list[subprocess.Popen[str]] = []
    port: str | None = None
    try:
        while todo and todo[0].command.startswith("runner gateway"):
            assert todo[0].command.endswith("&"), f"README.md:{todo[0].line}: add ' &'"
            gateway, port = _gateway(todo.pop(0).command[:-1], project, env)
            gateways.append(gateway)
            env["IB_GATEWAY_PORT"] = port
        printed = _session(todo, project, env)
    finally:
        for gateway in gateways:
            gateway.terminate()
            gateway.wait(10)
    for step, out in zip(todo, printed, strict=True):
        where = f"README.md:{step.line}: $ {step.command}"
        assert masked(out, port) == masked("\n".join(step.expected), port), where


def _session(todo: list[Step], cwd: Path, env: dict[str, str]) -> list[str]:
    """Run the steps in one bash, each after a marker line; what each printed."""
    marker = "@@readme-step@@"
    script = "".join(f"echo {marker}\n{step.command}\n" for step in todo)
    done = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, text=True, timeout=300,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    parts = done.stdout.split(marker + "\n")
    assert parts[0] == "", f"printed before the first step: {parts[0]!r}"
    return parts[1:]


def _gateway(command: str, cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    argv = shlex.split(command)
    argv = [a if a != README_PORT else "0" for a in argv]  # a free port, not the README's
    process = subprocess.Popen([sys.executable, "-m", *argv], cwd=cwd, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    first = process.stdout.readline()  # "fake TWS gateway listening on 127.0.0.1:PORT ..."
    found = re.search(r"127\.0\.0\.1:(\d+)", first)
    assert found, f"the gateway did not start: {first!r}"
    return process, found.group(1)


def test_the_first_command_prints_what_the_readme_says(project: Path) -> None:
    """The opening claim, "The first prints `...`", for its runner part (the set-up
    before it is what tests/test_ci.py checks)."""
    text = README.read_text(encoding="utf-8")
    claim = re.search(r"The first prints `([^`]+)`", text)
    assert claim, "README: the first command's output is no longer stated"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run([sys.executable, "-m", "runner", "run", "specs/one-shot.yaml",
                           "--dry-run"], cwd=project, env=env, text=True, timeout=120,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert (done.returncode, done.stdout) == (0, claim.group(1) + "\n")
    assert (project / "data" / "exec" / "2026-01-05" / "ledger.parquet").exists()
