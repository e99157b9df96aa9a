"""Parsing and checking command-line values shared by several commands."""

from __future__ import annotations

import math

import typer

from mambaprof.errors import BadArgumentError
from mambaprof.run.autotune import POLICIES

MAX_SEQLEN = 1 << 22  # 4M tokens: beyond this a value is a typo, not a plan
MAX_BATCH = 1 << 14

DEBUG_OPTION = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")


def parse_int_list(text: str, option: str, minimum: int = 1, maximum: int = MAX_SEQLEN) -> list[int]:
    """`64,256,1024` or `64..16384` (powers of two between) -> sorted unique ints, each checked.

    Raises BadArgumentError naming the option and the bad item.
    """
    items = [t.strip() for t in text.replace(" ", "").split(",")]
    if not text.strip() or not any(items):
        raise BadArgumentError(f"{option} is empty", f"give a list such as {option} 64,256,1024")
    values: list[int] = []
    for item in items:
        if not item:
            raise BadArgumentError(f"{option} {text!r} has an empty item", "remove the extra comma")
        if ".." in item:
            lo_text, hi_text = item.split("..", 1)
            lo, hi = _int(lo_text, option, text), _int(hi_text, option, text)
            if lo > hi:
                raise BadArgumentError(f"{option} range {item!r} is empty (start > end)")
            _check(lo, option, minimum, maximum)
            _check(hi, option, minimum, maximum)
            value = lo
            while value <= hi:
                values.append(value)
                value *= 2
            continue
        value = _int(item, option, text)
        _check(value, option, minimum, maximum)
        values.append(value)
    return sorted(set(values))


def _int(item: str, option: str, text: str) -> int:
    try:
        return int(item)
    except ValueError:
        raise BadArgumentError(f"{option} {text!r}: {item!r} is not a whole number",
                               f"give a list such as {option} 64,256,1024") from None


def _check(value: int, option: str, minimum: int, maximum: int) -> None:
    if value < minimum:
        raise BadArgumentError(f"{option} value {value} must be at least {minimum}")
    if value > maximum:
        raise BadArgumentError(f"{option} value {value} is absurdly large (limit {maximum})",
                               "check for a typo")


def parse_nonnegative(value: int, option: str, maximum: int = 10_000) -> int:
    """Check a count option (repeats, warm-up): 0 <= value <= maximum."""
    if value < 0 or value > maximum:
        raise BadArgumentError(f"{option} {value} must be between 0 and {maximum}")
    return value


def parse_autotune(value: str) -> str:
    """Check --autotune: one of the Triton autotuning policies (largest, first, per-point)."""
    if value not in POLICIES:
        raise BadArgumentError(f"--autotune {value!r} is not {', '.join(POLICIES[:-1])} or {POLICIES[-1]}",
                               "the default, largest, tunes once at the sweep's largest point")
    return value


def parse_number(value: float, option: str, minimum: float = 0.0, maximum: float = math.inf,
                 positive: bool = False) -> float:
    """Check a real-valued option: finite (no nan/inf), minimum <= value <= maximum, and > 0 when `positive`.

    Raises BadArgumentError naming the option and the value.
    """
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise BadArgumentError(f"{option} {value} is not a finite number", "give a plain number such as 1.5")
    if positive and value <= 0:
        raise BadArgumentError(f"{option} {value} must be positive")
    if value < minimum:
        raise BadArgumentError(f"{option} {value} is negative" if minimum == 0 and value < 0
                               else f"{option} {value} must be at least {minimum:g}")
    if value > maximum:
        raise BadArgumentError(f"{option} {value} is absurdly large (limit {maximum:g})", "check for a typo")
    return float(value)


def parse_seconds(value: float | None, option: str) -> float | None:
    """A time cap in seconds: None or 0 mean no cap; negative, nan and inf are refused."""
    if value is None:
        return None
    value = parse_number(value, option, maximum=7 * 24 * 3600.0)
    return value or None
