"""Training loop shared by the recovery fine-tune and examples/train_small_lm.py.

AdamW on next-token cross-entropy, a linear warm-up then cosine decay of the learning rate, gradient
clipping at 1.0, optional autocast (bf16 on GPU). The schedule runs over a number of steps or over
a wall-clock budget in seconds (then the position in the schedule is the elapsed fraction).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from mambaprof.evaluation.lm import lm_loss

#: next_batch(step) -> (ids (b, l), labels aligned with ids or None for "ids shifted by one")
BatchFn = Callable[[int], tuple[torch.Tensor, torch.Tensor | None]]


@dataclass
class TrainResult:
    """What a run of the loop did: steps taken, seconds spent, loss (nats/token) of every step."""

    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)

    def final_loss(self) -> float | None:
        """Mean loss over the last 10% of steps (None if no step ran)."""
        if not self.losses:
            return None
        tail = self.losses[-max(1, len(self.losses) // 10):]
        return sum(tail) / len(tail)


def lr_factor(progress: float, warmup: float = 0.05, floor: float = 0.1) -> float:
    """Multiplier of the peak learning rate at `progress` in [0, 1]: linear warm-up, cosine to `floor`."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 1e-3)
    rest = (progress - warmup) / max(1.0 - warmup, 1e-9)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * rest))


def fine_tune(model: nn.Module, next_batch: BatchFn, lr: float, device: torch.device, steps: int | None = None,
              seconds: float | None = None, amp_dtype: torch.dtype | None = None, weight_decay: float = 0.0,
              warmup: float = 0.05, on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train until `steps` steps or `seconds` of wall time (whichever is given), then eval mode.

    Losses are read back every step (a host sync) so a diverging run is visible in the result.
    """
    if steps is None and seconds is None:
        raise ValueError("give steps or seconds")
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2 and not getattr(p, "_no_weight_decay", False)]
    other = [p for p in params if not (p.dim() >= 2 and not getattr(p, "_no_weight_decay", False))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": other, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95), eps=1e-8)
    model.train()
    result = TrainResult(steps=0, seconds=0.0)
    start = time.perf_counter()
    step = 0
    try:
        while True:
            elapsed = time.perf_counter() - start
            progress = step / steps if steps is not None else elapsed / float(seconds or 1.0)
            if progress >= 1.0:
                break
            for group in opt.param_groups:
                group["lr"] = lr * lr_factor(progress, warmup)
            ids, labels = next_batch(step)
            ids = ids.to(device)
            labels = labels.to(device) if labels is not None else None
            with torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                loss = lm_loss(model, ids, labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            value = float(loss.detach())
            result.losses.append(value)
            step += 1
            if on_step is not None:
                on_step(step, value)
    finally:
        model.eval()
        result.steps = step
        result.seconds = time.perf_counter() - start
    return result


def text_batches(tokens: torch.Tensor, seqlen: int, batch: int, seed: int) -> BatchFn:
    """Random windows of seqlen + 1 tokens from a token stream (labels: the ids shifted by one)."""
    if tokens.numel() < seqlen + 2:
        raise ValueError(f"{tokens.numel()} tokens are too few for windows of {seqlen + 1}")
    gen = torch.Generator().manual_seed(seed)
    n = tokens.numel() - seqlen - 1

    def next_batch(step: int) -> tuple[torch.Tensor, None]:
        starts = torch.randint(0, n, (batch,), generator=gen)
        return torch.stack([tokens[s:s + seqlen + 1] for s in starts.tolist()]), None

    return next_batch


def recover(model: nn.Module, tokens: torch.Tensor, steps: int, seqlen: int, batch: int, lr: float,
            device: torch.device, amp_dtype: torch.dtype | None, seed: int = 0) -> TrainResult:
    """The recovery fine-tune after pruning: `steps` steps of LM training on the calibration text."""
    return fine_tune(model, text_batches(tokens, seqlen, batch, seed), lr, device, steps=steps, amp_dtype=amp_dtype)
