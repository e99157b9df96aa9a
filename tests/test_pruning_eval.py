"""Evaluation without network: stdlib text splits, synthetic tasks, perplexity and accuracy numbers."""

import math

import pytest
import torch
from torch import nn

from mambaprof.errors import BadArgumentError
from mambaprof.evaluation.lm import perplexity
from mambaprof.evaluation.tasks import (
    COPY_MARK,
    RECALL_MARK,
    associative_recall,
    make_task,
    packed_tasks,
    selective_copy,
    task_accuracy,
)
from mambaprof.evaluation.text import byte_tokens, read_text_file, split_of, stdlib_files, stdlib_text, windows


class ConstantLM(nn.Module):
    """Logits that always favour one token by `margin` (margin 0: uniform over the vocabulary)."""

    def __init__(self, token: int = 0, margin: float = 0.0, vocab: int = 256) -> None:
        super().__init__()
        self.token, self.margin, self.vocab = token, margin, vocab

    def forward(self, input_ids):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.token] = self.margin
        return logits


def test_stdlib_splits_are_disjoint_and_deterministic():
    files = {s: stdlib_files(s) for s in ("train", "calib", "eval")}
    assert all(files.values())
    assert not set(files["eval"]) & set(files["train"]) and not set(files["calib"]) & set(files["eval"])
    assert len(files["train"]) > 5 * len(files["eval"])
    text = stdlib_text("eval", 5000)
    assert len(text) == 5000 and text == stdlib_text("eval", 5000)
    assert split_of("json/decoder.py") == split_of("json/decoder.py")
    with pytest.raises(ValueError):
        stdlib_files("test")


def test_text_file_errors_and_tokens(tmp_path):
    with pytest.raises(BadArgumentError, match="does not exist"):
        read_text_file(tmp_path / "nope.txt", "--calib")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(BadArgumentError, match="is empty"):
        read_text_file(tmp_path / "empty.txt", "--eval")
    tokens = byte_tokens("héllo".encode())
    assert tokens.tolist() == list("héllo".encode()) and tokens.dtype == torch.long
    assert windows(torch.arange(10), 3).tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_selective_copy_labels_are_the_data_in_order():
    batch = selective_copy(20, torch.Generator().manual_seed(0), context=32, n_data=5)
    assert batch.ids.shape == batch.labels.shape == (20, 32 + 5)
    for ids, labels in zip(batch.ids, batch.labels, strict=True):
        data = ids[:32][ids[:32] != 0x01]
        assert data.numel() == 5 and ids[32] == COPY_MARK
        assert labels[labels != -100].tolist() == data.tolist()
        assert (labels[:32] == -100).all()


def test_associative_recall_answers_match_earlier_pairs():
    batch = associative_recall(30, torch.Generator().manual_seed(1), pairs=6, queries=3)
    for ids, labels in zip(batch.ids, batch.labels, strict=True):
        pairs = dict(zip(ids[0:12:2].tolist(), ids[1:12:2].tolist(), strict=True))
        assert len(pairs) == 6 and ids[12] == RECALL_MARK
        scored = (labels != -100).nonzero().flatten().tolist()
        assert len(scored) == 3
        for pos in scored:
            assert labels[pos] == pairs[int(ids[pos])] == ids[pos + 1]


def test_packed_tasks_fill_rows():
    batch = packed_tasks(3, 200, torch.Generator().manual_seed(2))
    assert batch.ids.shape == (3, 200)
    assert ((batch.labels == -100) | (batch.labels >= ord("0"))).all()
    assert (batch.labels != -100).sum() > 10


def test_perplexity_of_known_models():
    tokens = torch.randint(0, 256, (5000,), generator=torch.Generator().manual_seed(3))
    uniform = perplexity(ConstantLM(), tokens, seqlen=63, batch=4, device=torch.device("cpu"))
    assert uniform.perplexity == pytest.approx(256.0, rel=1e-5) and uniform.nll == pytest.approx(math.log(256))
    assert uniform.tokens == (5000 // 64) * 63
    same = torch.full((2000,), 7)
    sure = perplexity(ConstantLM(7, margin=30.0), same, seqlen=31, batch=8, device=torch.device("cpu"))
    assert 1.0 <= sure.perplexity < 1.0 + 1e-9


def test_task_accuracy_counts_scored_positions_only():
    task = make_task("assoc_recall", 40, seed=4)
    answers = task.labels[task.labels != -100]
    token = int(answers.mode().values)
    expected = 100.0 * float((answers == token).float().mean())
    assert task_accuracy(ConstantLM(token, margin=5.0), task, torch.device("cpu"), batch=7) == pytest.approx(expected)
