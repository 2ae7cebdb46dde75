"""The seams of issue 15, read from the source: one bars protocol, one terminal set,
argparse only in the command-line modules (the run pipeline takes plain values), no
module over 500 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "runner"
FUNCTION = (ast.FunctionDef, ast.AsyncFunctionDef)
CLI_MODULES = {"runner/cli.py", "runner/flags.py", "runner/instrumentflags.py",
               "runner/manage_cli.py", "runner/gateway/cli.py"}


def modules() -> list[tuple[str, ast.Module]]:
    return [(str(p.relative_to(ROOT)), ast.parse(p.read_text(), str(p)))
            for p in sorted(RUNNER.rglob("*.py"))]


def is_protocol(node: ast.ClassDef) -> bool:
    return any(isinstance(b, ast.Name) and b.id == "Protocol" for b in node.bases)


def test_one_bars_protocol() -> None:
    """What bars are asked (an arrival, a VWAP, a volume; live: at the INTENT, after the
    order) is declared once, in runner/barsproto.py."""
    asks = {"arrival_at", "at_intent"}
    found = sorted((path, node.name) for path, tree in modules() for node in ast.walk(tree)
                   if isinstance(node, ast.ClassDef) and is_protocol(node)
                   and asks & {f.name for f in node.body if isinstance(f, FUNCTION)})
    assert found == [("runner/barsproto.py", "BarsLike"), ("runner/barsproto.py", "LiveBars")]


def test_the_bars_protocol_imports_nothing_heavy() -> None:
    code = ("import sys, runner.barsproto\n"
            "print(','.join(m for m in ('numpy', 'pyarrow', 'pandas') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out == "\n"


def test_the_terminal_states_are_declared_once() -> None:
    """FILL, CANCEL, REJ as a set of their own appear only as Ev.TERMINAL."""
    ends = {"FILL", "CANCEL", "REJ"}
    found = []
    for path, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Tuple | ast.List | ast.Set):
                items = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                if items == ends:
                    found.append(f"{path}:{node.lineno}")
    assert found == []


def test_argparse_only_in_the_command_line_modules() -> None:
    found = sorted(path for path, tree in modules() for node in ast.walk(tree)
                   if isinstance(node, ast.Import | ast.ImportFrom)
                   and "argparse" in ([a.name for a in node.names] if isinstance(node, ast.Import)
                                      else [node.module or ""]))
    assert set(found) <= CLI_MODULES, found


def test_no_module_over_500_lines() -> None:
    over = {str(p.relative_to(ROOT)): n for p in RUNNER.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 500}
    assert over == {}
