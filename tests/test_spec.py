"""Spec loading: every invalid spec exits 2 with its exact file:line:col message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from runner.cli import main
from runner.spec import SCHEMA_PATH

REPO = Path(__file__).resolve().parent.parent

V = "version: 1\n"
OS = V + "kind: one-shot\n"
SC = V + "kind: sanity-cancel\n"
def order(**kw):
    base = {"symbol": "SPY", "side": "BUY", "qty": "1", "limit": "10.00"}
    base.update(kw)
    return "order:\n" + "".join(f"  {k}: {v}\n" for k, v in base.items() if v is not None)
CASES = {
 "typo_top": OS + order() + "ttl_secs: 2\n",
 "typo_order": OS + order(limt="10", limit=None),
 "typo_far": OS + order() + "xyzzy: 1\n",
 "qty_string": OS + order(qty="'one'"),
 "qty_negative": OS + order(qty="-1"),
 "qty_zero": OS + order(qty="0"),
 "qty_fraction_stk": OS + order(qty="1.5"),
 "qty_bool": OS + order(qty="yes"),
 "limit_negative": OS + order(limit="-10"),
 "limit_zero": OS + order(limit="0"),
 "limit_off_tick": OS + order(limit="10.005"),
 "limit_nan": OS + order(limit=".nan"),
 "limit_inf": OS + order(limit=".inf"),
 "qty_huge_inf": OS + order(qty="1e999"),
 "side_lower": OS + order(side="buy"),
 "side_bad": OS + order(side="HOLD"),
 "side_typo": OS + order(side="BUYY"),
 "tif_lower": OS + order(tif="gtc"),
 "tif_bad": OS + order(tif="XYZ"),  # FOK is a tif since issue 16
 "sectype_bad": OS + order(sec_type="BOND"),
 "symbol_bad": OS + order(symbol="'spy;rm'"),
 "currency_bad": OS + order(currency="usd"),
 "missing_limit_sanity": SC + order(limit=None),
 "sanity_ioc": SC + order(limit="0.01", tif="IOC"),
 "sanity_ttl": SC + order(limit="0.01") + "ttl_sec: 2\n",
 "market_no_allow": OS + order(limit=None),
 "missing_order": OS,
 "missing_side": OS + order(side=None),
 "missing_kind": V,
 "missing_version": "kind: handshake\n",
 "unknown_kind": V + "kind: oneshot\n",
 "version_2": "version: 2\nkind: handshake\n",
 "handshake_order": V + "kind: handshake\n" + order(),
 "ttl_negative": OS + order() + "ttl_sec: -1\n",
 "ttl_huge": OS + order() + "ttl_sec: 100000\n",
 "ttl_string": OS + order() + "ttl_sec: soon\n",
 "limits_qty": OS + order(qty="200") + "limits:\n  max_qty: 100\n",
 "limits_notional": OS + order(qty="10", limit="500.00") + "limits:\n  max_notional: 1000\n",
 "limits_unknown": OS + order() + "limits:\n  max_qty: 100\n  max_qtty: 5\n",
 "mode_bad": OS + order() + "mode: real\n",
 "sim_bad_participation": OS + order() + "sim:\n  participation: 2\n",
 "sim_unknown": OS + order() + "sim:\n  rejct: no\n",
 "expect_bad_state": OS + order() + "expect:\n  state: FILLED\n",
 "bars_abs": OS + order() + "bars_path: /etc/passwd\n",
 "out_dir_escape": OS + order() + "out_dir: ../../tmp\n",
 "order_list": OS + "order: [SPY, BUY]\n",
 "tab_indent": OS + "order:\n\tsymbol: SPY\n",
 "dup_key": OS + "kind: handshake\n" + order(),
 "dup_key_nested": OS + order() + "  qty: 2\n",
 "python_tag": "!!python/object/apply:os.system ['echo hi']\n",
 "python_tag_nested": OS + order(symbol="!!python/name:os.system ''"),
 "root_list": "- version: 1\n",
 "root_scalar": "hello\n",
 "root_null": "~\n",
 "comment_only": "# nothing here\n",
 "flow_unclosed": OS + "order: {symbol: SPY, side: BUY\n",
 "bad_indent": OS + "order:\n  symbol: SPY\n    side: BUY\n",
 "alias_bomb": "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
 "deep_nesting": OS + "sim:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(20)) + "  " * 21 + "x: 1\n",
 "multi_doc_second_bad": V + "kind: handshake\n---\n" + OS + order(qty="-2"),
 "empty_second_doc": V + "kind: handshake\n---\n",
 "name_bad": V + "kind: handshake\nname: 'has spaces'\n",
 "tag_bad": OS + order(tag="'a b'"),
 # hostile input: numbers that do not fit, text with control characters, sub-tick limits
 "qty_400_digits": OS + order(qty="1" + "0" * 399),
 "qty_5000_digits": OS + order(qty="1" + "0" * 4999),
 "qty_2_pow_53_plus_1": OS + order(qty=str(2**53 + 1)),
 "qty_overflow": OS + order(qty="1.0e+400"),
 "limit_underflow": OS + order(limit="1.0e-400"),
 "limit_1e_300": OS + order(limit="1.0e-300"),
 "limit_1e_300_text": OS + order(limit="1e-300"),
 "limit_subnormal": OS + order(limit="5.0e-324"),
 "limit_below_tick": OS + order(limit="0.00005"),
 "limit_float_noise": OS + order(limit="0.30000000000000004"),
 "limit_huge_int": OS + order(limit="9" * 30),
 "sim_huge_int": OS + order() + "sim:\n  ack_ms: " + "9" * 20 + "\n",
 "huge_int_key": OS + order() + "9" * 30 + ": 1\n",
 "tag_newline": OS + order(tag='"t67\\n"'),
 "tag_block_newline": OS + order() + "  tag: |\n    t67\n",
 "symbol_newline": OS + order(symbol='"SPY\\n"'),
 "name_tab": V + 'kind: handshake\nname: "a\\tb"\n',
 "bars_path_bidi": OS + order() + 'bars_path: "x\\u202e.parquet"\n',
 "out_dir_control": OS + order() + 'out_dir: "data\\x01"\n',
 "expect_message_newline": OS + order() + 'expect:\n  message: "a\\nb"\n',
 "all_errors_with_a_huge_number": OS + order(qty="9" * 30, side="buy"),
 "key_newline": V + 'kind: handshake\n"x\\n": 1\n',
}

EXPECTED = {
    'typo_top': ['8:1: ttl_secs: unknown key (did you mean ttl_sec?)'],
    'typo_order': ['7:3: order.limt: unknown key (did you mean limit?)'],
    'typo_far': ['8:1: xyzzy: unknown key (expected one of: arrival, at, bars_path, contract, expect, kind, limits, mode, name, order, out_dir, sim, ttl_backstop, ttl_sec, version)'],
    'qty_string': ["6:8: order.qty: expected a number, got string 'one'"],
    'qty_negative': ['6:8: order.qty: must be > 0, got -1'],
    'qty_zero': ['6:8: order.qty: must be > 0, got 0'],
    'qty_fraction_stk': ['6:8: order.qty: must be a whole number of shares for STK, got 1.5'],
    'qty_bool': ['6:8: order.qty: expected a number, got boolean True'],
    'limit_negative': ['7:10: order.limit: must be > 0, got -10'],
    'limit_zero': ['7:10: order.limit: must be > 0, got 0'],
    'limit_off_tick': ['7:10: order.limit: 10.005 is not on the tick grid (0.01); use 10.01'],
    'limit_nan': ['7:10: order.limit: nan is not a finite number'],
    'limit_inf': ['7:10: order.limit: inf is not a finite number'],
    'qty_huge_inf': ["6:8: order.qty: expected a number, got string '1e999' (YAML reads 1e999 as text; as a number it would not fit a 64-bit float)"],
    'side_lower': ["5:9: order.side: 'buy' is not one of BUY, SELL (did you mean BUY?)"],
    'side_bad': ["5:9: order.side: 'HOLD' is not one of BUY, SELL"],
    'tif_bad': ["8:8: order.tif: 'XYZ' is not one of DAY, IOC, GTC, GTD, OPG, FOK"],
    'sectype_bad': ["8:13: order.sec_type: 'BOND' is not one of STK, CASH, CRYPTO"],
    'symbol_bad': ["4:11: order.symbol: 'spy;rm' does not match ^[A-Z0-9][A-Z0-9. /-]{0,15}$ (upper-case letters, digits, '.', '/', '-', space; e.g. SPY or BRK B)"],
    'currency_bad': ["8:13: order.currency: 'usd' does not match ^[A-Z]{3}$ (a three-letter ISO code in capitals, e.g. USD)"],
    'missing_limit_sanity': ['4:3: order: sanity-cancel needs a limit far from the market (add order.limit, e.g. 0.01 for a BUY)'],
    'sanity_ioc': ['8:8: order.tif: sanity-cancel needs a resting order: use DAY or GTC'],
    'sanity_ttl': ['8:1: ttl_sec: only one-shot uses ttl_sec (sanity-cancel cancels right after the ACK); remove it'],
    'market_no_allow': ['4:3: order: no limit: a market order needs `allow_market: true` (or add order.limit)'],
    'missing_order': ["1:1: missing required key 'order'"],
    'missing_side': ["4:3: order: missing required key 'side'"],
    'missing_kind': ["1:1: missing required key 'kind'"],
    'missing_version': ["1:1: missing required key 'version'"],
    'side_typo': ["5:9: order.side: 'BUYY' is not one of BUY, SELL (did you mean BUY?)"],
    'tif_lower': ["8:8: order.tif: 'gtc' is not one of DAY, IOC, GTC, GTD, OPG, FOK (did you mean GTC?)"],
    'unknown_kind': ["2:7: kind: 'oneshot' is not one of handshake, sanity-cancel, one-shot (did you mean one-shot?)"],
    'version_2': ['1:10: version: must be 1, got 2'],
    'handshake_order': ['3:1: order: not used by kind handshake; remove it'],
    'ttl_negative': ['8:10: ttl_sec: must be > 0, got -1'],
    'ttl_huge': ['8:10: ttl_sec: must be <= 86400, got 100000'],
    'ttl_string': ["8:10: ttl_sec: expected a number, got string 'soon'"],
    'limits_qty': ['6:8: order.qty: 200 exceeds limits.max_qty 100'],
    'limits_notional': ['4:3: order: notional 5,000 (qty x limit) exceeds limits.max_notional 1,000'],
    'limits_unknown': ['10:3: limits.max_qtty: unknown key (did you mean max_qty?)'],
    'mode_bad': ["8:7: mode: 'real' is not one of paper, live"],
    'sim_bad_participation': ['9:18: sim.participation: must be <= 1, got 2'],
    'sim_unknown': ['9:3: sim.rejct: unknown key (did you mean reject?)'],
    'expect_bad_state': ["9:10: expect.state: 'FILLED' is not one of FILL, CANCEL, REJ, UNSETTLED, UNKNOWN, OPEN (did you mean FILL?)"],
    'bars_abs': ["8:12: bars_path: '/etc/passwd' is outside the project root ROOT (the working directory: no folder with .git above the spec); use a relative path inside it, or pass --allow-outside"],
    'out_dir_escape': ["8:10: out_dir: '../../tmp' is outside the project root ROOT (the working directory: no folder with .git above the spec); use a relative path inside it, or pass --allow-outside"],
    'order_list': ['3:8: order: expected a mapping, got a list'],
    'tab_indent': ['4:1: YAML syntax error: tab character; YAML indents with spaces only'],
    'dup_key': ['3:1: kind: duplicate key'],
    'dup_key_nested': ['8:3: order.qty: duplicate key'],
    'python_tag': ['1:1: unsupported YAML tag !!python/object/apply:os.system: specs are plain YAML (safe loader only)'],
    'python_tag_nested': ['4:11: unsupported YAML tag !!python/name:os.system: specs are plain YAML (safe loader only)'],
    'root_list': ['1:1: a spec must be a mapping of keys (`version: 1`, `kind: ...`), got a list'],
    'root_scalar': ['1:1: a spec must be a mapping of keys (`version: 1`, `kind: ...`), got string'],
    'root_null': ["1:1: document 1 is empty (remove the extra '---' or write a spec in it)"],
    'comment_only': ['1:1: empty file: no spec in it (start with `version: 1`)'],
    'flow_unclosed': ["4:1: YAML syntax error: while parsing a flow mapping: did not find expected ',' or '}'"],
    'bad_indent': ['5:9: YAML syntax error: mapping values are not allowed in this context'],
    'alias_bomb': ['1:1: document too large: more than 20,000 nodes (aliases expanded); is it an alias bomb?'],
    'deep_nesting': ['19:33: sim.k0.k1.k2.k3.k4.k5.k6.k7.k8.k9.k10.k11.k12.k13.k14.k15: nesting deeper than 16 levels'],
    'multi_doc_second_bad': ['9:8: order.qty: must be > 0, got -2'],
    'empty_second_doc': ["4:1: document 2 is empty (remove the extra '---' or write a spec in it)"],
    'name_bad': ["3:7: name: 'has spaces' does not match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$ (letters, digits, '_', '.', ':', '-'; no spaces)"],
    'tag_bad': ["8:8: order.tag: 'a b' does not match ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$ (letters, digits, '_', '.', ':', '-'; no spaces)"],
    'qty_400_digits': ['6:8: order.qty: 10000000000000000000... (400 characters) is too large a number (whole numbers up to 9,007,199,254,740,992)'],
    'qty_5000_digits': ['6:8: order.qty: 10000000000000000000... (5,000 characters) is too large a number (whole numbers up to 9,007,199,254,740,992)'],
    'qty_2_pow_53_plus_1': ['6:8: order.qty: 9007199254740993 is too large a number (whole numbers up to 9,007,199,254,740,992)'],
    'qty_overflow': ['6:8: order.qty: 1.0e+400 is too large a number: it does not fit a 64-bit float'],
    'limit_underflow': ['7:10: order.limit: 1.0e-400 is too small a number: it does not fit a 64-bit float (it would be 0)'],
    'limit_1e_300': ['7:10: order.limit: 1e-300 is below one tick (0.0001); the smallest limit is 0.0001'],
    'limit_1e_300_text': ["7:10: order.limit: expected a number, got string '1e-300' (YAML reads 1e-300 as text; write 1.0e-300)"],
    'limit_subnormal': ['7:10: order.limit: 5e-324 is below one tick (0.0001); the smallest limit is 0.0001'],
    'limit_below_tick': ['7:10: order.limit: 5e-05 is below one tick (0.0001); the smallest limit is 0.0001'],
    'limit_float_noise': ['7:10: order.limit: 0.30000000000000004 is not on the tick grid (0.0001); use 0.3000'],
    'limit_huge_int': ['7:10: order.limit: 99999999999999999999... (30 characters) is too large a number (whole numbers up to 9,007,199,254,740,992)'],
    'sim_huge_int': ['9:11: sim.ack_ms: 99999999999999999999 is too large a number (whole numbers up to 9,007,199,254,740,992)'],
    'huge_int_key': ['8:1: "999999999999999999999999999999": unknown key (expected one of: arrival, at, bars_path, contract, expect, kind, limits, mode, name, order, out_dir, sim, ttl_backstop, ttl_sec, version)'],
    'tag_newline': ["8:8: order.tag: 't67\\n' contains a line break ('\\n') at the end; text must be one line without control characters"],
    'tag_block_newline': ["8:8: order.tag: 't67\\n' contains a line break ('\\n') at the end; text must be one line without control characters"],
    'symbol_newline': ["4:11: order.symbol: 'SPY\\n' contains a line break ('\\n') at the end; text must be one line without control characters"],
    'name_tab': ["3:7: name: 'a\\tb' contains a control character ('\\t'); text must be one line without control characters"],
    'bars_path_bidi': ["8:12: bars_path: 'x\\u202e.parquet' contains a control character ('\\u202e'); text must be one line without control characters"],
    'out_dir_control': ["8:10: out_dir: 'data\\u0001' contains a control character ('\\x01') at the end; text must be one line without control characters"],
    'expect_message_newline': ["9:12: expect.message: 'a\\nb' contains a line break ('\\n'); text must be one line without control characters"],
    'key_newline': ['3:1: "x\\n": unknown key (expected one of: arrival, at, bars_path, contract, expect, kind, limits, mode, name, order, out_dir, sim, ttl_backstop, ttl_sec, version)'],
    'all_errors_with_a_huge_number': ["5:9: order.side: 'buy' is not one of BUY, SELL (did you mean BUY?)", '6:8: order.qty: 99999999999999999999... (30 characters) is too large a number (whole numbers up to 9,007,199,254,740,992)'],
}


def test_every_case_has_an_expectation():
    assert set(CASES) == set(EXPECTED)
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_invalid_spec_exits_2_with_exact_message(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("x.yaml").write_text(CASES[name], encoding="utf-8")
    assert main(["validate", "x.yaml"]) == 2
    out, err = capsys.readouterr()
    root = os.getcwd()  # the project root, without a .git above the spec: named in full
    assert err.splitlines() == [f"x.yaml:{line}".replace("ROOT", root) for line in EXPECTED[name]]
    assert "Traceback" not in out + err
    assert out.strip().endswith("specs invalid")


def test_huge_file_refused_without_reading_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("big.yaml").write_bytes(b"a" * (2 << 20))
    assert main(["validate", "big.yaml"]) == 2
    assert capsys.readouterr().err == "big.yaml:1:1: file is 2,097,152 bytes; specs are limited to 1 MiB\n"


@pytest.mark.parametrize(("content", "message"), [
    (b"\x00\x01version: 1", "binary file, not YAML (contains NUL bytes)"),
    (b"version: 1\nkind: \xff\xfe\n", "not UTF-8 text (byte 17); save the spec as UTF-8"),
    (b"", "empty file: no spec in it (start with `version: 1`)"),
])
def test_unreadable_files(tmp_path, monkeypatch, capsys, content, message):
    monkeypatch.chdir(tmp_path)
    Path("x.yaml").write_bytes(content)
    assert main(["validate", "x.yaml"]) == 2
    assert capsys.readouterr().err == f"x.yaml:1:1: {message}\n"


def test_deeply_nested_flow_is_refused_cleanly(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("x.yaml").write_text("[" * 5000 + "]" * 5000)
    assert main(["validate", "x.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("x.yaml:1:") and "Traceback" not in err and len(err.splitlines()) == 1


def test_all_errors_of_a_file_are_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("x.yaml").write_text(
        "version: 1\nkind: one-shot\norder:\n  symbol: SPY\n  side: buy\n  qty: -1\n"
        "  limt: 10\nttl_secs: 2\n")
    assert main(["validate", "x.yaml"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "x.yaml:5:9: order.side: 'buy' is not one of BUY, SELL (did you mean BUY?)",
        "x.yaml:6:8: order.qty: must be > 0, got -1",
        "x.yaml:7:3: order.limt: unknown key (did you mean limit?)",
        "x.yaml:8:1: ttl_secs: unknown key (did you mean ttl_sec?)",
    ]


def test_folder_with_one_bad_spec(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("specs/sub").mkdir(parents=True)
    Path("specs/ok.yaml").write_text("version: 1\nkind: handshake\n")
    Path("specs/sub/bad.yml").write_text("version: 1\nkind: handshake\nkindd: x\n")
    Path("specs/notes.txt").write_text("not a spec")
    assert main(["validate", "specs"]) == 2
    out, err = capsys.readouterr()
    assert err == "specs/sub/bad.yml:3:1: kindd: unknown key (did you mean kind?)\n"
    assert out == "1 of 2 specs invalid\n"


def test_shipped_specs_are_valid(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(["validate", "specs"]) == 0
    out = capsys.readouterr().out
    n = int(out.split()[0])
    assert n >= 8 and out == f"{n} specs valid\n"


def test_multi_document_file_holds_several_specs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("x.yaml").write_text("version: 1\nkind: handshake\n---\nversion: 1\nkind: handshake\n")
    assert main(["validate", "x.yaml"]) == 0
    assert capsys.readouterr().out == "2 specs valid\n"


def test_allow_outside(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("x.yaml").write_text("version: 1\nkind: sanity-cancel\nout_dir: /tmp/elsewhere\n"
                              "order: {symbol: SPY, side: BUY, qty: 1, limit: 0.01}\n")
    assert main(["validate", "x.yaml"]) == 2
    assert main(["validate", "--allow-outside", "x.yaml"]) == 0


def test_schema_passes_the_2020_12_metaschema():
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def _objects(node, path="$"):
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield path, node
        for k, v in node.items():
            yield from _objects(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _objects(v, f"{path}[{i}]")


def test_schema_closed_and_described_everywhere():
    schema = json.loads(SCHEMA_PATH.read_text())
    objects = list(_objects(schema))
    assert len(objects) >= 5
    for path, obj in objects:
        assert obj.get("additionalProperties") is False, path
        for key, prop in obj["properties"].items():
            assert prop.get("description"), f"{path}.{key} has no description"


def test_schema_file_is_the_one_the_package_uses():
    assert SCHEMA_PATH.read_bytes() == (REPO / "schemas" / "spec.schema.json").read_bytes()


def test_a_bare_spec_gets_the_schema_defaults_and_the_simulator_agrees():
    """Defaults are written in the schema: a spec that leaves every optional key out gets
    them, and the simulator's own defaults (SimConfig() without a spec) are the same."""
    import dataclasses

    from runner.sim import SimConfig
    from runner.spec import load_text

    spec = load_text(OS + "order: {symbol: SPY, side: BUY, qty: 1, limit: 10.00}\n",
                     "x.yaml")[0]
    assert spec.order is not None
    o = spec.order
    assert (o.sec_type, o.exchange, o.currency, o.tif, o.allow_market, o.outside_rth) == (
        "STK", "SMART", "USD", "DAY", False, False)
    assert (spec.mode, spec.ttl_sec, spec.ttl_backstop) == ("paper", 3, True)
    sim = json.loads(SCHEMA_PATH.read_text())["properties"]["sim"]["properties"]
    declared = {k: p["default"] for k, p in sim.items() if "default" in p}
    assert dict(spec.sim) == declared == {
        "ack_ms": 0, "cancel_ms": 0, "ignore_cancel": False, "participation": 0.1,
        "commission_per_share": 0.005, "min_commission": 1.0}
    assert dataclasses.asdict(SimConfig()) == {"reject": None, **declared}


def test_no_module_imports_a_private_name_of_another():
    """Modules share public building blocks (issue 15): no `from runner.x import _y`."""
    import ast

    found = []
    for path in sorted((REPO / "runner").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (
                    node.level or (node.module or "").split(".")[0] == "runner"):
                found += [f"{path.relative_to(REPO)}:{node.lineno}: {a.name}"
                          for a in node.names
                          if a.name.startswith("_") and not a.name.endswith("__")]
    assert found == []


def test_validate_and_plan_do_not_import_heavy_modules():
    code = (
        "import sys, io, contextlib\n"
        "from runner.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['validate', 'specs']) == 0\n"
        "    assert main(['plan', 'specs/one-shot.yaml', '--json']) == 0\n"
        "heavy = sorted(m for m in ('pandas', 'pyarrow', 'ib_async', 'numpy') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert out == "\n"


# --- hostile input: tick grid, a folder with one hostile file, paths that are not files ----


@pytest.mark.parametrize(("price", "problem"), [
    (10.01, ""), (0.9999, ""), (0.0001, ""), (1.0, ""), (123456.78, ""), (1e15, ""),
    (10, ""), (1e-300, "below one tick"), (5e-324, "below one tick"),
    (0.00009999, "below one tick"), (10.005, "not on the tick grid (0.01); use 10.01"),
    (0.00015, "not on the tick grid (0.0001); use 0.0002"),
    (0.1 + 0.2, "not on the tick grid (0.0001); use 0.3000"),
    (1.0000000000000002, "not on the tick grid (0.01); use 1.00"),
])
def test_tick_check_is_not_fooled_by_underflow_or_rounding(price, problem):
    from runner.spec import tick_problem

    got = tick_problem(price)
    assert (problem in got) if problem else got == "", got


def test_validate_folder_reports_every_file_and_names_the_hostile_one(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.chdir(tmp_path)
    Path("specs").mkdir()
    Path("specs/a_ok.yaml").write_text("version: 1\nkind: handshake\n")
    Path("specs/b_huge.yaml").write_text(OS + order(qty="1" + "0" * 399))
    Path("specs/c_tag.yaml").write_text(OS + order(tag='"t67\\n"'))
    Path("specs/d_typo.yaml").write_text("version: 1\nkind: handshake\nkindd: x\n")
    Path("specs/e_ok.yaml").write_text(SC + order(limit="0.01"))
    assert main(["validate", "specs"]) == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "specs/b_huge.yaml:6:8: order.qty: 10000000000000000000... (400 characters) is too "
        "large a number (whole numbers up to 9,007,199,254,740,992)",
        "specs/c_tag.yaml:8:8: order.tag: 't67\\n' contains a line break ('\\n') at the end; "
        "text must be one line without control characters",
        "specs/d_typo.yaml:3:1: kindd: unknown key (did you mean kind?)",
    ]
    assert out == "3 of 5 specs invalid\n" and "Traceback" not in out + err


def test_run_and_plan_of_a_hostile_number_exit_2_with_file_line_col(tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.chdir(tmp_path)
    Path("x.yaml").write_text(OS + order(qty="1" + "0" * 399))
    for command in (["run", "x.yaml", "--dry-run"], ["plan", "x.yaml"], ["run", "x.yaml"]):
        assert main(command) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("x.yaml:6:8: order.qty: 1000"), (command, err)
        assert "Traceback" not in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == [tmp_path / "x.yaml"]  # no ledger, nothing else


@pytest.mark.parametrize(("args", "message"), [
    (["--qty", "1e400"], "runner: --qty: '1e400' is not a finite number (see `runner one-shot "
                         "--help`)"),
    (["--limit", "nan"], "runner: --limit: 'nan' is not a finite number (see `runner one-shot "
                         "--help`)"),
    (["--limit", "1e-300"], "<command line>: --limit: 1e-300 is below one tick (0.0001); "
                            "the smallest limit is 0.0001"),
    (["--tag", "t67\n"], "<command line>: --tag: 't67\\n' contains a line break ('\\n') "
                         "at the end; text must be one line without control characters"),
    (["--symbol", "SPY\n"], "<command line>: --symbol: 'SPY\\n' contains a line break "
                            "('\\n') at the end; text must be one line without control "
                            "characters"),
])
def test_classic_command_hostile_flags_exit_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["one-shot", "--dry-run", *args])
    except SystemExit as e:  # argparse refuses the flag itself
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def cli_subprocess(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`runner ...` in a child with a timeout: a test of a FIFO or a device must not hang."""
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("command", [["validate"], ["plan"], ["run", "--dry-run"]])
def test_fifo_spec_is_refused_unread_and_never_blocks(tmp_path, command):
    os.mkfifo(tmp_path / "x.yaml")
    done = cli_subprocess(tmp_path, *command, "x.yaml")
    assert done.returncode == 2, done.stderr
    assert done.stderr == ("x.yaml: is a FIFO (named pipe), not a regular file; runner reads "
                           "a spec only from a regular file (name the .yaml file itself)\n")
    assert "Traceback" not in done.stdout + done.stderr


def test_fifo_in_a_folder_is_reported_and_the_others_still_checked(tmp_path):
    (tmp_path / "specs").mkdir()
    os.mkfifo(tmp_path / "specs" / "a_pipe.yaml")
    (tmp_path / "specs" / "b_ok.yaml").write_text("version: 1\nkind: handshake\n")
    (tmp_path / "specs" / "c_bad.yaml").write_text("version: 1\nkind: handshake\nkindd: x\n")
    done = cli_subprocess(tmp_path, "validate", "specs")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "specs/a_pipe.yaml: is a FIFO (named pipe), not a regular file; runner reads a spec "
        "only from a regular file (name the .yaml file itself)",
        "specs/c_bad.yaml:3:1: kindd: unknown key (did you mean kind?)"]
    assert done.stdout == "2 of 3 specs invalid\n"


@pytest.mark.parametrize(("make", "cause"), [
    (lambda p: Path("/dev/zero"), "/dev/zero: is a character device, not a regular file"),
    (lambda p: (p / "folder.yaml").mkdir() or p / "folder.yaml",
     "folder.yaml: is a folder, not a regular file"),
    (lambda p: (p / "gone.yaml").symlink_to(p / "nowhere.yaml") or p / "gone.yaml",
     "gone.yaml: is a dangling symbolic link (to "),
])
def test_spec_path_that_is_not_a_regular_file_is_refused_in_one_line(tmp_path, make, cause):
    path = make(tmp_path)
    shown = str(path.relative_to(tmp_path)) if path.is_relative_to(tmp_path) else str(path)
    commands = [["plan"], ["run", "--dry-run"]] + ([] if path.is_dir() else [["validate"]])
    for command in commands:  # (validate of a folder checks the specs in it)
        done = cli_subprocess(tmp_path, *command, shown)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(cause) and len(done.stderr.splitlines()) == 1
        assert done.stderr.rstrip().endswith("(name the .yaml file itself)")


def test_a_link_to_a_regular_spec_is_read(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("real.yaml").write_text("version: 1\nkind: handshake\n")
    Path("link.yaml").symlink_to("real.yaml")
    assert main(["validate", "link.yaml"]) == 0
    assert capsys.readouterr().out == "1 spec valid\n"
