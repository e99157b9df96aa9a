"""A Transformer beside a Mamba in `mambaprof compare` (the prefill crossover), and the hybrid view in HTML. The CLI
calls fork from a warm process (`cli`); trace, report and compare keep their real-subprocess tests elsewhere."""

from __future__ import annotations

import pandas as pd
import pytest

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
def runs(tmp_path_factory, forked_cli):
    root = tmp_path_factory.mktemp("cmp")
    out = {}
    for preset in ("llama-tiny", "mamba2-tiny"):
        out[preset] = root / preset
        res = forked_cli("trace", "--preset", preset, "--seqlens", "16,32,64", *TINY, "--out", str(out[preset]),
                      env=ENV)
        assert res.returncode == 0, res.stderr[-2000:]
    return out


@pytest.mark.slow
def test_compare_sets_a_transformer_beside_a_mamba(runs, tmp_path, cli) -> None:
    html = tmp_path / "cmp.html"
    res = cli("compare", str(runs["llama-tiny"]), str(runs["mamba2-tiny"]), "--html", str(html), env=ENV)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Transformer vs Mamba: prefill crossover" in res.stdout
    text = html.read_text()
    assert "Transformer vs Mamba: prefill crossover" in text
    section = text.split("Transformer vs Mamba: prefill crossover", 1)[1][:1200]
    assert "llama-tiny" in section and "mamba2-tiny" in section
    assert any(w in section for w in ("measured: between", "extrapolated from fits", "already takes longer",
                                      "none found"))
    same = cli("compare", str(runs["mamba2-tiny"]), str(runs["mamba2-tiny"]), env=ENV)
    assert same.returncode == 0 and "prefill crossover" not in same.stdout


def test_energy_and_memory_by_layer_kind_from_their_tables() -> None:
    from mambaprof.reports.hybrids import energy_by_kind, memory_by_kind

    def e(layer, comp, scope, mj, status="resolved", rep=1):
        return {"batch": 1, "seqlen": 64, "layer": layer, "component": comp, "scope": scope, "status": status,
                "energy_mj": mj, "layers_represented": rep}

    energy = pd.DataFrame([e(-1, "forward", "forward", 100.0), e(2, "ssm_scan", "component", 6.0, rep=3),
                           e(2, "in_proj", "component", 4.0, rep=3), e(2, "mlp", "component", 5.0, rep=3),
                           e(2, "conv1d", "component", None, status="unresolved", rep=3),
                           e(-1, "lm_head", "component", 8.0)])
    got = energy_by_kind(energy).set_index("kind")
    assert got.loc["mamba", "energy_mj"] == pytest.approx(30.0)  # (6 + 4) x 3 layers; unresolved left out
    assert got.loc["mlp", "energy_mj"] == pytest.approx(15.0)
    assert got.loc["rest", "share_of_forward_pct"] == pytest.approx(8.0)
    assert "attention" not in got.index  # never measured: absent, not zero
    assert energy_by_kind(pd.DataFrame()).empty

    def m(layer, comp, peak, alloc):
        return {"batch": 1, "seqlen": 64, "layer": layer, "component": comp, "peak_delta_bytes": peak,
                "alloc_delta_bytes": alloc}

    memory = pd.DataFrame([m(0, "in_proj", 600, 100), m(0, "ssm_scan", 200, 50), m(1, "attention", 150, 10),
                           m(1, "residual", None, -20), m(-1, "lm_head", 50, 40)])
    mem = memory_by_kind(memory).set_index("kind")
    assert mem.loc["mamba", "peak_max_bytes"] == 600 and mem.loc["mamba", "alloc_delta_bytes"] == 150
    assert mem.loc["mamba", "peak_share_pct"] == pytest.approx(80.0)  # 800 of 1000 summed peak bytes
    assert mem.loc["rest", "alloc_delta_bytes"] == 20


def test_html_report_has_the_hybrid_view(tmp_path, cli) -> None:
    from mambaprof.reports.hybrids import hybrid_view
    from mambaprof.reports.render_html import hybrid_section

    out, html = tmp_path / "run", tmp_path / "r.html"
    res = cli("trace", "--preset", "bamba-tiny", "--seqlens", "16,32", *TINY, "--out", str(out), env=ENV)
    assert res.returncode == 0, res.stderr[-2000:]
    rep = cli("report", str(out), "--html", str(html), "--quiet", env=ENV)
    assert rep.returncode == 0, rep.stderr[-2000:]
    text = html.read_text()
    section = text.split("Hybrid view (layer kinds)", 1)[1]
    assert "mamba2+mlp x2, attention+mlp x1" in section and 'data-plot="kinds"' in section
    assert "Share of the forward by layer kind" in section and "Decode cache per sequence" in section
    assert "Memory by layer kind" in section  # the CPU run has a memory table (profiler allocations)
    assert "Energy per forward by layer kind" not in section  # and no energy table: no energy section
    view = hybrid_view(out)
    view.energy = pd.DataFrame([{"batch": 1, "seqlen": 32, "kind": "mamba", "energy_mj": 12.5,
                                 "share_of_forward_pct": 62.5}])
    assert "Energy per forward by layer kind" in hybrid_section(view) and "62.5%" in hybrid_section(view)
