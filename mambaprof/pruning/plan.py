"""A pruning plan: which state indices each layer keeps, chosen from scores, applied physically."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mambaprof.pruning.mixers import MixerView
from mambaprof.pruning.physical import complement, mask_states, select_states
from mambaprof.pruning.ratios import adaptive_keep, check_per_layer, check_ratio, round_up, uniform_keep


@dataclass
class PruningPlan:
    """Kept state indices per layer: keep[l] is (G, N'_l), ascending within each group.

    score / ratio / per_layer say how it was chosen; original[l] is the layer's N before pruning.
    """

    score: str
    ratio: float
    per_layer: str
    keep: list[torch.Tensor]
    original: list[int]

    @property
    def state_sizes(self) -> list[int]:
        """N'_l per layer."""
        return [int(k.shape[1]) for k in self.keep]

    @property
    def removed_pct(self) -> float:
        """Share of state indices removed over all layers, in percent."""
        total = sum(self.original)
        return 100.0 * (1.0 - sum(self.state_sizes) / total) if total else 0.0

    @property
    def is_noop(self) -> bool:
        """True when every layer keeps all its states."""
        return self.state_sizes == self.original

    def as_json(self) -> dict[str, Any]:
        """Plain data for the checkpoint sidecar and run records."""
        return {"score": self.score, "ratio": self.ratio, "per_layer": self.per_layer,
                "state_sizes": self.state_sizes, "original_state_sizes": self.original,
                "kept_indices": [k.tolist() for k in self.keep]}


def top_states(score: torch.Tensor, keep: int) -> torch.Tensor:
    """(G, N) scores -> (G, keep) indices of the highest scores per group, ascending.

    Ties go to the lower index (stable sort), so plans are deterministic.
    """
    order = torch.sort(-score.double(), dim=-1, stable=True).indices[:, :keep]
    return order.sort(dim=-1).values


def make_plan(scores: Sequence[torch.Tensor], ratio: float, per_layer: str, score_name: str,
              multiple: int = 1, layer_multiples: Sequence[int] | None = None) -> PruningPlan:
    """Choose kept states per layer from (G, N) scores at `ratio` (uniform or adaptive split).

    multiple: every kept count is rounded up to a multiple of it (the user's choice); layer_multiples:
    per layer, the step the layer's kernels need (`kernel_multiples(views)`), combined with `multiple`."""
    check_ratio(ratio)
    check_per_layer(per_layer)
    d_states = [int(s.shape[-1]) for s in scores]
    if layer_multiples is not None and len(layer_multiples) != len(d_states):
        raise ValueError(f"{len(layer_multiples)} layer multiples for {len(d_states)} layers")
    if per_layer == "uniform" or ratio == 0:
        counts = uniform_keep(d_states, ratio, multiple)
    else:
        counts = adaptive_keep(scores, ratio, multiple)
    if layer_multiples is not None:
        counts = [round_up(k, math.lcm(multiple, m), n) for k, m, n in zip(counts, layer_multiples, d_states,
                                                                              strict=True)]
    keep = [top_states(s, k) for s, k in zip(scores, counts, strict=True)]
    return PruningPlan(score=score_name, ratio=ratio, per_layer=per_layer, keep=keep, original=d_states)


def kernel_multiples(views: Sequence[MixerView]) -> list[int]:
    """Per layer, the step of N' its fused kernels accept (`MixerView.kernel_state_multiple`)."""
    return [v.kernel_state_multiple for v in views]


def apply_plan(views: Sequence[MixerView], plan: PruningPlan) -> None:
    """Physically prune every mixer to the plan (layers keeping everything are left untouched)."""
    _check(views, plan)
    for view, keep, n in zip(views, plan.keep, plan.original, strict=True):
        if keep.shape[1] != n:
            select_states(view, keep)


def mask_plan(views: Sequence[MixerView], plan: PruningPlan) -> None:
    """Mask (zero B and C weights of) every state the plan removes, shapes unchanged."""
    _check(views, plan)
    for view, keep, n in zip(views, plan.keep, plan.original, strict=True):
        mask_states(view, complement(keep, n))


def _check(views: Sequence[MixerView], plan: PruningPlan) -> None:
    if len(views) != len(plan.keep):
        raise ValueError(f"plan has {len(plan.keep)} layers, the model {len(views)}")
    for view, n in zip(views, plan.original, strict=True):
        if view.d_state != n:
            raise ValueError(f"layer {view.layer} has d_state {view.d_state}, the plan expects {n}")
