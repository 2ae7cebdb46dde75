"""Order truth when the gateway misbehaves (TWS_PROTOCOL.md §7): `runner` over 127.0.0.1,
the unmodified ib_async client, the project's fake gateway scripted to behave like real IB.

Each test asserts the ledger rows, the printed line, the exit code, and what the gateway
holds afterwards: no working order that runner does not know of.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runner.gateway import Ack, Error, Fill, Reject
from runner.ledger import read_ledger

PLACE, CANCEL = 3, 4
NS = 1_000_000_000


def rows(tmp_path: Path, tag: str) -> list[dict[str, Any]]:
    root = tmp_path / "data" / "exec"
    if not root.exists():
        return []
    return [r for r in read_ledger(root).to_pylist() if r["tag"] == tag]


def events(tmp_path: Path, tag: str) -> list[str]:
    return [r["event"] for r in rows(tmp_path, tag)]


def sent(gw: Any, msg_id: int) -> list[tuple[str, ...]]:
    return [fields for _, fields in gw.received if fields[0] == str(msg_id)]


def working(gw: Any, tag: str) -> list[Any]:
    return [o for o in gw.orders_by_ref(tag) if not o.done]


def one_shot(cli: Any, gw: Any, tag: str, qty: int = 10, ttl: float = 5,
             *extra: str) -> tuple[int, str, str]:
    return cli(gw.port, "one-shot", "--qty", str(qty), "--limit", "100.00", "--ttl_sec",
               str(ttl), "--tag", tag, *extra)


def after(gw: Any, msg_id: int, action: Any) -> threading.Thread:
    """Run `action` once the gateway has received a frame with `msg_id` (in a thread,
    since the run under test holds the test's thread)."""
    def go() -> None:
        gw.wait_for(msg_id, timeout=10)
        action()
    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


@pytest.fixture(autouse=True)
def quick_cancels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IB_CANCEL_TIMEOUT", "1.5")  # 3 attempts of 0.5 s


# --- information never ends an order ----------------------------------------------------


def test_10349_after_the_ack_then_a_fill_is_tracked_to_the_fill(gateway, cli, tmp_path):
    gateway.script("i-10349", [Ack(), Error(10349, "Order TIF was set to DAY based on order "
                                            "preset."), Fill(10, 99.5, delay=0.3)])
    code, out, err = one_shot(cli, gateway, "i-10349")
    assert code == 0, err
    assert out == "[one-shot] tag=i-10349 state=FILL fill_qty=10 avg_px=99.50 arrival=—\n"
    assert "10349 Order TIF was set to DAY" in err and "GTD backstop is gone" in err
    assert events(tmp_path, "i-10349") == ["INTENT", "ACK", "FILL"]
    assert working(gateway, "i-10349") == [] and sent(gateway, CANCEL) == []


# --- the kill switch is watched while the order works -----------------------------------


def test_touching_the_kill_switch_mid_order_cancels_within_2_s(gateway, cli, tmp_path):
    (tmp_path / "runner-policy.yaml").write_text("version: 1\nkill_switch: KILL\n")
    touched: list[int] = []

    def touch() -> None:
        gateway.wait_for(PLACE, timeout=10)
        (tmp_path / "KILL").touch()
        touched.append(time.time_ns())

    after(gateway, PLACE, touch)
    code, out, err = one_shot(cli, gateway, "k-1", 10, 30)
    assert code == 1
    assert err.startswith("runner: kill switch KILL turned on while the order worked; order "
                          "k-1 ended CANCEL and was recorded")
    r = rows(tmp_path, "k-1")
    assert [x["event"] for x in r] == ["INTENT", "ACK", "CANCEL"]
    assert (r[-1]["ts"].value - touched[0]) / NS <= 2.0
    assert working(gateway, "k-1") == []


# --- rejections -------------------------------------------------------------------------


def test_partial_then_201_ends_rej_with_the_filled_quantity(gateway, cli, tmp_path):
    gateway.script("p-201", [Ack(), Fill(3, 100.0, commission=1.0), Reject("exchange closed",
                                                                           delay=0.2)])
    start = time.monotonic()
    code, out, err = one_shot(cli, gateway, "p-201")
    assert code == 4 and time.monotonic() - start < 4
    assert out.startswith("[one-shot] tag=p-201 state=REJ fill_qty=3 avg_px=100.00")
    assert "201 Order rejected - reason:exchange closed" in err
    r = rows(tmp_path, "p-201")
    assert [x["event"] for x in r] == ["INTENT", "ACK", "PARTIAL", "REJ"]
    assert r[-1]["fill_qty"] == 3 and r[-1]["commission"] == 1.0
    assert working(gateway, "p-201") == []
