"""Triton autotuning policy (mambaprof.run.autotune) on the CPU, with a fake Triton autotuner.

The fake kernel behaves like `@triton.autotune` with a key that holds no batch and no seqlen: the first
call with an empty cache "benchmarks" (records the shape it tuned at) and caches a config that names that
shape; later calls reuse it. A tiny transformers Mamba calls it from its forward, traced through run_sweep.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import types
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from support.models import tiny_mamba
from support.synthetic_runs import make_run

from mambaprof.model.loading import LoadedModel
from mambaprof.model.structure import discover
from mambaprof.run import autotune
from mambaprof.run.autotune import AutotunePolicy, chosen, find_autotuners, largest_first, reset
from mambaprof.run.sweep import TraceConfig, run_sweep
from mambaprof.storage.rundir import RunWriter, read_run_record, read_table

MODULE = "mamba_ssm._fake_triton_kernels"
KERNEL = f"{MODULE}._fake_ssd_kernel"
KEY = (256, 64, 128, "torch.float32")  # like mamba_ssm's SSD key: chunk_size, hdim, dstate (+ dtypes)
BATCHES, SEQLENS = [1, 2], [8, 16]  # points (1,8) (1,16) (2,8) (2,16): 8, 16, 16, 32 tokens


class FakeConfig:
    """Stands in for triton.Config: its str names the shape it was tuned at."""

    def __init__(self, batch: int, seqlen: int) -> None:
        self.batch, self.seqlen = batch, seqlen

    def __str__(self) -> str:
        return f"TUNED_AT: {self.batch}x{self.seqlen}, num_warps: 4, num_stages: 3"


class Autotuner:
    """Duck-typed triton.runtime.autotuner.Autotuner: `cache`, `configs`, `fn`."""

    def __init__(self, fn: types.FunctionType) -> None:
        self.fn = fn
        self.cache: dict[tuple, FakeConfig] = {}
        self.configs: list[str] = ["small", "large"]
        self.tunes: list[tuple[int, int]] = []  # every (re)tune, in order
        self.calls: list[tuple[int, int]] = []  # every launch, in order
        self.fail_at: dict[tuple[int, int], BaseException] = {}

    def run(self, batch: int, seqlen: int) -> None:
        self.calls.append((batch, seqlen))
        if (batch, seqlen) in self.fail_at:
            raise self.fail_at[(batch, seqlen)]
        if KEY not in self.cache:
            self.tunes.append((batch, seqlen))
            self.cache[KEY] = FakeConfig(batch, seqlen)


class Heuristics:
    """Duck-typed triton.heuristics wrapper (an autotuner beneath it must still be found)."""

    def __init__(self, fn: object) -> None:
        self.fn = fn


def _fake_ssd_kernel() -> None:
    """The kernel function the fake autotuner wraps (its name is the kernel's name)."""


class Wrapped(torch.nn.Module):
    """A tiny Mamba whose forward also launches the fake kernel at the input's shape."""

    def __init__(self, kernel: Autotuner | None) -> None:
        super().__init__()
        self.inner = tiny_mamba(layers=1, d_model=32, vocab=64)
        self.kernel = kernel
        self.shapes: list[tuple[int, int]] = []

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        shape = (int(input_ids.shape[0]), int(input_ids.shape[1]))
        self.shapes.append(shape)
        if self.kernel is not None:
            self.kernel.run(*shape)
        return self.inner(input_ids=input_ids).logits


def fake_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    """Triton counts as imported (find_autotuners scans nothing without it); CPU machines have no triton."""
    monkeypatch.setattr(autotune, "triton_loaded", lambda: True)


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Autotuner:
    module = types.ModuleType(MODULE)
    tuner = Autotuner(_fake_ssd_kernel)
    module._fake_ssd_kernel = tuner  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, MODULE, module)
    fake_triton(monkeypatch)
    return tuner


def _trace(tmp_path: Path, kernel: Autotuner | None, policy: str, seen: list[str] | None = None,
           batches: list[int] | None = None) -> tuple[Wrapped, dict, object]:
    model = Wrapped(kernel).eval()
    loaded = LoadedModel(model, "file", "fake.py")
    config = TraceConfig(seqlens=SEQLENS, batches=batches or BATCHES, device=torch.device("cpu"),
                         dtype=torch.float32, repeats=1, warmup=1, profile_repeats=0, tensorboard=False,
                         autotune=policy)
    writer = RunWriter(tmp_path / "run")
    writer.prepare()
    result = run_sweep(loaded, discover(model), config, writer,
                       progress=lambda done, total, desc: (seen if seen is not None else []).append(desc))
    return model, read_run_record(tmp_path / "run"), result


def _autotune(record: dict) -> dict:
    return json.loads(record["autotune_json"])


def test_largest_tunes_once_at_the_largest_point_before_the_first(tmp_path, kernel):
    seen: list[str] = []
    model, record, result = _trace(tmp_path, kernel, "largest", seen)
    assert result.status == "complete"
    assert kernel.tunes == [(2, 16)]  # tuned once, at 32 tokens, and never again
    assert model.shapes[0] == (2, 16) and kernel.calls[0] == (2, 16)  # the tuning forward ran first
    assert "autotune at b=2 L=16" in seen and seen.index("autotune at b=2 L=16") < seen.index("b=1 L=8")
    info = _autotune(record)
    assert info == {"policy": "largest", "tuned_at": {"batch": 2, "seqlen": 16}, "reason": None,
                    "configs": [{"kernel": KERNEL, "key": str(KEY),
                                 "config": "TUNED_AT: 2x16, num_warps: 4, num_stages: 3"}]}
    assert json.loads(record["config_json"])["autotune"] == "largest"
    points = read_table(tmp_path / "run", "points").to_pandas()
    assert (points.status == "ok").all() and len(points) == 4


def test_first_leaves_the_choice_to_the_first_point(tmp_path, kernel):
    model, record, _ = _trace(tmp_path, kernel, "first")
    assert kernel.tunes == [(1, 8)]
    assert model.shapes[0] == (1, 8)  # no extra forward
    info = _autotune(record)
    assert info["policy"] == "first" and info["tuned_at"] is None and info["reason"] is None
    assert [c["config"] for c in info["configs"]] == ["TUNED_AT: 1x8, num_warps: 4, num_stages: 3"]


def test_per_point_retunes_at_every_point(tmp_path, kernel):
    model, record, _ = _trace(tmp_path, kernel, "per-point")
    assert kernel.tunes == [(1, 8), (1, 16), (2, 8), (2, 16)]  # reset before each point, tuned at its shape
    assert model.shapes[0] == (1, 8)
    info = _autotune(record)
    assert info["policy"] == "per-point" and info["tuned_at"] == {"batch": 2, "seqlen": 16}
    assert [c["config"] for c in info["configs"]] == ["TUNED_AT: 2x16, num_warps: 4, num_stages: 3"]  # the last


def test_out_of_memory_at_the_largest_falls_back_to_the_next(tmp_path, kernel):
    kernel.fail_at[(2, 16)] = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB")
    _, record, result = _trace(tmp_path, kernel, "largest")
    # (1,16) and (2,8) tie at 16 tokens: the larger batch is the next largest
    assert kernel.tunes == [(2, 8)] and kernel.calls[:2] == [(2, 16), (2, 8)]
    info = _autotune(record)
    assert info["tuned_at"] == {"batch": 2, "seqlen": 8}
    assert info["reason"].startswith("out of memory at batch 2 x 16; tuned at the next largest")
    assert [c["config"] for c in info["configs"]] == ["TUNED_AT: 2x8, num_warps: 4, num_stages: 3"]
    points = read_table(tmp_path / "run", "points").to_pandas().set_index(["batch", "seqlen"])
    assert points.loc[(2, 16), "status"] == "oom" and result.counts["ok"] == 3


def test_three_out_of_memory_tries_give_up_and_points_tune_as_before(tmp_path, kernel):
    for shape in ((2, 16), (2, 8), (1, 16)):
        kernel.fail_at[shape] = MemoryError("can't allocate memory")
    _, record, result = _trace(tmp_path, kernel, "largest")
    assert kernel.calls[:3] == [(2, 16), (2, 8), (1, 16)]  # three tries, then the sweep
    assert kernel.tunes == [(1, 8)]  # the first point tuned, as with `first`
    info = _autotune(record)
    assert info["tuned_at"] is None and "gave up tuning" in info["reason"]
    assert "batch 2 x 16, batch 2 x 8, batch 1 x 16" in info["reason"]
    assert result.status == "incomplete"  # the three points still run out of memory; the run is not failed


def test_an_error_in_the_tuning_forward_gives_up_at_once(tmp_path, kernel):
    kernel.fail_at[(2, 16)] = ValueError("bad shape\nmore")
    _, record, result = _trace(tmp_path, kernel, "largest")
    assert kernel.calls[0] == (2, 16) and kernel.calls[1] == (1, 8)  # one try only
    assert kernel.tunes == [(1, 8)]
    info = _autotune(record)
    assert info["tuned_at"] is None
    assert info["reason"] == "tuning forward at batch 2 x 16 failed: ValueError: bad shape"
    assert result.counts == {"ok": 3, "oom": 0, "error": 1}


def test_without_autotuners_nothing_happens_and_the_column_is_null(tmp_path):
    assert not find_autotuners()
    model, record, result = _trace(tmp_path, None, "largest")
    assert result.status == "complete"
    assert record["autotune_json"] is None
    assert model.shapes[0] == (1, 8)  # no tuning forward


def test_interrupt_during_the_tuning_forward_closes_the_run_record(tmp_path, kernel):
    class Interrupt(BaseException):
        pass

    def sigint(batch: int, seqlen: int) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # the sweep's guard turns it into RunInterrupted, here
        raise Interrupt  # not reached when the guard raised

    kernel.run = sigint  # type: ignore[method-assign]
    _, record, result = _trace(tmp_path, kernel, "largest")
    assert result.interrupted_by == "SIGINT" and result.exit_code == 130
    assert record["status"] == "incomplete" and record["status_reason"].startswith("interrupted by SIGINT after 0")
    assert _autotune(record)["policy"] == "largest"


def test_find_unwraps_heuristics_deduplicates_and_respects_package_boundaries(monkeypatch):
    tuner = Autotuner(_fake_ssd_kernel)
    nameless = Autotuner(None)  # type: ignore[arg-type]
    a = types.ModuleType("mamba_ssm.ops.fake_a")
    a.kernel = Heuristics(tuner)  # type: ignore[attr-defined]
    a.alias = tuner  # type: ignore[attr-defined]
    a.other_kernel = nameless  # type: ignore[attr-defined]
    a.not_a_tuner = types.SimpleNamespace(cache={}, configs=[])  # type: ignore[attr-defined]
    b = types.ModuleType("mamba_ssm.ops.fake_b")
    b.same = tuner  # type: ignore[attr-defined]
    outside = types.ModuleType("mamba_ssmx.fake")  # another package that only shares the prefix
    outside.k = Autotuner(_fake_ssd_kernel)  # type: ignore[attr-defined]
    for mod in (a, b, outside):
        monkeypatch.setitem(sys.modules, mod.__name__, mod)
    assert find_autotuners() == []  # triton not imported: no scan at all
    fake_triton(monkeypatch)
    found = find_autotuners()
    assert [t.name for t in found] == ["mamba_ssm.ops.fake_a._fake_ssd_kernel", "mamba_ssm.ops.fake_a.other_kernel"]
    assert find_autotuners(("mamba_ssmx",))[0].obj is outside.k
    tuner.cache[KEY] = FakeConfig(1, 8)
    tuner.cache[(128,)] = FakeConfig(2, 8)
    rows = chosen(found)
    assert {"kernel": "mamba_ssm.ops.fake_a._fake_ssd_kernel", "key": "(128,)",
            "config": "TUNED_AT: 2x8, num_warps: 4, num_stages: 3"} in rows and len(rows) == 2
    assert reset(found) == 2 and tuner.cache == {} and chosen(found) == []


def test_largest_first_orders_by_tokens_then_batch():
    # 128 tokens three ways: the larger batch first; duplicates once
    assert largest_first([(1, 64), (1, 128), (2, 64), (8, 16), (8, 16), (1, 256)]) == [
        (1, 256), (8, 16), (2, 64), (1, 128), (1, 64)]


def test_disk_cache_is_noted_and_unknown_policies_refused(kernel):
    kernel.cache_results = True  # type: ignore[attr-defined]  # Triton >= 3.4 with TRITON_CACHE_AUTOTUNING=1
    info = json.loads(AutotunePolicy("first").as_json() or "null")
    assert "disk cache is on for 1 kernel(s)" in info["reason"]
    with pytest.raises(ValueError, match="not one of largest, first, per-point"):
        AutotunePolicy("fastest")


def test_cli_refuses_an_unknown_policy(cli, tmp_path):
    res = cli("trace", "--out", str(tmp_path / "run"), "--autotune", "fastest", "--quiet")
    assert res.returncode == 2
    assert "error: --autotune 'fastest' is not largest, first or per-point" in res.stderr


# -- reports --------------------------------------------------------------------------------------------


def _with_autotune(run: Path, value: dict | None) -> None:
    record = read_run_record(run)
    record["autotune_json"] = json.dumps(value) if value is not None else None
    RunWriter(run, run_id=record.pop("run_id")).write_run_record(
        {k: v for k, v in record.items() if k != "schema_version"})


def _facts(run: Path) -> dict[str, str]:
    from mambaprof.reports.run_analysis import RunAnalysis
    from mambaprof.reports.views import run_facts

    return dict(run_facts(RunAnalysis(run, use_calibration=False)))


CONFIGS = [{"kernel": f"mamba_ssm.k{i}", "key": "(256,)", "config": "BLOCK_SIZE_M: 64"} for i in range(14)]


@pytest.mark.parametrize(("value", "line"), [
    ({"policy": "largest", "tuned_at": {"batch": 8, "seqlen": 16384}, "reason": None, "configs": CONFIGS},
     "tuned at batch 8 x 16384 (largest point), 14 kernels"),
    ({"policy": "largest", "tuned_at": {"batch": 8, "seqlen": 8192},
      "reason": "out of memory at batch 8 x 16384; tuned at the next largest", "configs": CONFIGS[:1]},
     "tuned at batch 8 x 8192 (largest point that fit), 1 kernel; out of memory at batch 8 x 16384; tuned at the "
     "next largest"),
    ({"policy": "first", "tuned_at": None, "reason": None, "configs": CONFIGS[:2] * 2},
     "policy first (each kernel tuned at the first shape it ran), 2 kernels"),
    ({"policy": "per-point", "tuned_at": {"batch": 1, "seqlen": 512}, "reason": None, "configs": CONFIGS[:3]},
     "policy per-point (every point tuned at its own shape, the last at batch 1 x 512), 3 kernels"),
])
def test_report_facts_show_the_autotune_line(tmp_path, value, line):
    run = make_run(tmp_path / "run")
    _with_autotune(run, value)
    assert _facts(run)["Triton autotune"] == line


def test_report_reads_runs_without_autotune_or_with_null(tmp_path):
    run = make_run(tmp_path / "run")
    assert "Triton autotune" not in _facts(run)  # null: no autotuner
    (part,) = (run / "runs").glob("*.parquet")
    table = pq.read_table(part)
    pq.write_table(table.drop_columns(["autotune_json"]), part)  # a run written before the column existed
    assert "autotune_json" not in read_run_record(run)
    facts = _facts(run)
    assert "Triton autotune" not in facts and "sweep" in facts
