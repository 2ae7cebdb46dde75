"""`runner COMMAND --help`: every flag explained, its default shown, and only the flags
the command uses (issue 14)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import pytest

from runner.cli import PROJECT_DATA_EXEC, build_parser, main


def parsers(parser: argparse.ArgumentParser | None = None
            ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every (sub)command parser, by its prog ("runner", "runner ledger show", ...)."""
    parser = parser or build_parser()
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from parsers(sub)


def shows_a_default(action: argparse.Action) -> bool:
    """A default worth saying: not unset, not off (a flag), not a zero count."""
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
        return False
    return action.default not in (None, False, 0, argparse.SUPPRESS)


PROGS = [prog for prog, _ in parsers()]


def test_the_walk_sees_every_command() -> None:
    assert PROGS == [
        "runner", "runner validate", "runner plan", "runner run", "runner test",
        "runner ledger", "runner ledger show", "runner ledger query", "runner tca",
        "runner recover", "runner handshake", "runner sanity-cancel", "runner one-shot",
        "runner orders", "runner cancel", "runner positions",
        "runner schema", "runner gateway"]  # gateway: a stub; its own parser has the flags


@pytest.mark.parametrize("prog", PROGS)
def test_every_flag_has_a_help_line_and_shows_its_default(prog: str) -> None:
    parser = dict(parsers())[prog]
    text = parser.format_help()
    for action in parser._actions:
        name = "/".join(action.option_strings) or action.dest
        assert action.help and action.help is not argparse.SUPPRESS, f"{prog} {name}: no help"
        if action.default is PROJECT_DATA_EXEC:  # resolved when used: said in words
            assert "(default: data/exec in the project root" in action.help, (prog, name)
        elif shows_a_default(action):
            assert "%(default)s" in action.help, f"{prog} {name}: default not shown"
            assert f"(default: {action.default})" in " ".join(text.split()), (prog, name)


def options(prog: str) -> set[str]:
    parser = dict(parsers())[prog]
    return {o for a in parser._actions for o in a.option_strings} - {"-h", "--help", "-v",
                                                                     "--verbose",
                                                                     "--show-account"}


ORDER = {"--dry-run", "--dry_run", "--at", "--allow-duplicate", "--allow-unsettled", "--json",
         "--policy", "--symbol", "--side", "--qty", "--limit", "--outside-rth",
         "--outside_rth", "--bars_path", "--bars-path", "--tag", "--out_dir", "--out-dir",
         # the instrument (runner.instrumentflags), each also spelled with '_'
         *(f"--{name}{sep}{rest}" for name, rest in (
             ("sec", "type"), ("con", "id"), ("local", "symbol"), ("trading", "class"),
             ("primary", "exchange")) for sep in "-_"),
         "--exchange", "--currency", "--expiry", "--strike", "--right", "--multiplier",
         "--account"}


ORDER_TYPES = {"--type", "--stop", "--trail-amount", "--trail_amount", "--trail-percent",
               "--trail_percent", "--offset", "--cap", "--good-till", "--good_till",
               "--cash-qty", "--cash_qty"}


def test_each_classic_command_has_only_the_flags_it_uses() -> None:
    assert options("runner handshake") == {"--dry-run", "--dry_run", "--json"}
    assert options("runner sanity-cancel") == ORDER
    assert options("runner one-shot") == ORDER | {"--tif", "--arrival", "--ttl_sec", "--ttl-sec",
                                                  *ORDER_TYPES}
    assert options("runner run") == {"--dry-run", "--dry_run", "--at", "--allow-duplicate",
                                     "--allow-unsettled", "--json", "--policy", "--out-dir",
                                     "--out_dir", "--live", "--allow-outside"}


@pytest.mark.parametrize("flag", ["--allow-duplicate", "--allow-unsettled", "--allow-outside",
                                  "--at=1767623400", "--policy=p.yaml", "--out-dir=x"])
def test_a_flag_handshake_does_not_use_is_a_usage_error(flag: str, capsys) -> None:
    assert main(["handshake", "--dry-run", flag]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"runner: unrecognized arguments: {flag} "
                   "(see `runner handshake --help`)\n")


def test_handshake_still_runs_with_the_flags_it_keeps(capsys) -> None:
    """run_command reads every `run` flag: a classic command supplies the ones it lacks."""
    assert main(["handshake", "--dry-run"]) == 0
    assert capsys.readouterr().out == "IBKR handshake OK (dry-run: simulator, nothing contacted)\n"


def test_help_does_not_break_a_flag_at_its_hyphen(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as done:
        main(["one-shot", "--help"])
    assert done.value.code == 0
    broken = [line for line in capsys.readouterr().out.splitlines()
              if re.search(r"\w-$", line.rstrip())]
    assert broken == []
