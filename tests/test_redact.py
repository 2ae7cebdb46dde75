"""Account ids are masked (`DU1234567` -> `DU****567`) in everything runner prints and
logs, ib_async's own log lines included, unless `--show-account`; the ledger keeps them."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from leaks import UNMASKED

from runner.cli import main
from runner.gateway import Ack, Fill
from runner.ledger import read_ledger
from runner.redact import redact, redacted_output


@pytest.mark.parametrize(("text", "shown"), [
    ("DU1234567", "DU****567"),
    ("accounts U7654321, DF9876543", "accounts U****321, DF****543"),
    ("F12345678 and I1234", "F*****678 and I*234"),
    ("(U7654321);", "(U****321);"),
    ("UTC 20260105 U12 DUX1234567 SPY 473.10 orderRef=sanity_SPY_1767623400",
     "UTC 20260105 U12 DUX1234567 SPY 473.10 orderRef=sanity_SPY_1767623400"),
])
def test_redact(text, shown):
    assert redact(text) == shown


def test_output_and_log_records_are_masked_then_restored(caplog):
    out, err = io.StringIO(), io.StringIO()
    sys_out, sys_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        with caplog.at_level(logging.INFO, logger="ib_async"):
            with redacted_output():
                print("account DU1234567")
                print("live U7654321", file=sys.stderr)
                logging.getLogger("ib_async.wrapper").info("managed accounts: %s", "DU1234567")
            assert (sys.stdout, sys.stderr) == (out, err)  # restored
            logging.getLogger("ib_async.wrapper").info("after: %s", "DU1234567")
    finally:
        sys.stdout, sys.stderr = sys_out, sys_err
    assert (out.getvalue(), err.getvalue()) == ("account DU****567\n", "live U****321\n")
    assert [r.getMessage() for r in caplog.records] == ["managed accounts: DU****567",
                                                       "after: DU1234567"]


def test_disabled_passes_everything_through(capsys):
    with redacted_output(enabled=False):
        print("DU1234567")
    assert capsys.readouterr().out == "DU1234567\n"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture):
    """Run `runner ...` against a gateway; returns everything it printed and logged."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IB_CONNECT_TIMEOUT", "3")
    caplog.set_level(logging.DEBUG)

    def run(port: int, *args: str) -> tuple[int, str]:
        monkeypatch.setenv("IB_GATEWAY_PORT", str(port))
        caplog.clear()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out + err + caplog.text

    return run


def ib_session(gw_port: int, live_port: int, cli, tmp_path: Path, *flags: str) -> str:
    """The ib paths that know accounts, verbose, all output and logs joined."""
    (tmp_path / "w.yaml").write_text("version: 1\nkind: one-shot\nttl_sec: 0.2\n"
                                     "order: {symbol: SPY, side: BUY, qty: 1, limit: 10.00}\n")
    runs = [
        (0, gw_port, "handshake", "-vv"),
        (0, gw_port, "sanity-cancel", "-vv", "--tag", "r-1"),
        (0, gw_port, "one-shot", "-vv", "--qty", "2", "--limit", "99.00", "--tag", "r-2",
         "--ttl_sec", "0.2"),
        (0, gw_port, "run", "w.yaml", "--json", "-vv"),
        (0, gw_port, "plan", "w.yaml", "--broker", "-vv"),
        (0, gw_port, "plan", "w.yaml", "--broker", "--json"),
        (2, live_port, "sanity-cancel", "-vv", "--tag", "r-3"),  # refused: a live account
        (0, gw_port, "ledger", "show", "--json"),
        (0, gw_port, "ledger", "show"),
    ]
    seen = ""
    for expected, port, *args in runs:
        code, text = cli(port, *args, *flags)
        assert code == expected, text
        seen += text
    return seen


def test_no_account_id_in_any_output_or_log_of_the_ib_paths(make_gateway, cli, tmp_path):
    gw, live = make_gateway(), make_gateway(accounts=("U7654321",))
    gw.script("r-2", [Ack(), Fill(2, 99.00, commission=1.0)])
    seen = ib_session(gw.port, live.port, cli, tmp_path)
    assert UNMASKED.findall(seen) == []
    assert "DU****567" in seen and "U****321" in seen  # masked, and there to see
    # the ledger is data, not output: it keeps the real account
    accounts = set(read_ledger(tmp_path / "data" / "exec").column("account").to_pylist())
    assert accounts == {"DU1234567"}


def test_show_account_prints_them_in_full(make_gateway, cli, tmp_path):
    gw, live = make_gateway(), make_gateway(accounts=("U7654321",))
    seen = ib_session(gw.port, live.port, cli, tmp_path, "--show-account")
    assert {"DU1234567", "U7654321"} <= set(UNMASKED.findall(seen))


# --- escaped text: JSON, repr() and tracebacks write a newline before an id as `\n` ------

@pytest.mark.parametrize(("text", "shown"), [
    (r'"message": "x\nDU1234567"', r'"message": "x\nDU****567"'),  # json.dumps("x\nDU...")
    (r"'x\tU7654321'", r"'x\tU****321'"),  # repr("x\tU7654321")
    (r"\rF12345678 \0I1234", r"\rF*****678 \0I*234"),
    (r"\u00e9DU1234567 \x85U1234567 \U0001f600DU1234567",
     r"\u00e9DU****567 \x85U****567 \U0001f600DU****567"),
    (r"\101U1234", r"\101U*234"),  # octal
    (r"\x4DU1234567", r"\x4DU****567"),  # the D ends an escape: the U stands alone
    (r"\\nDU1234567", r"\\nDU****567"),  # an escaped backslash, then n: masked all the same
    ("éDU1234567 ДU7654321", "éDU****567 ДU****321"),  # only ASCII letters glue
    ("DU1234567é", "DU****567é"),
    # not account ids: glued to literal ASCII word text, or too many digits
    ("ABCU12345 xDU1234567 DU1234567x _U1234567 U12345678901 DDU1234567",
     "ABCU12345 xDU1234567 DU1234567x _U1234567 U12345678901 DDU1234567"),
    (r"\nABCU12345 nDU1234567", r"\nABCU12345 nDU1234567"),
])
def test_redact_escaped(text, shown):
    assert redact(text) == shown
    assert UNMASKED.findall(shown) == []


# What may stand right before or after an id: escapes (as the characters they are and as
# the backslash text that writes them), quotes, punctuation, any non-ASCII character.
BOUNDARY = st.one_of(
    st.sampled_from(["\n", "\t", "\r", "\\", '"', "'", "\\n", "\\t", "\\r", '\\"', "\\\\",
                     "\\u00e9", "\\x85", "\\0", " ", ",", ";", ":", "(", ")", "[", "]", "{",
                     "}", "=", "/", "-", ".", "!", "?", "<", ">", "|", "*", "#", "%", "&",
                     "@", "+", "~", "`", "$", "^", "\x00", "\x1b"]),
    st.characters(min_codepoint=0x80, exclude_categories=("Cs",)),
)
ACCOUNT_IDS = st.builds(lambda paper, letter, digits: ("D" if paper else "") + letter + digits,
                        st.booleans(), st.sampled_from("UFI"),
                        st.text("0123456789", min_size=4, max_size=10))


@st.composite
def texts_with_ids(draw: st.DrawFn, boundary: st.SearchStrategy[str] = BOUNDARY,
                   ) -> tuple[str, list[str]]:
    """A text of one to three account ids, each between boundaries; and the ids."""
    ids = draw(st.lists(ACCOUNT_IDS, min_size=1, max_size=3))
    parts = []
    for account in ids:
        parts += draw(st.lists(boundary, min_size=1, max_size=3)) + [account]
    parts += draw(st.lists(boundary, min_size=1, max_size=2))
    return "".join(parts), ids


def encodings(text: str) -> list[str]:
    """The ways output writes a string: as is, JSON (ASCII or not), repr, and nested."""
    return [text, json.dumps(text), json.dumps(text, ensure_ascii=False), repr(text),
            json.dumps(repr(text)), repr(json.dumps(text)), repr(repr(text))]


def assert_no_leak(output: str, ids: list[str]) -> None:
    assert UNMASKED.findall(output) == [], output
    for account in ids:
        assert account not in output, (account, output)


@settings(max_examples=400, deadline=None)
@given(texts_with_ids())
def test_property_raw_and_escaped_ids_never_survive_redact(case):
    text, ids = case
    for form in encodings(text):
        assert_no_leak(redact(form), ids)


ALPHABET = st.sampled_from(list("DUFIx0123456789_\\\"' nt") + [
    "\\u00e9", "\\x4", "\\n", "\\t", "é", "\n", "U1234", "DU12345", "F123456789"])


@settings(max_examples=400, deadline=None)
@given(st.lists(ALPHABET, max_size=40).map("".join))
def test_property_redact_masks_exactly_what_the_leak_check_calls_an_id(text):
    """Two independent statements of the rule (tests/leaks.py: look-behinds; redact.py:
    a scan and a check of what stands before) agree on any mix of ids, words and escapes."""
    assert UNMASKED.findall(redact(text)) == []
    assert (redact(text) != text) == bool(UNMASKED.findall(text))


# --- through the real output paths --------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:  # the live status line draws only on a terminal
        return True


def run_cli(*args: str, tty: bool = False) -> tuple[int, str]:
    """`runner ARGS` in-process in the current folder; (exit code, stdout + stderr)."""
    out, err = (_Terminal() if tty else io.StringIO()), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue() + err.getvalue()


@contextlib.contextmanager
def fresh_folder() -> Iterator[Path]:
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            yield Path(folder)
        finally:
            os.chdir(here)


# a tag can carry an id after one of its separators: "t-DU1234567", "a.U1234:x"
TAG_BOUNDARY = st.sampled_from(["-", ".", ":"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts_with_ids(), texts_with_ids(TAG_BOUNDARY))
def test_property_dry_run_status_line_and_json_leak_no_id(message, tag):
    """A sim reject message (the broker's text, in a real run) and a tag with ids: the
    live status line, the final status line, the rejection, `run --json`."""
    text, ids = message
    # a spec refuses control characters (a broker's text may carry them; the unit property
    # above covers raw ones): here they come escaped, as `\n` would sit in a JSON log
    text = text.encode("unicode_escape").decode("ascii")
    tag_text = "t" + tag[0][:60]
    spec = {"version": 1, "kind": "one-shot", "ttl_sec": 1, "sim": {"reject": text},
            "order": {"symbol": "SPY", "side": "BUY", "qty": 1, "limit": 10.0, "tag": tag_text}}
    with fresh_folder() as folder:
        (folder / "s.yaml").write_text(yaml.safe_dump(spec, allow_unicode=False))
        code, seen = run_cli("run", "s.yaml", "--dry-run", tty=True)
        assert code == 4, seen  # rejected, and said so
        assert "state=REJ" in seen
        code, json_out = run_cli("run", "s.yaml", "--dry-run", "--json", "--allow-duplicate")
        assert code == 4 and json.loads(json_out.splitlines()[0])["results"][0]["state"] == "REJ"
        (folder / "c.yaml").write_text(yaml.safe_dump(
            {"version": 1, "kind": "sanity-cancel",
             "order": {"symbol": "SPY", "side": "BUY", "qty": 1, "limit": 0.01,
                       "tag": tag_text + "-c"}}))
        code, cancel = run_cli("run", "c.yaml", "--dry-run")
        assert code == 0 and "ACK+Cancel recorded" in cancel, cancel
        code, shown = run_cli("ledger", "show")
        assert code == 0
    assert_no_leak(seen + json_out + cancel + shown, ids + tag[1])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ACCOUNT_IDS, texts_with_ids())
def test_property_ledger_show_leaks_no_id(account, message):
    from runner.ledger import Ledger

    text, ids = message
    with fresh_folder() as folder:
        ledger = Ledger(folder / "data" / "exec", "2026-01-05", "r1").open()
        for i, event in enumerate(("INTENT", "REJ")):
            ledger.append({"ts": 1_767_623_400 * 10**9 + i, "tag": "t-1", "event": event,
                           "account": account, "message": text if i else None,
                           "symbol": "SPY", "side": "BUY", "qty": 1.0})
        ledger.commit()
        code, as_json = run_cli("ledger", "show", "2026-01-05", "--json")
        assert code == 0 and [e["account"] for e in json.loads(as_json)["events"]] == [
            redact(account)] * 2
        code, as_text = run_cli("ledger", "show", "2026-01-05")
        assert code == 0
    assert_no_leak(as_json + as_text, ids + [account])


def _raise(kind: str, text: str) -> None:
    if kind == "value":
        raise ValueError(text)
    if kind == "key":  # str(KeyError) is the repr of its argument: escaped
        raise KeyError(text)
    if kind == "chained":
        try:
            raise OSError(2, text, "/tmp/" + text)
        except OSError as e:
            raise RuntimeError(f"while reading {text!r}") from e
    error = LookupError("failed")
    error.add_note(text)
    raise error


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["value", "key", "chained", "note"]), texts_with_ids())
def test_property_verbose_traceback_of_an_unexpected_error_leaks_no_id(kind, message):
    text, ids = message
    with mock.patch("runner.commands.validate", side_effect=lambda *a, **k: _raise(kind, text)):
        code, verbose = run_cli("validate", "x.yaml", "-v")
        assert code == 1 and "Traceback (most recent call last):" in verbose, verbose
        code, brief = run_cli("validate", "x.yaml")
        assert code == 1 and "runner: unexpected error: " in brief
    assert_no_leak(verbose + brief, ids)


def test_verbose_traceback_is_printed_masked_and_whole():
    with mock.patch("runner.commands.validate", side_effect=KeyError("acct x\nDU1234567")):
        code, seen = run_cli("validate", "x.yaml", "-v")
    assert code == 1
    assert seen.startswith("Traceback (most recent call last):\n")
    assert seen.endswith("KeyError: 'acct x\\nDU****567'\n")
    assert "in _dispatch" in seen  # the frames are there


def test_a_logged_exception_is_masked_whatever_handler_formats_it(caplog):
    try:
        raise ValueError("bad account x\nDU1234567")
    except ValueError:
        with redacted_output(), caplog.at_level(logging.ERROR, logger="ib_async"):
            logging.getLogger("ib_async.decoder").exception("Error for %s", "U7654321",
                                                            stack_info=True)
    assert "ValueError: bad account x\nDU****567" in caplog.text
    assert UNMASKED.findall(caplog.text) == [] and "U****321" in caplog.text


def test_a_backslash_before_an_underscore_is_no_escape() -> None:
    """`\\_` stands for no character in JSON or repr(): the `_` glues, as in `x_U1234`
    (found by the property test above)."""
    assert redact("\\_U1234") == "\\_U1234" and UNMASKED.findall("\\_U1234") == []
    assert redact("\\nU1234") == "\\nU*234"
