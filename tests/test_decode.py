"""The decode phase on CPU (tiny presets): the split step reproduces the model's own cached step and its
`generate` token for token, the decode cache matches its closed form, the sweep writes its tables and records
oom/error points without stopping. Timing is recorded in the run, never asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from mambaprof.model.counts import decode_cache_bytes, mixer_decode_counts
from mambaprof.model.decode import decode_step_for
from mambaprof.model.structure import discover
from mambaprof.run import decode as run_decode
from mambaprof.run.decode import DecodeConfig, run_decode_sweep
from mambaprof.run.tracing import ModelSource
from mambaprof.storage.rundir import RunWriter, read_run_record, read_table
from mambaprof.storage.schema import get_table

PRESETS = ("mamba-tiny", "mamba2-tiny", "falcon-mamba-tiny")
CPU = torch.device("cpu")


def _loaded(preset: str):
    loaded = ModelSource(preset=preset).load(CPU, torch.float32)
    return loaded, discover(loaded.model)


@pytest.mark.parametrize("preset", PRESETS)
def test_split_step_reproduces_own_step_and_generate(preset: str) -> None:
    loaded, structure = _loaded(preset)
    batch, prompt, new = 3, 12, 6
    ids = torch.randint(0, structure.vocab_size, (batch, prompt), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        step = decode_step_for(loaded.model, structure, batch, prompt + new + 4)
        first = step.prefill(ids).argmax(-1, keepdim=True)
        snap = step.snapshot()
        own = step.own_step(first).clone()
        step.restore(snap)
        split = step.split_step(first).clone()
        assert torch.allclose(own, split, atol=1e-5, rtol=1e-5)
        # the step after the prompt equals a full forward over prompt + token
        full = loaded.model(torch.cat([ids, first], dim=1)).logits[:, -1]
        assert torch.allclose(full, split, atol=1e-4, rtol=1e-4)
        step.restore(snap)
        tokens = [first]
        for _ in range(new - 1):
            tokens.append(step.split_step(tokens[-1]).argmax(-1, keepdim=True))
        generated = step.generate(ids, new, cuda_graphs=False)
    assert torch.equal(torch.cat(tokens, dim=1), generated)
    comps = {(s.layer, s.component) for s in step.segments()}
    expected = {"in_proj", "conv1d", "ssm_scan", "gating", "out_proj", "norm", "residual"}
    if preset != "mamba2-tiny":  # Mamba-1: x_proj and dt_proj (FalconMamba: with its weightless dt/B/C norms)
        expected.add("ssm_params")
    assert {c for layer, c in comps if layer == 0} == expected
    assert {c for layer, c in comps if layer == -1} == {"embedding", "norm", "lm_head"}


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("batch", [1, 5])
def test_decode_cache_matches_closed_form(preset: str, batch: int) -> None:
    loaded, structure = _loaded(preset)
    ids = torch.randint(0, structure.vocab_size, (batch, 8))
    with torch.inference_mode():
        step = decode_step_for(loaded.model, structure, batch, 16)
        step.prefill(ids)
    measured = step.cache_bytes()
    for site in structure.mixers:
        closed = decode_cache_bytes(site.dims, batch, 4)
        assert measured[(site.layer, "conv1d")] == closed["conv1d"]
        assert measured[(site.layer, "ssm_scan")] == closed["ssm_scan"]
        counts = mixer_decode_counts(site.dims, batch, 4)
        assert counts["ssm_scan"].state_bytes == 2 * closed["ssm_scan"]
        assert counts["conv1d"].state_bytes == 2 * closed["conv1d"]
        assert counts["in_proj"].weight_bytes == 4 * site.module.in_proj.weight.numel()
        assert counts["out_proj"].weight_bytes == 4 * site.module.out_proj.weight.numel()


@pytest.mark.parametrize("preset", [*PRESETS, "bamba-tiny", "jamba-tiny", "zamba2-tiny"])
def test_bf16_step_keeps_the_cache_dtype_the_model_keeps(preset: str) -> None:
    """In bf16 the split step casts the (float32 under residual_in_fp32) hidden state for the head as the model
    does, and the closed-form cache counts the float32 SSM state transformers keeps (the scan's final state), so
    the cache equals its closed form and the run says the state is wider than the weights."""
    loaded = ModelSource(preset=preset).load(CPU, torch.bfloat16)
    structure = discover(loaded.model)
    base = {"run_id": "t", "rank": 0, "world_size": 1, "point_id": 0, "device": "cpu", "batch": 2, "seqlen": 8,
            "dtype": "bfloat16"}
    row, comps = run_decode.measure_decode_point(loaded, structure, _config(dtype=torch.bfloat16), 2, 8, base)
    assert row["status"] == "ok" and row["tokens_match"] is True and row["tokens_match_generate"] is True
    assert row["cache_bytes"] == row["cache_bytes_closed_form"] > 0
    states = [c for c in comps if c["component"] == "ssm_scan" and c["timing"] == "eager"]
    assert states and all(c["cache_bytes"] == c["cache_bytes_closed_form"] for c in states)
    site = structure.mixers[0]
    assert row["ssm_state_bytes"] == len(structure.mixers) * 4 * site.dims.recurrent_state_elems(2)  # float32
    assert row["conv_state_bytes"] == len(structure.mixers) * 2 * site.dims.conv_state_elems(2)  # bf16
    assert "SSM state 4 bytes per element" in row["notes"]
    # the roofline's state traffic counts the state as kept: read and written once per step
    assert states[0]["state_bytes"] == 2 * 4 * site.dims.recurrent_state_elems(2)


def _config(**kw) -> DecodeConfig:
    base = dict(seqlens=[8], batches=[1, 2], device=CPU, dtype=torch.float32, repeats=2, warmup=0,
                profile_repeats=0, tensorboard=False, check_steps=3, generate_repeats=1)
    base.update(kw)
    return DecodeConfig(**base)


@pytest.mark.parametrize("preset", PRESETS)
def test_decode_sweep_writes_tables(tmp_path: Path, preset: str) -> None:
    loaded, structure = _loaded(preset)
    writer = RunWriter(tmp_path / "run")
    writer.prepare()
    result = run_decode_sweep(loaded, structure, _config(), writer)
    assert result.status == "complete", result.reason
    points = read_table(tmp_path / "run", "decode_points").to_pylist()
    assert [p["batch"] for p in sorted(points, key=lambda p: p["point_id"])] == [1, 2]
    for p in points:
        assert p["status"] == "ok" and p["phase"] == "decode" and p["cuda_graphs"] is False
        assert p["tokens_match"] is True and p["tokens_match_generate"] is True
        assert p["logits_max_abs_diff"] < 1e-4
        assert p["cache_bytes"] == p["cache_bytes_closed_form"] > 0
        assert p["own_eager_ms"] > 0 and p["split_eager_ms"] > 0 and p["ms_per_token"] == p["own_eager_ms"]
        assert p["generate_ms_per_token"] is not None  # recorded; its size depends on the machine
        # one generate round: the interval is that round's estimate, the point's own number
        assert p["step_vs_generate_ci_low_pct"] == pytest.approx(p["step_vs_generate_pct"])
        assert p["step_vs_generate_ci_high_pct"] == pytest.approx(p["step_vs_generate_pct"])
        assert p["graph_replay_ms"] is None and p["launch_bound_pct"] is None
        assert p["tokens_per_s"] == pytest.approx(p["batch"] * 1000.0 / p["ms_per_token"])
    comps = read_table(tmp_path / "run", "decode_components").to_pylist()
    assert {c["timing"] for c in comps} == {"eager"}
    for pid in (0, 1):
        rows = [c for c in comps if c["point_id"] == pid]
        point = next(p for p in points if p["point_id"] == pid)
        assert sum(c["time_ms"] for c in rows) == pytest.approx(point["component_eager_sum_ms"])
        assert sum(c["cache_bytes"] or 0 for c in rows) == point["cache_bytes"]
        assert sum(c["bytes_min"] for c in rows) == pytest.approx(point["bytes_min"])
        assert {c["component"] for c in rows} >= {"embedding", "lm_head", "in_proj", "ssm_scan", "residual"}
    assert pq.read_schema(next((tmp_path / "run" / "decode_points").glob("*.parquet"))).names == \
        get_table("decode_points").column_names
    record = read_run_record(tmp_path / "run")
    assert json.loads(record["config_json"])["phase"] == "decode"
    assert record["n_points_ok"] == 2


def test_oom_and_error_points_are_recorded_and_the_sweep_goes_on(tmp_path: Path, monkeypatch) -> None:
    loaded, structure = _loaded("mamba-tiny")
    real = run_decode.measure_decode_point

    def flaky(loaded, structure, config, batch, prompt_len, base, on_phase=None):
        if batch == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if batch == 3:
            raise RuntimeError("boom\nsecond line")
        return real(loaded, structure, config, batch, prompt_len, base, on_phase)

    monkeypatch.setattr(run_decode, "measure_decode_point", flaky)
    writer = RunWriter(tmp_path / "run")
    writer.prepare()
    result = run_decode_sweep(loaded, structure, _config(batches=[1, 2, 3, 4], generate=False), writer)
    assert result.status == "incomplete" and result.counts == {"ok": 2, "oom": 1, "error": 1}
    points = {p["batch"]: p for p in read_table(tmp_path / "run", "decode_points").to_pylist()}
    assert points[2]["status"] == "oom" and points[3]["status"] == "error"
    assert "\n" not in points[3]["error"]
    assert points[4]["status"] == "ok" and points[4]["generate_ms_per_token"] is None


def test_cli_decode_and_model_without_cache_path(tmp_path: Path, cli) -> None:
    res = cli("trace", "--phase", "decode", "--preset", "mamba-tiny", "--prompt-len", "8", "--batch", "1",
              "--repeats", "2", "--warmup", "0", "--out", str(tmp_path / "ok"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "status complete" in res.stdout
    peaks = tmp_path / "peaks.json"
    peaks.write_text(json.dumps({"name": "test", "tflop_per_s": {"float32": 1.0}, "gb_per_s": 10.0}))
    res = cli("report", str(tmp_path / "ok"), "--html", str(tmp_path / "d.html"), "--peaks", str(peaks),
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "decode report" in res.stdout and "Decode step by component" in res.stdout
    html = (tmp_path / "d.html").read_text()
    assert "<h2>Decode</h2>" in html and "lm_head" in html
    from mambaprof.reports.decode import DecodeAnalysis

    analysis = DecodeAnalysis.load(tmp_path / "ok", peaks_file=peaks)
    point = analysis.points.iloc[0]
    assert point.roofline_ms == pytest.approx(point.bytes_min / 10e9 * 1e3)
    comps = analysis.by_component(1, 8)
    assert comps.share_pct.sum() == pytest.approx(100.0)
    assert comps.bytes_min.sum() == pytest.approx(point.bytes_min)
    model_py = tmp_path / "bare.py"
    model_py.write_text(
        "from transformers import MambaConfig, MambaModel\n"
        "def build_model():\n"
        "    return MambaModel(MambaConfig(vocab_size=64, hidden_size=32, state_size=4, num_hidden_layers=1))\n")
    res = cli("trace", str(model_py), "--phase", "decode", "--prompt-len", "4", "--batch", "1,2", "--repeats", "1",
              "--out", str(tmp_path / "bad"), cwd=tmp_path)
    assert res.returncode == 3
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no decode cache path" in errors[0]
    assert "Traceback" not in res.stderr
    points = read_table(tmp_path / "bad", "decode_points").to_pylist()
    assert [p["status"] for p in points] == ["error", "error"]
    res = cli("trace", "--phase", "sideways", cwd=tmp_path)
    assert res.returncode == 2 and "--phase 'sideways'" in res.stderr and "Traceback" not in res.stderr


def test_pruning_graph_decode_columns() -> None:
    from mambaprof.pruning.whatif import Timings, _graph_decode_columns

    base, pruned, none = Timings(), Timings(), Timings()
    base.decode_graph_ms = {64: [2.0, 2.2, 2.1], 256: [8.0]}
    pruned.decode_graph_ms = {64: [1.0, 1.1, 1.05], 256: [4.0]}
    cols = _graph_decode_columns(pruned, base)
    assert cols["decode_graph_batches"] == [64, 256]
    assert cols["decode_graph_ms_per_token"] == [1.05, 4.0]
    assert cols["decode_graph_speedup"] == pytest.approx([2.1 / 1.05, 2.0])
    assert _graph_decode_columns(none, base) == {}


def test_study_decode_phase(tmp_path: Path, cli) -> None:
    res = cli("study", "--models", "mamba-tiny", "--device", "cpu", "--seqlens", "64", "--batch", "1", "--repeats",
              "2", "--warmup", "0", "--profile-repeats", "0", "--point-seconds", "0", "--no-nvml", "--decode",
              "--decode-batch", "1,2", "--decode-prompt-len", "8", "--out", str(tmp_path / "st"), "--quiet",
              cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "st" / "study.json").read_text())
    assert [m["model"] for m in manifest["models"]] == ["mamba-tiny"]
    assert manifest["decode"][0]["status"] == "complete" and manifest["decode"][0]["n_ok"] == 2
    points = read_table(tmp_path / "st" / "mamba-tiny-decode", "decode_points").to_pylist()
    assert sorted(p["batch"] for p in points) == [1, 2] and all(p["tokens_match"] for p in points)
    assert "lm_head" in (tmp_path / "st" / "mamba-tiny-decode.html").read_text()
    assert (tmp_path / "st" / "report.html").is_file()  # the prefill study report is unaffected


def test_decode_refuses_a_model_with_layers_it_could_not_split() -> None:
    """A Mamba layer profiled as-is has no split step: a decode 'step' without it would time another model (on the
    H200 a probe bug once left every mamba_ssm layer as-is and the 'split step' ran in 0.4 ms for 48 layers)."""
    import warnings

    from support.models import tiny_mamba
    from transformers.models.mamba.modeling_mamba import MambaMixer

    from mambaprof.errors import UnsupportedModelError

    class DoubledMixer(MambaMixer):  # a family whose forward differs from what the recipe reproduces
        def forward(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            return 2.0 * super().forward(*args, **kwargs)

    model = tiny_mamba()
    model.backbone.layers[1].mixer.__class__ = DoubledMixer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        structure = discover(model)
    assert [a.layer for a in structure.asis] == [1]
    with pytest.raises(UnsupportedModelError, match=r"1 Mamba layer\(s\) could not be split \(layer 1"):
        decode_step_for(model, structure, 1, 64)


def test_step_vs_generate_interval_and_its_verdict() -> None:
    """The interval over generate's rounds, and what the report says of it: nothing within 5%, a warning
    beyond, and "cannot tell" across the bound."""
    from types import SimpleNamespace

    from mambaprof.reports.decode import vs_generate_finding

    cols = run_decode._vs_generate_interval(10.0, [10.0, 9.5, 10.5, 10.2, 9.9])
    assert cols["step_vs_generate_ci_low_pct"] == pytest.approx(100 * (10 / 10.5 - 1))
    assert cols["step_vs_generate_ci_high_pct"] == pytest.approx(100 * (10 / 9.5 - 1))
    assert run_decode._vs_generate_interval(10.0, [10.0, -1.0])["step_vs_generate_ci_low_pct"] is None
    assert run_decode._vs_generate_interval(None, [10.0])["step_vs_generate_ci_high_pct"] is None

    def point(pct_: float, lo: float | None, hi: float | None, device: str = "cpu") -> SimpleNamespace:
        return SimpleNamespace(step_vs_generate_pct=pct_, step_vs_generate_ci_low_pct=lo,
                               step_vs_generate_ci_high_pct=hi, ms_per_token=2.0, generate_ms_per_token=1.9,
                               device=device)

    assert vs_generate_finding(point(1.0, -2.0, 3.0)) is None
    assert "more than 5%" in vs_generate_finding(point(9.0, 6.0, 12.0))
    assert "cannot tell" in vs_generate_finding(point(3.0, -1.0, 8.0))
    # a run written before the interval existed: the GPU median alone decides, the CPU one says nothing
    assert "more than 5%" in vs_generate_finding(point(9.0, None, None, "cuda:0"))
    assert vs_generate_finding(point(9.0, None, None)) is None



def test_eager_timing_interleaves_own_and_split_steps_in_blocks() -> None:
    """Every requested step of each kind is timed, own and split alternating by blocks, not step by step."""
    calls: list[str] = []

    class Fake:
        device = CPU

        def own_step(self, tok):
            calls.append("own")

        def split_step(self, tok):
            calls.append("split")

    run_decode._time_eager(Fake(), torch.zeros(1, 1), steps=12, warmup=1)
    timed = calls[2:]  # after one warm-up step of each
    assert timed.count("own") == 12 and timed.count("split") == 12
    block = run_decode.EAGER_BLOCK
    assert timed[:2 * block] == ["own"] * block + ["split"] * block
    assert timed[-4:] == ["own", "own", "split", "split"]  # the last, shorter block
