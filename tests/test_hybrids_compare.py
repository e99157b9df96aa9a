"""A Transformer beside a Mamba in `mambaprof compare` (the prefill crossover), and the hybrid view in HTML."""

from __future__ import annotations

import pandas as pd
import pytest
from support.cli import run_cli

from mambaprof.reports.hybrids import format_prefill_crossovers, prefill_crossovers

ENV = {"OMP_NUM_THREADS": "1"}
TINY = ["--repeats", "1", "--warmup", "1", "--profile-repeats", "0"]


def _points(lengths: list[int], ms) -> pd.DataFrame:
    return pd.DataFrame({"batch": 1, "seqlen": lengths, "status": "ok", "wall_ms": [ms(x) for x in lengths],
                         "kernel_ms": None})


def test_prefill_crossover_measured_extrapolated_or_absent_and_said_so() -> None:
    llama = {"model_family": "transformer", "n_params": 100}
    mamba = {"model_family": "mamba2", "n_params": 110}
    # Transformer 1e-4 L^2 + 1 ms, Mamba 0.1 L + 1 ms: they cross at L = 1000
    t, m = (lambda x: 1e-4 * x * x + 1), (lambda x: 0.1 * x + 1)
    far = prefill_crossovers(_points([64, 128, 256, 512], t), _points([64, 128, 256, 512], m), llama, mamba,
                             "llama", "mamba", "wall")
    assert len(far) == 1 and not far[0].measured and far[0].seqlen == pytest.approx(1000.0, rel=1e-6)
    assert far[0].transformer == "llama" and far[0].params_ratio == pytest.approx(100 / 110)
    line = format_prefill_crossovers(far)[0]
    assert "extrapolated" in line and "not measured" in line and "1,000 tokens" in line and "same size" not in line
    # Mamba given as A this time: the order of the runs does not matter
    near = prefill_crossovers(_points([256, 512, 2048], m), _points([256, 512, 2048], t), mamba, llama,
                              "mamba", "llama", "kernel")
    assert near[0].measured and 512 < near[0].seqlen < 2048 and near[0].transformer == "llama"
    assert near[0].time == "wall"  # no kernel times in these points: wall time, and the line says so
    assert "wall time" in format_prefill_crossovers(near)[0]
    none = prefill_crossovers(_points([64, 128], t), _points([64, 128], m), llama, mamba, "llama", "mamba", "wall")
    assert none[0].seqlen is None and "none found" in format_prefill_crossovers(none)[0]
    small = prefill_crossovers(_points([256, 512, 2048], t), _points([256, 512, 2048], m),
                               {**llama, "n_params": 10}, mamba, "llama", "mamba", "wall")
    assert "not the same size" in format_prefill_crossovers(small)[0]
    # two Mamba runs (or two Transformers): no crossover section
    assert prefill_crossovers(_points([64], t), _points([64], m), mamba, mamba, "a", "b", "wall") == []
    assert prefill_crossovers(_points([64], t), _points([64], m), llama, llama, "a", "b", "wall") == []


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    out = {}
    for preset in ("llama-tiny", "mamba2-tiny"):
        out[preset] = root / preset
        res = run_cli("trace", "--preset", preset, "--seqlens", "16,32,64", *TINY, "--out", str(out[preset]),
                      env=ENV)
        assert res.returncode == 0, res.stderr[-2000:]
    return out


def test_compare_sets_a_transformer_beside_a_mamba(runs, tmp_path) -> None:
    html = tmp_path / "cmp.html"
    res = run_cli("compare", str(runs["llama-tiny"]), str(runs["mamba2-tiny"]), "--html", str(html), env=ENV)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Transformer vs Mamba: prefill crossover" in res.stdout
    text = html.read_text()
    assert "Transformer vs Mamba: prefill crossover" in text
    section = text.split("Transformer vs Mamba: prefill crossover", 1)[1][:1200]
    assert "llama-tiny" in section and "mamba2-tiny" in section
    assert any(w in section for w in ("measured: between", "extrapolated from fits", "already takes longer",
                                      "none found"))
    same = run_cli("compare", str(runs["mamba2-tiny"]), str(runs["mamba2-tiny"]), env=ENV)
    assert same.returncode == 0 and "prefill crossover" not in same.stdout
