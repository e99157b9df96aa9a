"""Synthetic tasks that probe what the SSM state remembers, in byte-token space (no data needed).

- Selective copying (Gu & Dao 2023): a context of blank tokens with K data tokens at random
  positions, a marker, then the K data tokens in order; the model must reproduce them.
  Chance: 1/16 per token.
- Associative recall (multi-query): K key-value pairs, a marker, then queries of keys seen before;
  the model must answer each query with its value. Chance: 1/10 per answer.

Token ids are bytes (control bytes 0x01-0x03 as blank and markers, which never occur in source
text), so the same byte-level model that reads text can be trained on and evaluated with them.
Accuracy is teacher-forced: the share of answer positions whose argmax is the right token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mambaprof.evaluation.chance import CHANCE_PCT  # noqa: F401  (re-exported: chance per task, %)
from mambaprof.evaluation.lm import lm_logits

BLANK, COPY_MARK, RECALL_MARK = 0x01, 0x02, 0x03
COPY_SYMBOLS = torch.arange(ord("A"), ord("A") + 16)
KEYS = torch.arange(ord("a"), ord("a") + 16)
VALUES = torch.arange(ord("0"), ord("0") + 10)
TASKS = ("selective_copy", "assoc_recall")


@dataclass
class TaskBatch:
    """ids (n, l) and aligned labels (n, l): the target token of each position, -100 where not scored."""

    ids: torch.Tensor
    labels: torch.Tensor


def selective_copy(n: int, gen: torch.Generator, context: int = 64, n_data: int = 8) -> TaskBatch:
    """n selective-copying episodes of length context + n_data."""
    seq = torch.full((n, context + 1 + n_data), BLANK, dtype=torch.long)
    labels = torch.full_like(seq, -100)
    for i in range(n):
        pos = torch.randperm(context, generator=gen)[:n_data].sort().values
        data = COPY_SYMBOLS[torch.randint(0, COPY_SYMBOLS.numel(), (n_data,), generator=gen)]
        seq[i, pos] = data
        seq[i, context] = COPY_MARK
        seq[i, context + 1:] = data
        labels[i, context:context + n_data] = data
    return TaskBatch(seq[:, :-1], labels[:, :-1])


def associative_recall(n: int, gen: torch.Generator, pairs: int = 8, queries: int = 4) -> TaskBatch:
    """n associative-recall episodes: pairs key-value pairs, a marker, queries (key, value) pairs."""
    length = 2 * pairs + 1 + 2 * queries
    seq = torch.empty((n, length), dtype=torch.long)
    labels = torch.full_like(seq, -100)
    for i in range(n):
        keys = KEYS[torch.randperm(KEYS.numel(), generator=gen)[:pairs]]
        vals = VALUES[torch.randint(0, VALUES.numel(), (pairs,), generator=gen)]
        seq[i, 0:2 * pairs:2], seq[i, 1:2 * pairs:2] = keys, vals
        seq[i, 2 * pairs] = RECALL_MARK
        pick = torch.randperm(pairs, generator=gen)[:queries]
        q0 = 2 * pairs + 1
        seq[i, q0::2], seq[i, q0 + 1::2] = keys[pick], vals[pick]
        labels[i, q0::2] = vals[pick]
    return TaskBatch(seq, labels)


def make_task(name: str, n: int, seed: int) -> TaskBatch:
    """A fixed evaluation set of one task (same seed, same episodes)."""
    gen = torch.Generator().manual_seed(seed)
    if name == "selective_copy":
        return selective_copy(n, gen)
    if name == "assoc_recall":
        return associative_recall(n, gen)
    raise ValueError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")


def packed_tasks(batch: int, seqlen: int, gen: torch.Generator) -> TaskBatch:
    """Training rows of seqlen tokens, each a concatenation of random episodes of both tasks."""
    ids = torch.empty((batch, seqlen), dtype=torch.long)
    labels = torch.empty_like(ids)
    for row in range(batch):
        parts_ids, parts_lab, size = [], [], 0
        while size < seqlen:
            kind = TASKS[int(torch.randint(0, 2, (1,), generator=gen))]
            ep = selective_copy(1, gen) if kind == "selective_copy" else associative_recall(1, gen)
            parts_ids.append(ep.ids[0])
            parts_lab.append(ep.labels[0])
            size += ep.ids.shape[1]
        ids[row] = torch.cat(parts_ids)[:seqlen]
        labels[row] = torch.cat(parts_lab)[:seqlen]
    return TaskBatch(ids, labels)


@torch.inference_mode()
def task_accuracy(model: nn.Module, task: TaskBatch, device: torch.device, batch: int = 64) -> float:
    """Teacher-forced accuracy in percent over the scored positions of a task set."""
    correct = total = 0
    for start in range(0, task.ids.shape[0], batch):
        ids = task.ids[start:start + batch].to(device)
        labels = task.labels[start:start + batch].to(device)
        pred = lm_logits(model, ids).argmax(dim=-1)
        scored = labels != -100
        correct += int((pred[scored] == labels[scored]).sum())
        total += int(scored.sum())
    return 100.0 * correct / max(total, 1)
