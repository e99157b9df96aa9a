"""Calling a causal language model on token ids, and its perplexity on held-out text."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from mambaprof.errors import UnsupportedModelError
from mambaprof.evaluation.text import windows
from mambaprof.model.inputs import first_tensor
from mambaprof.model.structure import ModelStructure


def forward_params(model: nn.Module) -> set[str]:
    """Names of the parameters of model.forward (empty when it has no inspectable signature)."""
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()


def lm_logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Logits (b, l, vocab) of a causal LM for token ids (b, l): transformers or mamba_ssm style."""
    params = forward_params(model)
    kwargs = {"use_cache": False} if "use_cache" in params else {}
    out = model(input_ids=ids, **kwargs) if "input_ids" in params else model(ids, **kwargs)
    return first_tensor(out)


def check_byte_lm(structure: ModelStructure, vocab_needed: int = 256) -> int:
    """The model's vocabulary size, after checking it is a token LM that byte ids fit."""
    vocab = structure.vocab_size
    if not structure.embeddings or vocab is None:
        raise UnsupportedModelError("pruning needs a language model with a token embedding (calibration and "
                                    "evaluation run text through it)",
                                    "give a model whose forward takes token ids")
    if vocab < vocab_needed:
        raise UnsupportedModelError(f"the model's vocabulary has {vocab} tokens; byte-level text needs "
                                    f"{vocab_needed}", "train it with examples/train_small_lm.py")
    return vocab


@dataclass
class Perplexity:
    """Held-out language-model quality: mean NLL in nats per token, its exp, the tokens scored, and the mean
    NLL (nats/token) of each window in order (paired across models on the same text, their differences
    give the noise of a perplexity comparison)."""

    nll: float
    perplexity: float
    tokens: int
    window_nll: list[float] = field(default_factory=list)


def lm_loss(model: nn.Module, ids: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy (nats/token) of ids (b, l); labels default to ids shifted.

    labels (b, l) gives the target of each position (-100: ignored), already aligned with ids.
    """
    logits = lm_logits(model, ids)
    if labels is None:
        logits, labels = logits[:, :-1], ids[:, 1:]
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


@torch.inference_mode()
def perplexity(model: nn.Module, tokens: torch.Tensor, seqlen: int, batch: int, device: torch.device) -> Perplexity:
    """Perplexity on non-overlapping windows of seqlen + 1 tokens (each scores seqlen predictions)."""
    rows = windows(tokens, seqlen + 1)
    if rows.shape[0] == 0:
        raise ValueError(f"{tokens.numel()} evaluation tokens do not fill one window of {seqlen + 1}")
    total, count, per_window = 0.0, 0, []
    for start in range(0, rows.shape[0], batch):
        chunk = rows[start:start + batch].to(device)
        logits = lm_logits(model, chunk[:, :-1]).float()
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1), reduction="none")
        sums = nll.view(chunk.shape[0], -1).double().sum(dim=1)
        total += float(sums.sum())
        count += chunk[:, 1:].numel()
        per_window += (sums / seqlen).tolist()
    mean = total / count
    return Perplexity(nll=mean, perplexity=math.exp(mean), tokens=count, window_nll=per_window)
