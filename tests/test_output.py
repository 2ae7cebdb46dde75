"""runner.output: numbers shown exactly as recorded, and the one JSON style."""

from __future__ import annotations

import json
import math

from hypothesis import given
from hypothesis import strategies as st

from runner.output import json_text, number_text, price_text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_text_reads_back_exactly_and_never_in_exponent_form(x: float) -> None:
    text = number_text(x)
    assert "e" not in text.lower()
    assert float(text) == x


def test_number_text_examples_from_the_issue() -> None:
    assert number_text(1_000_000.0) == "1000000"
    assert number_text(1.08505) == "1.08505"
    assert number_text(65000.05) == "65000.05"
    assert number_text(1e-08) == "0.00000001"
    assert number_text(None) == "\u2014"
    assert number_text(math.nan, empty="-") == "-"


def test_price_text_pads_to_the_tick_and_keeps_every_recorded_digit() -> None:
    assert price_text(10.0) == "10.00"
    assert price_text(0.01) == "0.01"
    assert price_text(1.08505) == "1.08505"
    assert price_text(473.1, 2) == "473.10"
    assert price_text(5.0, 0) == "5"


def test_json_text_is_one_sorted_compact_ascii_line_without_nan() -> None:
    text = json_text({"b": math.inf, "a": "\u2014", "c": [math.nan, 1.5]})
    assert text == '{"a":"\\u2014","b":null,"c":[null,1.5]}'
    assert json.loads(text) == {"a": "\u2014", "b": None, "c": [None, 1.5]}
