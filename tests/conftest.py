from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from leaks import UNMASKED  # an IB account id in the clear, escaped forms included

# ---------------------------------------------------------------------------
# Fake IB gateway fixtures (runner/gateway; owner: the gateway engineer).
# Each gateway runs on its own event loop in a background thread, listening on
# 127.0.0.1 at a free port (`.port`), so the code under test may run its own
# loop in the test's thread or in a subprocess. Script orders with
# `gw.script(ref, [Ack(), Fill(...)], on_cancel=...)`; see runner/gateway/steps.py.
# ---------------------------------------------------------------------------


@pytest.fixture
def make_gateway() -> Iterator[Callable[..., Any]]:
    """Factory: `make_gateway(accounts=("U7654321",), read_only=True, bars=...)`."""
    from runner.gateway import GatewayThread

    started: list[GatewayThread] = []

    def make(*args: Any, **kwargs: Any) -> GatewayThread:
        gateway = GatewayThread(*args, **kwargs).start()
        started.append(gateway)
        return gateway

    yield make
    for gateway in reversed(started):
        gateway.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., Any]) -> Any:
    """A started fake gateway with the defaults (paper account DU1234567, no bars)."""
    return make_gateway()


# ----------------------------------------------------- end of gateway fixtures


# ---------------------------------------------------------------------------
# Running the CLI in-process against a gateway (shared by the ib, gates and what-if tests).
# ---------------------------------------------------------------------------



@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run `runner ...` in tmp_path against a gateway port; returns (code, out, err).
    Every call also checks that no account id was printed unmasked."""
    from runner.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IB_CONNECT_TIMEOUT", "3")

    def run(port: int, *args: str) -> tuple[int, str, str]:
        monkeypatch.setenv("IB_GATEWAY_PORT", str(port))
        code = main(list(args))
        out, err = capsys.readouterr()
        assert not UNMASKED.search(out + err), out + err
        return code, out, err

    return run
