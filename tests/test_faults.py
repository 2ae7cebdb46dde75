"""Faults that must lose nothing and send nothing they should not: a full disk before and
after the INTENT, and hostile spec input (a hypothesis property test)."""

from __future__ import annotations

import dataclasses
import io
import math
import os
import re
import resource
import socket
import subprocess
import sys
import threading
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.cli import main
from runner.ledger import read_ledger
from runner.spec import load as load_spec

REPO = Path(__file__).resolve().parent.parent
PLACE, CANCEL = "3", "4"


def run_limited(port: int, cwd: Path, max_file_bytes: int, *args: str,
                **env: str) -> subprocess.CompletedProcess[str]:
    """`runner ...` whose files may not grow past `max_file_bytes`: a full disk. (CPython
    ignores SIGXFSZ, so a write past the limit fails with EFBIG, as on a full disk.)"""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    full = dict(os.environ, IB_GATEWAY_PORT=str(port), IB_CONNECT_TIMEOUT="3",
                PYTHONDONTWRITEBYTECODE="1", **env)
    full.pop("COVERAGE_PROCESS_CONFIG", None)  # coverage could not write its data either
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, env=full,
                          preexec_fn=limit, capture_output=True, text=True, timeout=60)


def sent(gw: Any, msg_id: str) -> list[tuple[str, ...]]:
    return [f for _, f in gw.received if f[0] == msg_id]


def test_disk_full_before_the_intent_sends_nothing(gateway, tmp_path):
    done = run_limited(gateway.port, tmp_path, 64, "one-shot", "--limit", "10.00",
                       "--tag", "full-1")
    assert done.returncode == 1
    assert done.stderr.startswith("runner: cannot write the ledger journal ")
    assert "File too large; the order was not sent (free disk space" in done.stderr
    assert sent(gateway, PLACE) == []


def intent_bytes(gateway: Any, tmp_path: Path) -> int:
    """The size of one INTENT line: a run that dies right after journaling it."""
    probe = tmp_path / "probe"
    probe.mkdir()
    done = run_limited(gateway.port, probe, 1 << 30, "one-shot", "--limit", "10.00", "--tag",
                       "full-2", RUNNER_FAILPOINT="after-intent")
    assert done.returncode == -9
    (journal,) = probe.glob("data/exec/*/_journal-*.jsonl")
    return journal.stat().st_size


def test_disk_full_after_the_intent_cancels_and_prints_the_events(gateway, tmp_path):
    room = intent_bytes(gateway, tmp_path) + 100  # the INTENT fits, the ACK does not
    done = run_limited(gateway.port, tmp_path, room, "one-shot", "--limit", "10.00",
                       "--ttl_sec", "30", "--tag", "full-2")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    printed = [line for line in lines if line.startswith("runner: unjournaled event: ")]
    assert [re.search(r'"event": "(\w+)"', line)[1] for line in printed] == ["ACK", "CANCEL"]
    assert lines[-1].startswith("runner: cannot write the ledger journal ")
    assert "the order was cancelled and 2 later event(s) were printed above" in lines[-1]
    assert len(sent(gateway, CANCEL)) == 1
    assert [o.status for o in gateway.orders_by_ref("full-2")][-1] == "Cancelled"
    # with room again, recover merges the journal and settles the order
    env = dict(os.environ, IB_GATEWAY_PORT=str(gateway.port))
    out = subprocess.run([sys.executable, "-m", "runner", "recover"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "full-2: cancelled at the broker" in out.stdout
    rows = [r for r in read_ledger(tmp_path / "data" / "exec").to_pylist()
            if r["tag"] == "full-2"]
    assert [r["event"] for r in rows] == ["INTENT", "CANCEL"]


# --- hostile input ------------------------------------------------------------------


class Listener:
    """A loopback TCP listener that counts connections: proof that none is made."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["SPY", "BUY", "SELL", "one-shot", "handshake", "sanity-cancel", "DAY",
                     "IOC", "live", "paper", "../../etc", "/tmp/x", ".nan", "1e999"]),
    # hostile: numbers that do not fit, text with a line break or a control character
    st.integers(-10**420, 10**420), st.sampled_from([2**53 + 1, 10**400, 1e-300, 5e-324]),
    st.sampled_from(["t67\n", "SPY\n", "a\tb", "x\u202ey", "data\x01", "\r"]),
    st.text(max_size=5).map(lambda t: t + "\n"),
)
KEYS = st.one_of(st.text(max_size=12), st.sampled_from(
    ["version", "kind", "order", "symbol", "side", "qty", "limit", "tif", "tag", "ttl_sec",
     "bars_path", "out_dir", "limits", "max_qty", "sim", "expect", "mode", "allow_market"]))
DOCS = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)), max_leaves=20)


def _valid_specs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((REPO / "specs").rglob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    return docs


VALID = _valid_specs()


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    spec = yaml.safe_load(yaml.safe_dump(draw(st.sampled_from(VALID))))
    for _ in range(draw(st.integers(1, 3))):
        target = spec
        if isinstance(spec.get("order"), dict) and draw(st.booleans()):
            target = spec["order"]
        action = draw(st.sampled_from(["drop", "set", "add"]))
        if action == "drop" and target:
            target.pop(draw(st.sampled_from(sorted(target, key=str))), None)
        elif action == "set" and target:
            target[draw(st.sampled_from(sorted(target, key=str)))] = draw(DOCS)
        else:
            target[draw(KEYS)] = draw(DOCS)
    return spec


def _text(doc: Any) -> str:
    try:
        return yaml.safe_dump(doc, allow_unicode=True)
    except yaml.YAMLError:
        return repr(doc)


INPUTS = st.one_of(
    DOCS.map(_text), mutated().map(_text), st.text(max_size=200),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
)


BAD_TEXT = re.compile("[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029\\u202a-\\u202e]")


def _values(node: Any) -> list[Any]:
    """Every leaf value of a frozen spec (dataclasses, tuples)."""
    if dataclasses.is_dataclass(node):
        return [v for f in dataclasses.fields(node) for v in _values(getattr(node, f.name))]
    if isinstance(node, tuple):
        return [v for item in node for v in _values(item)]
    return [node]


@pytest.fixture(scope="module")
def listener() -> Listener:
    return Listener()


@settings(max_examples=2000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(text=INPUTS)
def test_hostile_spec_validates_or_exits_2_in_one_line(text, tmp_path_factory, listener,
                                                       monkeypatch):
    work = tmp_path_factory.getbasetemp() / "hostile"
    work.mkdir(exist_ok=True)
    for leftover in work.iterdir():
        leftover.unlink()
    monkeypatch.chdir(work)
    monkeypatch.setenv("IB_GATEWAY_PORT", str(listener.port))
    (work / "x.yaml").write_text(text, encoding="utf-8", errors="surrogateescape")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["validate", "x.yaml"])
    assert code in (0, 2), err.getvalue()
    assert "Traceback" not in err.getvalue() + out.getvalue()
    if code == 0:  # what passes holds only values that fit: no control text, no huge number
        for spec in load_spec("x.yaml"):
            for value in _values(spec):
                assert not (isinstance(value, str) and BAD_TEXT.search(value)), value
                assert not isinstance(value, float) or math.isfinite(value), value
                assert type(value) is not int or abs(value) <= 2**53, value
                if spec.order and spec.order.limit is not None and spec.order.sec_type == "STK":
                    assert spec.order.limit >= 0.0001, spec.order.limit
    if code == 2:
        lines = err.getvalue().splitlines()
        assert lines and all(re.match(r"x\.yaml:\d+:\d+: \S", line) for line in lines), lines
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            assert main(["run", "x.yaml"]) == 2  # the same verdict, and nothing else
        assert listener.connections == 0
        assert not (work / "data").exists() and list(work.iterdir()) == [work / "x.yaml"]
