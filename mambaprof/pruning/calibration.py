"""Calibration: run the model on calibration text and score every state index of every layer.

A forward pre-hook on each mixer captures its input hidden states; Δ = softplus(dt + bias), B, C
and x are recomputed from them in fp32 (`mixers.ssm_inputs`) and folded into running sums at once,
so nothing of size (tokens x channels x states) is ever kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from mambaprof.evaluation.lm import lm_logits
from mambaprof.pruning.mixers import MixerView, ssm_inputs
from mambaprof.pruning.scores import CALIBRATED, SCORES, ScoreAccumulator, magnitude_score, random_score


def _hidden_arg(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    if args:
        return args[0]
    for key in ("hidden_states", "u"):
        if key in kwargs:
            return kwargs[key]
    raise RuntimeError("mixer called without hidden states")


@torch.no_grad()
def calibrate(model: nn.Module, views: Sequence[MixerView], batches: Iterable[torch.Tensor],
              names: Sequence[str], device: torch.device, seed: int = 0,
              on_batch: Callable[[int], None] | None = None) -> dict[str, list[torch.Tensor]]:
    """Scores per name: a list (one per layer) of (G, N) float64 tensors.

    `delta` and `energy` come from the calibration batches (token ids (b, l)); `magnitude` and
    `random` need no data (`random` is drawn from `seed`).
    """
    unknown = [n for n in names if n not in SCORES]
    if unknown:
        raise ValueError(f"unknown score(s) {unknown}; scores: {', '.join(SCORES)}")
    calibrated = tuple(n for n in names if n in CALIBRATED)
    out: dict[str, list[torch.Tensor]] = {}
    if calibrated:
        accs = [ScoreAccumulator(calibrated) for _ in views]
        handles = []
        for view, acc in zip(views, accs, strict=True):
            def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], view: MixerView = view,
                     acc: ScoreAccumulator = acc) -> None:
                acc.add(ssm_inputs(view, _hidden_arg(args, kwargs)))
            handles.append(view.module.register_forward_pre_hook(hook, with_kwargs=True))
        was_training = model.training
        model.eval()
        try:
            for i, ids in enumerate(batches):
                lm_logits(model, ids.to(device))
                if on_batch is not None:
                    on_batch(i)
        finally:
            for h in handles:
                h.remove()
            model.train(was_training)
        for name in calibrated:
            out[name] = [acc.mean(name) for acc in accs]
    if "magnitude" in names:
        out["magnitude"] = [magnitude_score(v) for v in views]
    if "random" in names:
        out["random"] = [random_score(v, seed) for v in views]
    return out
