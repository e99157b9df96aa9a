"""`mambaprof report` on a `mambaprof prune` run: the what-if (table, score verdicts, Pareto plot, caveat) in
the terminal, HTML and Parquet, and attribution per variant, never summed across variants. Tiny models,
in process (seconds on CPU)."""

import contextlib
import io
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from mambaprof.cli import main
from mambaprof.evaluation.chance import (
    ANSWERS_PER_EPISODE,
    CHANCE_PCT,
    accuracy_caveat,
    perplexity_at_chance,
    task_chance_limit_pct,
)
from mambaprof.evaluation.tasks import TASKS, make_task
from mambaprof.pruning import whatif
from mambaprof.reports import pruning, views
from mambaprof.reports.run_analysis import RunAnalysis
from mambaprof.storage.rundir import read_table

MODEL_PY = '''
import torch
from transformers import MambaConfig, MambaForCausalLM


def build_model():
    torch.manual_seed(0)
    return MambaForCausalLM(MambaConfig(vocab_size=256, hidden_size=32, state_size=8, num_hidden_layers=2,
                                        expand=2, use_cache=False)).eval()
'''
SMALL = ["--calib-tokens", "512", "--eval-tokens", "1024", "--calib-seqlen", "32", "--task-episodes", "8",
         "--seqlens", "16,32", "--repeats", "1", "--warmup", "0", "--decode-steps", "2", "--profile-repeats", "0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A prune run of a random-weight model.py (not a preset): delta and random at 0.5, uniform split."""
    base = tmp_path_factory.mktemp("prune")
    (base / "model.py").write_text(MODEL_PY)
    torch.set_num_threads(1)
    stdout = io.StringIO()
    with pytest.raises(SystemExit) as exc, contextlib.redirect_stdout(stdout):
        main(["prune", str(base / "model.py"), "--ratios", "0,0.5", "--score", "delta,random", "--out",
              str(base / "run"), "--quiet", *SMALL])
    assert exc.value.code in (0, None)
    (base / "prune_stdout.txt").write_text(stdout.getvalue())
    return base / "run"


def _report(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(["report", *map(str, args)])
    out = capsys.readouterr()
    assert exc.value.code in (0, None), out.err
    return out.out


def _raw_block_ms(run_dir):
    """Wall ms of the Mamba blocks per point (sum over layers and block components) from the raw table."""
    comps = read_table(run_dir, "components").to_pandas()
    block = comps[comps.family.isin(["mamba1", "mamba2"])]
    return block.groupby("point_id").wall_ms_mean.sum()


def test_prune_stores_caveat_and_window_nll(run):
    df = read_table(run, "pruning").to_pandas()
    assert len(df) == 3 * 2  # (unpruned, delta@0.5, random@0.5) x 2 seqlens
    caveat = df.accuracy_caveat.dropna().unique()
    assert len(caveat) == 1 and (df.accuracy_caveat == caveat[0]).all()
    base = df[df.variant_id == 0].iloc[0]
    assert base.perplexity > 128 and "perplexity" in caveat[0] and "not learned enough" in caveat[0]
    assert "random weights" not in caveat[0]  # a model.py, not a preset: the numbers say it has not learned
    printed = (run.parent / "prune_stdout.txt").read_text()
    assert f"CAVEAT: {caveat[0]}" in printed and "mambaprof report" in printed
    for r in df.itertuples():  # 1024 bytes -> 31 windows of 33; their mean is the perplexity's NLL
        windows = np.asarray(r.eval_window_nll)
        assert windows.size == 1024 // 33 and r.eval_tokens == windows.size * 32
        assert math.isclose(windows.mean(), r.eval_nll, rel_tol=1e-9)


def test_terminal_report_is_the_whatif_per_variant(run, capsys):
    out = _report(capsys, run)
    assert "pruning what-if" in out and "perplexity by score at equal ratio (lower wins)" in out
    assert "CAVEAT: the unpruned model has not learned enough" in out
    assert "Mamba-1 at 32 tokens" not in out  # the trace report's mixed attribution is gone
    df = read_table(run, "pruning").to_pandas()
    timed = df[(df.variant_id == df.timing_variant_id) & df.component_point_id.notna()]
    assert list(timed.variant_id) == [0, 1]  # random@0.5 has delta@0.5's shape: timed once
    raw = _raw_block_ms(run)
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("variant ") and " block " in line)
    column = lines[header].split().index("block")  # a narrow terminal may move later columns to a second table
    for vid, name in ((0, "unpruned"), (1, "delta@0.5")):
        point = int(timed[timed.variant_id == vid].component_point_id.iloc[0])
        row = next(line for line in lines[header:] if line.startswith(f"{name} "))
        block = float(row.split()[column])
        assert block == pytest.approx(raw[point], rel=2e-3)  # one variant's own blocks, 4 significant digits
    assert raw.size == 2 and max(len(line) for line in lines) <= 100
    words = " ".join(out.split())  # the verdict on a model at chance says so
    assert "At ratio 0.5," in words and "but see the caveat: this model has not learned enough" in words


def test_analysis_never_mixes_variants(run):
    analysis = RunAnalysis(run)
    df = read_table(run, "pruning").to_pandas()
    points = dict(df.dropna(subset=["component_point_id"]).groupby("timing_variant_id").component_point_id.first())
    assert list(analysis.points.point_id) == [points[0]]  # the run's own attribution: the unpruned model only
    assert set(analysis.variants) == {0, 1}
    for vid, variant in analysis.variants.items():
        assert set(variant.components.point_id) == {points[vid]} and len(variant.points) == 1
        block = pruning.variant_block_times(variant)
        assert block["block"] == pytest.approx(_raw_block_ms(run)[points[vid]], rel=1e-12)
        comps = variant.components
        assert not comps.duplicated(["family", "component"]).any()
    assert analysis.variants[1].label.endswith("delta@0.5")


def test_html_and_parquet(run, tmp_path, capsys):
    page, summary = tmp_path / "r.html", tmp_path / "s"
    out = _report(capsys, run, "--html", page, "--parquet", summary, "--quiet")
    assert "summary tables of 2 variant(s) (unpruned, delta@0.5)" in out
    text = page.read_text()
    assert text.count('data-plot="pareto"') == 1 and "<script" not in text
    for expected in ("pruning what-if", "perplexity by score at equal ratio", "Caveat:", "delta@0.5: Mamba-1 at 32",
                     "unpruned: Mamba-1 at 32", "prefill throughput by sequence length"):
        assert expected in text, expected
    frame = pd.read_parquet(summary / "summary_pruning.parquet")
    assert len(frame) == 6 and frame.accuracy_caveat.notna().all()
    assert pq.read_schema(summary / "summary_pruning.parquet").field("block_ms").metadata[b"unit"] == b"ms"
    raw = _raw_block_ms(run)
    df = read_table(run, "pruning").to_pandas().set_index(["variant_id", "seqlen"])
    for r in frame.itertuples():
        src = df.loc[(r.variant_id, r.seqlen)]
        if r.seqlen == 32:
            assert r.block_ms == pytest.approx(raw[int(src.component_point_id)], rel=1e-12)
        else:
            assert pd.isna(r.block_ms)
    pruned = frame[(frame.variant_id > 0) & (frame.seqlen == 32)].set_index("score")
    assert sorted(pruned.score_rank) == [1, 2] and set(pruned.score_verdict) <= {"winner", "tie", "behind"}
    for name in ("unpruned", "delta@0.5"):
        comps = pd.read_parquet(summary / name / "summary_components.parquet")
        assert comps.point_id.nunique() == 1


def test_legacy_run_without_new_columns(run, tmp_path, capsys):
    """A prune run written before schema 2 (no caveat or per-window NLL): recomputed caveat, 1% tie noise."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(run, old)
    for part in (old / "pruning").glob("*.parquet"):
        table = pq.read_table(part)
        pq.write_table(table.drop_columns(["accuracy_caveat", "eval_window_nll"]), part)
    analysis = RunAnalysis(old)
    assert "not learned enough" in analysis.pruning.caveat
    winners = pruning.score_winners(analysis.pruning.table)
    assert winners.noise_pct.iloc[0] == pruning.TIE_FALLBACK_PCT
    assert "CAVEAT" in _report(capsys, old)


def test_report_of_a_run_whose_timing_crashed(tmp_path, monkeypatch, capsys):
    from support.models import tiny_mamba

    from mambaprof.model.loading import LoadedModel
    from mambaprof.storage.rundir import RunWriter

    def boom(*args):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(whatif, "interleaved_prefill", boom)
    config = whatif.PruneConfig(ratios=[0, 0.5], scores=["magnitude"], seqlens=[16], device=torch.device("cpu"),
                                dtype=torch.float32, calib_tokens=256, calib_seqlen=32, eval_tokens=512,
                                eval_seqlen=32, task_episodes=4, repeats=1, warmup=0, decode_steps=0,
                                profile_repeats=0)
    with pytest.raises(RuntimeError):
        whatif.run_whatif(LoadedModel(tiny_mamba(layers=1, d_model=32), "file", "tiny"), config,
                          RunWriter(tmp_path / "run"))
    out = _report(capsys, tmp_path / "run", "--html", tmp_path / "r.html")
    words = " ".join(out.split())
    assert "magnitude@0.5" in out and "no per-component measurement of any variant finished" in words
    row = next(line for line in out.splitlines() if line.startswith("magnitude@0.5"))
    assert row.split()[2:6] == ["-"] * 4  # no timing: dashes, but accuracy is there
    assert "No component measurement of any variant finished" in (tmp_path / "r.html").read_text()


# ---- the caveat's thresholds -------------------------------------------------------------------------

def test_perplexity_chance_threshold():
    assert perplexity_at_chance(256.0) and perplexity_at_chance(128.0) and perplexity_at_chance(1493.0)
    assert not perplexity_at_chance(127.9) and not perplexity_at_chance(3.2)


def test_task_chance_limit_is_three_binomial_sigmas():
    # selective copy at 256 episodes: 2048 answers, p = 1/16: 6.25 + 3 * sqrt(p (1 - p) / 2048) * 100
    assert task_chance_limit_pct("selective_copy", 2048) == pytest.approx(6.25 + 1.6047, abs=1e-4)
    assert task_chance_limit_pct("assoc_recall", 1024) == pytest.approx(10 + 2.8125, abs=1e-4)
    for task in TASKS:  # the answer counts the fallback assumes are the generators'
        labels = make_task(task, 5, seed=0).labels
        assert int((labels != -100).sum()) == 5 * ANSWERS_PER_EPISODE[task]


def test_caveat_cases():
    answers = {"selective_copy": 2048, "assoc_recall": 1024}
    learned = {"selective_copy": 60.0, "assoc_recall": 40.0}
    assert accuracy_caveat(12.0, learned, answers) is None
    text = accuracy_caveat(12.0, learned, answers, random_weights=True)
    assert "random weights" in text and "accuracy deltas (perplexity and task accuracy)" in text
    text = accuracy_caveat(300.0, learned, answers)
    assert "perplexity deltas to mean anything" in text
    assert "300 per byte is worse than a uniform guess over the 256 byte values (which scores 256" in text
    assert "near that of a uniform guess" in accuracy_caveat(200.0, learned, answers)
    assert "is that of a uniform guess" in accuracy_caveat(256.4, learned, answers)
    tasks = accuracy_caveat(12.0, {"selective_copy": 7.0, "assoc_recall": 40.0}, answers)
    assert "the deltas of selective copying" in tasks and "perplexity deltas stand" in tasks
    both = accuracy_caveat(250.0, {"selective_copy": 6.0, "assoc_recall": 10.5}, answers)
    assert both.startswith("the unpruned model has not learned enough for accuracy deltas")
    assert accuracy_caveat(12.0, {"selective_copy": CHANCE_PCT["selective_copy"] + 1.7, "assoc_recall": 40.0},
                           answers) is None  # 1.7 pp above chance > 3 sigma (1.6047 pp)


# ---- winner or tie -----------------------------------------------------------------------------------

def _table(ppl_windows: dict[str, list[float] | None], ppls: dict[str, float] | None = None) -> pd.DataFrame:
    rows = [{"variant_id": 0, "score": "none", "ratio": 0.0, "seqlen": 64, "perplexity": 20.0,
             "eval_window_nll": None}]
    for i, (score, windows) in enumerate(ppl_windows.items(), start=1):
        ppl = ppls[score] if ppls else math.exp(float(np.mean(windows)))
        rows.append({"variant_id": i, "score": score, "ratio": 0.5, "seqlen": 64, "perplexity": ppl,
                     "eval_window_nll": windows})
    return pd.DataFrame(rows)


def test_clear_winner_uses_paired_window_noise():
    rng = np.random.default_rng(0)
    base = rng.normal(3.0, 0.5, size=64)  # windows differ a lot from each other...
    delta = base + rng.normal(0.0, 0.002, size=64)
    random = base + 0.02 + rng.normal(0.0, 0.002, size=64)  # ...but random is 0.02 nats worse on every one
    winners = pruning.score_winners(_table({"delta": list(delta), "random": list(random)}))
    row = winners.loc[0.5]
    se = np.std(random - delta, ddof=1) / 8
    assert row.noise_pct == pytest.approx(max(100 * math.expm1(2 * se), 0.1))
    assert row.winner == "delta" and row.verdict == "winner" and row.runner_up == "random"
    assert row.margin_pct == pytest.approx(100 * (math.exp(np.mean(random) - np.mean(delta)) - 1))


def test_gap_within_noise_is_a_tie():
    rng = np.random.default_rng(1)
    base = rng.normal(3.0, 0.5, size=16)
    delta, random = base + rng.normal(0, 0.05, 16), base + rng.normal(0, 0.05, 16)
    table = _table({"delta": list(delta), "random": list(random)})
    row = pruning.score_winners(table).iloc[0]
    margin = abs(np.mean(random) - np.mean(delta))
    assert margin < 2 * np.std(random - delta, ddof=1) / 4  # the gap is inside 2 standard errors
    assert row.verdict == "tie" and row.winner == f"tie: {row.best}, {row.runner_up}"
    ranking = pruning.score_ranking(table)
    assert list(ranking.verdict) == ["tie", "tie"] and list(ranking.score_rank) == [1, 2]
    view = views.pruning_winners_view(table)
    assert view.rows[0][3].startswith("tie: ")


def test_floor_and_fallback_thresholds():
    same = [3.0] * 8
    # identical windows shifted by 0.0005 nats: zero spread, so the 0.1% floor decides (0.05% gap: tie)
    row = pruning.score_winners(_table({"delta": same, "random": [w + 0.0005 for w in same]})).iloc[0]
    assert row.noise_pct == pruning.TIE_FLOOR_PCT and row.verdict == "tie"
    row = pruning.score_winners(_table({"delta": same, "random": [w + 0.005 for w in same]})).iloc[0]
    assert row.verdict == "winner" and row.margin_pct == pytest.approx(100 * math.expm1(0.005))
    # no windows stored: 1% fallback
    ppls = {"delta": 10.0, "random": 10.05, "energy": 10.5}
    row = pruning.score_winners(_table({s: None for s in ppls}, ppls)).iloc[0]
    assert row.noise_pct == 1.0 and row.winner == "tie: delta, random"  # energy is 5% behind: not tied
    ranking = pruning.score_ranking(_table({s: None for s in ppls}, ppls)).set_index("score")
    assert ranking.loc["energy", "verdict"] == "behind" and ranking.loc["energy", "score_rank"] == 3


def test_perplexity_means_nothing_only_for_random_weights_or_chance():
    table = _table({"delta": [3.1] * 4, "random": [3.2] * 4})  # unpruned perplexity 20: learned
    assert not pruning.perplexity_means_nothing(table, "hf")
    assert pruning.perplexity_means_nothing(table, "preset") and pruning.perplexity_means_nothing(table, "default")
    assert pruning.perplexity_means_nothing(table.assign(perplexity=300.0), "file")


def test_summary_view_adds_peak_memory_where_measured(run):
    df = pruning.read_pruning(run)
    assert "Δpeak" not in views.pruning_summary_view(df).headers  # CPU: no activation peak measured
    gpu = df.assign(peak_memory_delta_pct=-df.states_removed_pct / 10)
    view = views.pruning_summary_view(gpu)
    col = view.headers.index("Δpeak")
    assert [row[col] for row in view.rows] == ["-0.0%", "-5.0%", "-5.0%"]  # unpruned, delta@0.5, random@0.5
    assert [row[0] for row in view.rows] == ["unpruned", "delta@0.5", "random@0.5"]
