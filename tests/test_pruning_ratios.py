"""Ratios: parsing, one-line errors for bad values, kept counts per layer (uniform and adaptive)."""

import pytest
import torch

from mambaprof.cli import main
from mambaprof.errors import BadArgumentError
from mambaprof.pruning.plan import make_plan, top_states
from mambaprof.pruning.ratios import adaptive_keep, parse_ratios, removed_count, uniform_keep


def test_parse_ratios_sorted_unique():
    assert parse_ratios("0.5, 0,0.125,0.5") == [0.0, 0.125, 0.5]


@pytest.mark.parametrize("text,expect", [
    ("-0.1", "is negative"), ("1", "would remove every state"), ("1.5", "would remove every state"),
    ("abc", "'abc' is not a number"), ("", "is empty"), ("0,,0.5", "empty item"), ("nan", "not a finite number"),
])
def test_bad_ratios_raise(text, expect):
    with pytest.raises(BadArgumentError, match=expect):
        parse_ratios(text)


def _cli_error(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        main(["prune", *args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    return exc.value.code, lines


@pytest.mark.parametrize("ratios,expect", [
    ("-0.25", "is negative"), ("1.0", "would remove every state"), ("0.2x", "is not a number"),
    ("", "is empty"), ("0.99", "leaves 0 of 16 states in layer 0"),
])
def test_prune_cli_bad_ratio_is_one_line(capsys, tmp_path, ratios, expect):
    code, lines = _cli_error(capsys, "--ratios", ratios, "--out", str(tmp_path / "run"), "--quiet",
                             "--calib-tokens", "512", "--eval-tokens", "512", "--calib-seqlen", "32",
                             "--seqlens", "16", "--decode-steps", "0", "--task-episodes", "4")
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], lines


@pytest.mark.parametrize("args,expect", [
    (["--score", "delta,bogus"], "'bogus' is not a score"),
    (["--per-layer", "global"], "is not one of uniform, adaptive"),
    (["--save-ratio", "0.3", "--ratios", "0,0.5"], "is not one of --ratios"),
])
def test_prune_cli_bad_options_are_one_line(capsys, tmp_path, args, expect):
    code, lines = _cli_error(capsys, *args, "--out", str(tmp_path / "run"), "--quiet")
    assert code == 2 and len(lines) == 1 and expect in lines[0], lines


def test_uniform_keep_counts():
    assert removed_count(16, 0.125) == 2 and removed_count(16, 0.375) == 6
    assert uniform_keep([16, 16, 8], 0.25) == [12, 12, 6]
    assert uniform_keep([16], 0.3) == [11]  # 4.8 states removed -> 5
    assert uniform_keep([128], 0.3, multiple=32) == [96]  # 90 kept, rounded up to a multiple of 32
    with pytest.raises(BadArgumentError, match="leaves 0 of 4 states"):
        uniform_keep([16, 4], 0.9)


def test_adaptive_keep_follows_score_mass():
    peaked = torch.tensor([[100.0, 1, 1, 1, 1, 1, 1, 1]], dtype=torch.float64)  # one state carries the layer
    flat = torch.ones(1, 8, dtype=torch.float64)  # every state matters alike
    keep = adaptive_keep([peaked, flat], 0.5)
    assert sum(keep) == 8  # the global budget: half of 16 states
    assert keep[0] < keep[1] and keep[0] >= 1
    assert adaptive_keep([flat, flat], 0.5) == [4, 4]
    plan = make_plan([peaked, flat], 0.5, "adaptive", "delta")
    assert plan.state_sizes == keep and plan.keep[0].tolist() == [[0] + list(range(1, keep[0]))]
    assert plan.removed_pct == pytest.approx(50.0)


def test_top_states_ties_and_order():
    score = torch.tensor([[0.5, 0.9, 0.5, 0.1], [1.0, 0.0, 2.0, 3.0]], dtype=torch.float64)
    assert top_states(score, 2).tolist() == [[0, 1], [2, 3]]  # ties -> lower index, result ascending


def test_layer_multiples_keep_mamba2_conv_channels_a_multiple_of_8():
    """An adaptive plan over a Mamba-1 and two Mamba-2 layers (1 and 2 groups): the H200 showed a Mamba-2
    layer left with N' = 5 (d_inner + 2 * 5 channels) failing inside mamba_ssm's fused conv."""
    from mambaprof.model.adapters import adapter_for
    from mambaprof.pruning.mixers import MixerView

    def hf_mamba2(groups: int) -> torch.nn.Module:
        from transformers import Mamba2Config
        from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer

        cfg = Mamba2Config(hidden_size=32, state_size=16, num_heads=4, head_dim=16, n_groups=groups,
                           expand=2, num_hidden_layers=1, vocab_size=64, chunk_size=16)
        return Mamba2Mixer(cfg, layer_idx=0)

    def hf_mamba1() -> torch.nn.Module:
        from transformers import MambaConfig
        from transformers.models.mamba.modeling_mamba import MambaMixer

        return MambaMixer(MambaConfig(hidden_size=32, state_size=16, num_hidden_layers=1, vocab_size=64), 0)

    mods = [hf_mamba1(), hf_mamba2(1), hf_mamba2(2)]
    views = [MixerView(i, m, adapter_for(m)) for i, m in enumerate(mods)]
    assert [v.kernel_state_multiple for v in views] == [1, 4, 2]
    gen = torch.Generator().manual_seed(0)
    scores = [torch.rand(v.groups, v.d_state, generator=gen, dtype=torch.float64) ** p
              for v, p in zip(views, (0.1, 9.0, 9.0), strict=True)]
    free = make_plan(scores, 0.6, "adaptive", "delta")
    bound = make_plan(scores, 0.6, "adaptive", "delta", layer_multiples=[v.kernel_state_multiple for v in views])
    assert free.state_sizes[1] % 4 != 0  # without the constraint this plan would break the fused conv
    for n, v in zip(bound.state_sizes, views, strict=True):
        assert n % v.kernel_state_multiple == 0
        d_inner = v.dims.d_inner
        assert v.family == "mamba1" or (d_inner + 2 * v.groups * n) % 8 == 0
    assert [b >= f for b, f in zip(bound.state_sizes, free.state_sizes, strict=True)] == [True] * 3
    assert make_plan(scores, 0.5, "uniform", "delta", 1, [1, 4, 2]).state_sizes == [8, 8, 8]
    with pytest.raises(ValueError, match="2 layer multiples for 3 layers"):
        make_plan(scores, 0.5, "uniform", "delta", 1, [1, 4])
