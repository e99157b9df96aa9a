"""Property-based tests (hypothesis) of the option parsers: every input either parses to what it says or is
refused with a BadArgumentError, never another exception."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mambaprof.cli.options import MAX_SEQLEN, parse_int_list, parse_number, parse_seconds
from mambaprof.errors import BadArgumentError

pytestmark = pytest.mark.reliability("option-parsers")
FAST = settings(max_examples=300, deadline=None)


@FAST
@given(st.lists(st.integers(min_value=1, max_value=MAX_SEQLEN), min_size=1, max_size=12))
def test_a_comma_list_parses_to_its_sorted_unique_values(values):
    assert parse_int_list(",".join(map(str, values)), "--seqlens") == sorted(set(values))


@FAST
@given(st.integers(min_value=1, max_value=MAX_SEQLEN), st.integers(min_value=1, max_value=MAX_SEQLEN))
def test_a_range_is_the_powers_of_two_multiples_between(lo, hi):
    text = f"{lo}..{hi}"
    if lo > hi:
        with pytest.raises(BadArgumentError):
            parse_int_list(text, "--seqlens")
        return
    got = parse_int_list(text, "--seqlens")
    assert got[0] == lo and got[-1] <= hi < 2 * got[-1]
    assert all(b == 2 * a for a, b in zip(got[:-1], got[1:], strict=True))


def test_the_documented_range():
    assert parse_int_list("64..16384", "--seqlens") == [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]


@FAST
@given(st.text(max_size=30))
def test_any_text_parses_or_is_refused_with_one_error(text):
    try:
        values = parse_int_list(text, "--batch", maximum=1 << 14)
    except BadArgumentError as exc:
        assert "--batch" in exc.one_line() and "\n" not in exc.one_line()
        return
    assert values and all(1 <= v <= 1 << 14 for v in values) and values == sorted(set(values))


@FAST
@given(st.integers(max_value=0) | st.integers(min_value=MAX_SEQLEN + 1))
def test_out_of_range_values_are_refused(value):
    with pytest.raises(BadArgumentError):
        parse_int_list(str(value), "--seqlens")


@FAST
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_numbers_are_finite_and_in_range_or_refused(value):
    try:
        got = parse_number(value, "--x", minimum=0.0, maximum=1e6)
    except BadArgumentError as exc:
        assert not (math.isfinite(value) and 0.0 <= value <= 1e6), value
        assert "--x" in exc.one_line()
        return
    assert got == value and math.isfinite(got)


@FAST
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_seconds_are_none_for_zero_and_refused_when_not_finite_or_negative(value):
    try:
        got = parse_seconds(value, "--point-seconds")
    except BadArgumentError:
        assert not math.isfinite(value) or value < 0 or value > 7 * 24 * 3600
        return
    assert (got is None) == (value == 0) and (got is None or got == value)
