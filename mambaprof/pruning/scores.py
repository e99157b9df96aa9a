"""Per-state importance scores: which state indices n of a layer matter least.

Every score is a (G, N) tensor per layer (G = 1 for Mamba-1): higher means keep. Calibration-based
scores are means over calibration tokens (and channels) of non-negative quantities; their unit is
the product of the activations involved, comparable within a layer, not across models.

- `delta` (PerfMamba's Δ-guided activity): mean over tokens t and channels d of
  Δ_td · |B_tn · x_td| · |C_tn|: how strongly state n is written and read.
- `energy`: mean over tokens and channels of |C_tn · h_tdn| from an exact sequential scan: the
  size of state n's term in the output y_td = Σ_n C_tn h_tdn.
- `magnitude` (weights only): ||W_B,n|| · ||W_C,n||, the L2 norms of the projection rows (times the
  conv taps for Mamba-2) producing B_n and C_n.
- `random` (control): uniform random numbers from a fixed seed.
"""

from __future__ import annotations

import torch

from mambaprof.pruning.mixers import MixerView, SSMInputs

SCORES = ("delta", "energy", "magnitude", "random")
CALIBRATED = ("delta", "energy")

#: time steps whose decays are expanded at once in the exact scan (memory vs kernel launches)
SCAN_CHUNK = 64


def _group_mean_heads(values: torch.Tensor, groups: int) -> torch.Tensor:
    """(b, l, H) -> (b, l, G): mean over the heads of each group."""
    b, seqlen, heads = values.shape
    return values.reshape(b, seqlen, groups, heads // groups).mean(dim=-1)


def delta_activity_sum(inp: SSMInputs) -> tuple[torch.Tensor, int]:
    """Sum over tokens of the channel-mean of Δ·|B_n x|·|C_n|, as (G, N) float64, and the token count.

    Mamba-1: channels are d_inner; Mamba-2: the heads of a group and their head dims (Δ is per head).
    """
    if inp.family == "mamba1":
        weight = (inp.delta * inp.x.abs()).mean(dim=-1).unsqueeze(-1)  # (b, l, 1)
    else:
        per_head = inp.delta * inp.x.abs().mean(dim=-1)  # (b, l, H)
        weight = _group_mean_heads(per_head, inp.B.shape[2])  # (b, l, G)
    total = (weight.unsqueeze(-1) * inp.B.abs() * inp.C.abs()).sum(dim=(0, 1))
    return total.double(), inp.delta.shape[0] * inp.delta.shape[1]


def exact_scan(inp: SSMInputs, want_output: bool = False) -> tuple[torch.Tensor, int, torch.Tensor | None]:
    """Run the selective scan exactly (sequentially, fp32) and measure each state's output term.

    Returns (sum over tokens and channels of |C_tn h_tdn| as (G, N) float64, the number of
    (token, channel) terms per group, and y = Σ_n C_tn h_tdn as (b, l, d_inner) when asked).
    """
    b, seqlen = inp.delta.shape[:2]
    groups, n = inp.B.shape[2], inp.B.shape[3]
    ys = [] if want_output else None
    if inp.family == "mamba1":
        d_inner = inp.x.shape[-1]
        h = inp.x.new_zeros(b, d_inner, n)
        total = inp.x.new_zeros(n, dtype=torch.float64)
        bb, cc = inp.B[:, :, 0], inp.C[:, :, 0]
        for t0 in range(0, seqlen, SCAN_CHUNK):
            t1 = min(seqlen, t0 + SCAN_CHUNK)
            decay = torch.exp(inp.delta[:, t0:t1, :, None] * inp.A)  # (b, c, d, n)
            write = (inp.delta[:, t0:t1] * inp.x[:, t0:t1])[..., None] * bb[:, t0:t1, None, :]
            for i in range(t1 - t0):
                h = decay[:, i] * h + write[:, i]
                term = cc[:, t0 + i, None, :] * h  # (b, d, n)
                total += term.abs().sum(dim=(0, 1)).double()
                if ys is not None:
                    ys.append(term.sum(dim=-1))
        y = torch.stack(ys, dim=1) if ys is not None else None
        return total.unsqueeze(0), b * seqlen * d_inner, y
    heads, hdim = inp.x.shape[2], inp.x.shape[3]
    per_group = heads // groups
    group_of_head = torch.arange(heads, device=inp.x.device) // per_group
    h = inp.x.new_zeros(b, heads, hdim, n)
    total = inp.x.new_zeros(groups, n, dtype=torch.float64)
    bh, ch = inp.B[:, :, group_of_head], inp.C[:, :, group_of_head]  # (b, l, H, N)
    for t0 in range(0, seqlen, SCAN_CHUNK):
        t1 = min(seqlen, t0 + SCAN_CHUNK)
        decay = torch.exp(inp.delta[:, t0:t1] * inp.A)  # (b, c, H)
        for i in range(t1 - t0):
            t = t0 + i
            dx = (inp.delta[:, t, :, None] * inp.x[:, t])  # (b, H, P)
            h = decay[:, i, :, None, None] * h + dx[..., None] * bh[:, t, :, None, :]
            term = ch[:, t, :, None, :] * h  # (b, H, P, N)
            per_head = term.abs().sum(dim=(0, 2))  # (H, N)
            total += per_head.reshape(groups, per_group, n).sum(dim=1).double()
            if ys is not None:
                ys.append(term.sum(dim=-1).reshape(b, heads * hdim))
    y = torch.stack(ys, dim=1) if ys is not None else None
    return total, b * seqlen * per_group * hdim, y


def magnitude_score(view: MixerView) -> torch.Tensor:
    """Weights-only score (G, N): product of the L2 norms of the weights producing B_n and C_n."""
    n, groups = view.d_state, view.groups
    w = view.proj.weight.detach().float()
    b0, c0 = view.bc_offsets()
    b_norm = w[b0:b0 + groups * n].norm(dim=1)
    c_norm = w[c0:c0 + groups * n].norm(dim=1)
    if view.family == "mamba2":
        conv = view.module.conv1d.weight.detach().float().flatten(1)
        cb0, cc0 = view.conv_bc_offsets()
        b_norm = b_norm * conv[cb0:cb0 + groups * n].norm(dim=1)
        c_norm = c_norm * conv[cc0:cc0 + groups * n].norm(dim=1)
    return (b_norm * c_norm).reshape(groups, n).double().cpu()


def random_score(view: MixerView, seed: int) -> torch.Tensor:
    """Control score (G, N): uniform random numbers from a generator seeded by (seed, layer)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + view.layer)
    return torch.rand((view.groups, view.d_state), generator=gen, dtype=torch.float64)


class ScoreAccumulator:
    """Running sums of the calibration-based scores for one layer (means on demand)."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, inp: SSMInputs) -> None:
        """Fold one batch of SSM inputs into the sums."""
        for name in self.names:
            if name == "delta":
                total, count = delta_activity_sum(inp)
            elif name == "energy":
                total, count, _ = exact_scan(inp)
            else:
                raise ValueError(f"{name!r} is not a calibration-based score")
            total = total.cpu()
            self.sums[name] = self.sums[name] + total if name in self.sums else total
            self.counts[name] = self.counts.get(name, 0) + count

    def mean(self, name: str) -> torch.Tensor:
        """Mean score (G, N) float64 over everything added."""
        if name not in self.sums:
            raise ValueError(f"no calibration data was collected for score {name!r}")
        return self.sums[name] / max(self.counts[name], 1)
