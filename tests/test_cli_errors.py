"""Command-line edges that used to end in a traceback or an "unexpected error" (issue 14)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.gateway.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def test_a_closed_pipe_is_a_quiet_exit() -> None:
    """`runner plan … | head`: the reader is gone before runner writes; no message."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "runner", "plan", "specs/one-shot.yaml"],
                              cwd=ROOT, stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=60)
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (141, "")


def test_the_fake_gateway_listens_where_runner_connects_by_default() -> None:
    from runner.plan import DEFAULTS

    assert build_parser().parse_args([]).port == int(DEFAULTS["IB_GATEWAY_PORT"]) == 7497


@pytest.mark.parametrize("port", ["99999", "-1", "abc"])
def test_a_port_out_of_range_is_a_usage_error(port: str, capsys) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--port", port])
    assert done.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"runner gateway: error: argument --port: '{port}' is not a port (0-65535)")
