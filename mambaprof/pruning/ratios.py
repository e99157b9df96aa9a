"""Pruning ratios: parsing and checking them, and turning one ratio into a kept state count per layer.

A ratio is the fraction of SSM state indices removed (0 <= ratio < 1): ratio 0.25 on a layer with
d_state 16 keeps 12 states. "Structured" means the same state index n is removed for every channel
(Mamba-1) or every head of a group (Mamba-2), so d_state itself shrinks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mambaprof.errors import BadArgumentError

PER_LAYER_MODES = ("uniform", "adaptive")


def parse_ratios(text: str, option: str = "--ratios") -> list[float]:
    """`0,0.125,0.25` -> sorted unique floats, each checked to be a fraction in [0, 1).

    Raises BadArgumentError (one line) for an empty list, an empty item, a non-number, a negative
    value or a value >= 1.
    """
    if not text or not text.strip():
        raise BadArgumentError(f"{option} is empty", f"give a list such as {option} 0,0.25,0.5")
    values: list[float] = []
    for item in text.replace(" ", "").split(","):
        if not item:
            raise BadArgumentError(f"{option} {text!r} has an empty item", "remove the extra comma")
        try:
            value = float(item)
        except ValueError:
            raise BadArgumentError(f"{option} {text!r}: {item!r} is not a number",
                                   f"give fractions such as {option} 0,0.25,0.5") from None
        check_ratio(value, option)
        values.append(value)
    return sorted(set(values))


def check_ratio(value: float, option: str = "--ratios") -> float:
    """A ratio must be a finite fraction with 0 <= value < 1 (1 would remove every state)."""
    if not math.isfinite(value):
        raise BadArgumentError(f"{option} value {value} is not a finite number")
    if value < 0:
        raise BadArgumentError(f"{option} value {value} is negative", "a ratio is the fraction of states removed")
    if value >= 1:
        raise BadArgumentError(f"{option} value {value} would remove every state",
                               "a ratio must be below 1, e.g. 0.5 keeps half the states")
    return value


def removed_count(d_state: int, ratio: float) -> int:
    """States removed from a layer of `d_state` states at `ratio` (round half up)."""
    return int(math.floor(ratio * d_state + 0.5))


def uniform_keep(d_states: Sequence[int], ratio: float, multiple: int = 1) -> list[int]:
    """Kept state count per layer when every layer loses the same fraction.

    multiple: round each count up to a multiple of this (kernels that pad d_state gain nothing from
    odd sizes), never above the layer's d_state. Raises BadArgumentError when a layer would keep 0.
    """
    out = []
    for layer, n in enumerate(d_states):
        keep = round_up(n - removed_count(n, ratio), multiple, n)
        if keep < 1:
            raise BadArgumentError(f"ratio {ratio} leaves 0 of {n} states in layer {layer}",
                                   f"use a ratio below {1 - 0.5 / n:.4g}")
        out.append(keep)
    return out


def adaptive_keep(scores: Sequence[torch.Tensor], ratio: float, multiple: int = 1, min_keep: int = 1) -> list[int]:
    """Kept state count per layer from a global budget split by score mass.

    scores[l]: (groups, d_state) non-negative scores of layer l. Each state's share of its layer's
    score mass (rank-wise mean over groups) is compared across layers; the global budget
    (total states x (1 - ratio)) keeps the states with the largest shares. A layer whose mass is
    concentrated in few states therefore keeps few, one whose mass is spread keeps many. Every layer
    keeps at least `min_keep` (and counts are rounded up to `multiple`), so the total can exceed the
    budget by those roundings.
    """
    d_states = [int(s.shape[-1]) for s in scores]
    total = sum(d_states)
    budget = total - sum(removed_count(n, ratio) for n in d_states)
    if budget < len(d_states) * min_keep:
        raise BadArgumentError(f"ratio {ratio} leaves fewer than {min_keep} state(s) per layer",
                               "use a smaller ratio")
    shares = []
    for layer, s in enumerate(scores):
        s = s.detach().double().clamp_min(0)
        mass = s.sum(dim=-1, keepdim=True)
        share = torch.where(mass > 0, s / mass.clamp_min(1e-300), torch.full_like(s, 1.0 / s.shape[-1]))
        ranked = share.sort(dim=-1, descending=True).values.mean(dim=0)
        shares += [(float(v), rank, layer) for rank, v in enumerate(ranked)]
    keep = [min_keep] * len(d_states)
    left = budget - sum(keep)
    # the first min_keep ranks of every layer are taken already; the rest compete globally
    seen = [0] * len(d_states)
    for _, _, layer in sorted(shares, key=lambda t: (-t[0], t[1], t[2])):  # equal shares: round-robin
        seen[layer] += 1
        if seen[layer] <= min_keep:
            continue
        if left <= 0:
            break
        keep[layer] += 1
        left -= 1
    return [round_up(k, multiple, n) for k, n in zip(keep, d_states, strict=True)]


def round_up(keep: int, multiple: int, cap: int) -> int:
    """keep rounded up to a multiple of `multiple`, at most cap (keep <= 0 or multiple <= 1: unchanged)."""
    if multiple <= 1 or keep <= 0:
        return keep
    return min(cap, int(math.ceil(keep / multiple)) * multiple)


def check_per_layer(mode: str) -> str:
    """`uniform` or `adaptive`, else a one-line error."""
    if mode not in PER_LAYER_MODES:
        raise BadArgumentError(f"--per-layer {mode!r} is not one of {', '.join(PER_LAYER_MODES)}")
    return mode
