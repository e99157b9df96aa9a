"""Closed-form FLOPs and minimum bytes per component, from shapes alone.

Conventions: a multiply-add is 2 FLOPs; transcendental functions (exp, silu, softplus, rsqrt)
count 1 FLOP each so the numbers stay comparable across families. "Minimum bytes" reads every
input of the component once and writes every output once (weights included), at the activation
element size; fp32 parameters (A_log, D, dt bias) are counted at 4 bytes. Real kernels move at
least this much; measured DRAM bytes (Nsight Compute) show how much more.

GEMM counts are cross-checked against torch.utils.flop_counter in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mambaprof.model.adapters.dims import MixerDims


@dataclass(frozen=True)
class Count:
    """FLOPs and minimum bytes of one component for one forward."""

    flops: float
    bytes_min: float

    def __add__(self, other: Count) -> Count:
        return Count(self.flops + other.flops, self.bytes_min + other.bytes_min)


def gemm(m: int, k: int, n: int, elem: int) -> Count:
    """(m x k) @ (k x n): 2mkn FLOPs; reads both operands, writes the result."""
    return Count(2.0 * m * k * n, float(elem) * (m * k + k * n + m * n))


def elementwise(n_elems: int, flops_per_elem: float, n_in: int, n_out: int, elem: int) -> Count:
    """An elementwise op over n_elems with n_in input and n_out output tensors of that size."""
    return Count(flops_per_elem * n_elems, float(elem) * n_elems * (n_in + n_out))


def mixer_counts(d: MixerDims, batch: int, seqlen: int, elem: int) -> dict[str, Count]:
    """Per-component counts of one mixer forward over batch x seqlen tokens.

    elem: bytes per activation/weight element (4 fp32, 2 bf16/fp16).
    Returns a dict keyed by component name (Mamba-2 has no ssm_params).
    """
    t = batch * seqlen
    di, n, dm = d.d_inner, d.d_state, d.d_model
    out: dict[str, Count] = {}
    out["in_proj"] = gemm(t, dm, d.in_proj_out, elem)
    ch = d.conv_channels
    # depthwise conv: d_conv MACs per output + bias + silu (~4 FLOPs)
    out["conv1d"] = Count(t * ch * (2.0 * d.d_conv + 5.0),
                          float(elem) * (2 * t * ch + ch * (d.d_conv + 1)))
    if d.family == "mamba1":
        r = d.dt_rank
        out["ssm_params"] = gemm(t, di, r + 2 * n, elem) + gemm(t, r, di, elem)
        # per (token, channel, state): exp(dt*A) [2], dt*B*x [2], h = dA*h + dBx [2], y += C*h [2]
        # per (token, channel): softplus(dt + bias) [3], D skip [2]
        scan_flops = t * di * (8.0 * n + 5.0)
        scan_bytes = elem * (t * di * 2 + t * 2 * n) + 4 * (di * n + 2 * di) + elem * t * di
        out["ssm_scan"] = Count(scan_flops, float(scan_bytes))
        # y * silu(z): silu ~4, multiply 1
        out["gating"] = elementwise(t * di, 5.0, 2, 1, elem)
    else:
        h, p, g, q = d.nheads, d.headdim, d.ngroups, max(d.chunk_size, 1)
        q_eff = min(q, seqlen)
        # SSD (Dao & Gu 2024): intra-chunk C.B^T per group [2*q*N per token per group],
        # mask+decay per head [2*q per token per head], Y_diag = M.X [2*q*P per token per head],
        # chunk states B^T.X [2*N*P per token per head], Y_off = C.states [2*N*P per token per head],
        # state passing [2*N*P per chunk per head], dt softplus/cumsum/decays [~8 per token per head],
        # D skip [2 per element].
        n_chunks = -(-seqlen // q)
        scan_flops = (t * (2.0 * q_eff * n * g + h * (2.0 * q_eff + 2.0 * q_eff * p + 4.0 * n * p + 8.0))
                      + batch * n_chunks * h * 2.0 * n * p + 2.0 * t * di)
        scan_bytes = elem * (t * di + t * h + 2 * t * g * n + t * di) + 4 * 3 * h
        out["ssm_scan"] = Count(scan_flops, float(scan_bytes))
        # gated RMSNorm: y*silu(z) [5], square+sum [2], rsqrt per group, scale [2] -> ~9 per element
        out["gating"] = Count(9.0 * t * di, float(elem * (3 * t * di + di)))
    out["out_proj"] = gemm(t, di, dm, elem)
    return out


def norm_count(d_model: int, batch: int, seqlen: int, elem: int) -> Count:
    """RMSNorm over d_model per token: square, sum, rsqrt, scale, weight (~5 FLOPs per element)."""
    t = batch * seqlen
    return Count(5.0 * t * d_model, float(elem * (2 * t * d_model + d_model)))


def residual_count(d_model: int, batch: int, seqlen: int, elem: int) -> Count:
    """Residual add: one add per element, two reads and one write."""
    return elementwise(batch * seqlen * d_model, 1.0, 2, 1, elem)


def embedding_count(d_model: int, batch: int, seqlen: int, elem: int) -> Count:
    """Embedding gather: no FLOPs; reads one row per token (plus the ids), writes the output."""
    t = batch * seqlen
    return Count(0.0, float(2 * elem * t * d_model + 8 * t))


def lm_head_count(d_model: int, vocab: int, batch: int, seqlen: int, elem: int) -> Count:
    """Output projection to the vocabulary: a GEMM (t x d_model) @ (d_model x vocab)."""
    return gemm(batch * seqlen, d_model, vocab, elem)


@dataclass(frozen=True)
class AttentionDims:
    """Shape of one attention module: query heads, key/value heads, head size, projection weight elements."""

    n_heads: int
    n_kv_heads: int
    head_dim: int
    weight_elems: int

    def kv_cache_elems(self, batch: int, seqlen: int) -> int:
        """Elements of this layer's KV cache after `seqlen` tokens: K and V, batch x seqlen x kv heads x head_dim."""
        return 2 * batch * seqlen * self.n_kv_heads * self.head_dim


def _linear_elems(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))


def attention_dims(module: nn.Module) -> AttentionDims | None:
    """Heads and head size of an attention module, read from its projections (q/k/v or fused qkv) and its
    `head_dim` / `num_heads` attributes or config; None when they cannot be read."""
    cfg = getattr(module, "config", None)
    head_dim = getattr(module, "head_dim", None) or getattr(cfg, "head_dim", None)
    n_heads = (getattr(module, "num_heads", None) or getattr(module, "num_attention_heads", None)
               or getattr(cfg, "num_attention_heads", None))
    q = getattr(module, "q_proj", None)
    k = getattr(module, "k_proj", None)
    if head_dim is None and n_heads and isinstance(q, nn.Linear):
        head_dim = q.out_features // int(n_heads)
    if not head_dim:
        return None
    head_dim = int(head_dim)
    if isinstance(q, nn.Linear) and isinstance(k, nn.Linear):
        h, kv = q.out_features // head_dim, k.out_features // head_dim
    else:
        h = int(n_heads or 0)
        kv = int(getattr(module, "num_key_value_heads", None) or getattr(module, "num_heads_kv", None)
                 or getattr(cfg, "num_key_value_heads", None) or h)
    if h <= 0:
        return None
    return AttentionDims(h, max(kv, 1), head_dim, _linear_elems(module))


def attention_count(d: AttentionDims, d_model: int, batch: int, seqlen: int, elem: int) -> Count:
    """Causal self-attention over batch x seqlen tokens: the projection GEMMs (2 FLOPs per weight element per
    token) plus QK^T and PV over the causal half (2 x seqlen^2 x head_dim FLOPs per head per sequence) and the
    softmax (~5 FLOPs per score kept). Minimum bytes: weights, the input and output, q/k/v and the attention
    output each written once and read once (a fused attention kernel never writes the scores)."""
    t = batch * seqlen
    proj = 2.0 * t * d.weight_elems
    scores = 2.0 * batch * d.n_heads * seqlen * seqlen * d.head_dim
    softmax = 5.0 * batch * d.n_heads * seqlen * (seqlen + 1) / 2.0
    qkv = t * (d.n_heads + 2 * d.n_kv_heads) * d.head_dim
    o = t * d.n_heads * d.head_dim
    return Count(proj + scores + softmax, float(elem) * (d.weight_elems + 2 * t * d_model + 2 * qkv + 2 * o))


def mlp_count(module: nn.Module, d_model: int, batch: int, seqlen: int, elem: int) -> Count:
    """A dense feed-forward: 2 FLOPs per weight element per token (every Linear in it), plus the activation
    (~5 FLOPs per hidden element). Minimum bytes: weights, input and output, the hidden activations once."""
    t = batch * seqlen
    w = _linear_elems(module)
    hidden = sum(m.out_features for m in module.modules() if isinstance(m, nn.Linear)) - d_model
    return Count(2.0 * t * w + 5.0 * t * max(hidden, 0), float(elem) * (w + 2 * t * d_model + t * max(hidden, 0)))


def _first_attr(module: nn.Module, names: tuple[str, ...]) -> int | None:
    for m in module.modules():
        for holder in (m, getattr(m, "config", None)):
            for n in names:
                v = getattr(holder, n, None)
                if isinstance(v, int) and v > 0:
                    return v
    return None


def moe_count(module: nn.Module, d_model: int, batch: int, seqlen: int, elem: int) -> Count | None:
    """A mixture of experts: the router and any shared expert as dense GEMMs, and the routed experts at top_k of
    num_experts of their weights per token (2 FLOPs per active weight element). Minimum bytes read every expert's
    weights once (at long sequences every expert is hit). None when experts or top_k cannot be read."""
    experts = getattr(module, "experts", None)
    n_exp = _first_attr(module, ("num_experts", "n_routed_experts", "num_local_experts"))
    top_k = _first_attr(module, ("top_k", "num_experts_per_tok"))
    if not isinstance(experts, nn.Module) or not n_exp or not top_k:
        return None
    t = batch * seqlen
    expert_w = sum(p.numel() for p in experts.parameters())
    other_w = sum(p.numel() for p in module.parameters()) - expert_w
    flops = 2.0 * t * other_w + 2.0 * t * expert_w * min(top_k, n_exp) / n_exp
    return Count(flops, float(elem) * (expert_w + other_w + 2 * t * d_model * (1 + top_k)))


@dataclass(frozen=True)
class DecodeCount:
    """Closed-form traffic of one component in one decode step (one token per sequence).

    weight_bytes: parameters read once per step; state_bytes: decode cache read and written (conv state,
    SSM state; a KV cache for attention); bytes_min: everything, activations included.
    """

    flops: float
    bytes_min: float
    weight_bytes: float
    state_bytes: float

    def __add__(self, other: DecodeCount) -> DecodeCount:
        return DecodeCount(self.flops + other.flops, self.bytes_min + other.bytes_min,
                           self.weight_bytes + other.weight_bytes, self.state_bytes + other.state_bytes)

    def scaled(self, k: float) -> DecodeCount:
        """This count k times (a component that runs k times per layer, e.g. two norms)."""
        return DecodeCount(k * self.flops, k * self.bytes_min, k * self.weight_bytes, k * self.state_bytes)


def _dc(count: Count, weight_bytes: float, state_bytes: float = 0.0) -> DecodeCount:
    return DecodeCount(count.flops, count.bytes_min + state_bytes, weight_bytes, state_bytes)


def decode_cache_bytes(d: MixerDims, batch: int, state_elem: int, conv_elem: int | None = None) -> dict[str, float]:
    """Bytes one layer's decode cache holds: `conv1d` (batch x conv channels x d_conv) and `ssm_scan` (the SSM
    state, batch x d_inner x d_state for Mamba-1, batch x nheads x headdim x d_state for Mamba-2); state_elem:
    bytes per SSM state element, conv_elem: per conv state element (default state_elem)."""
    ce = state_elem if conv_elem is None else conv_elem
    return {"conv1d": float(ce * d.conv_state_elems(batch)),
            "ssm_scan": float(state_elem * d.recurrent_state_elems(batch))}


def mixer_decode_counts(d: MixerDims, batch: int, elem: int, state_elem: int | None = None,
                        conv_elem: int | None = None) -> dict[str, DecodeCount]:
    """Per-component closed forms of one mixer's decode step for `batch` sequences.

    The step is the prefill count at seqlen 1 (weights read once, activations of one token per sequence)
    plus the decode cache: the conv state read and written by conv1d, the SSM state read and written by
    ssm_scan (each 2 x its size; state_elem / conv_elem: bytes per SSM / conv state element, default elem).
    """
    se = elem if state_elem is None else state_elem
    base = mixer_counts(d, batch, 1, elem)
    cache = decode_cache_bytes(d, batch, se, elem if conv_elem is None else conv_elem)
    ch = d.conv_channels
    weights = {
        "in_proj": elem * d.d_model * d.in_proj_out,
        "conv1d": elem * ch * (d.d_conv + 1),
        "out_proj": elem * d.d_inner * d.d_model,
        "gating": elem * d.d_inner if d.family == "mamba2" else 0,
    }
    if d.family == "mamba1":
        r, n = d.dt_rank, d.d_state
        weights["ssm_params"] = elem * (d.d_inner * (r + 2 * n) + r * d.d_inner)
        weights["ssm_scan"] = 4 * (d.d_inner * n + 2 * d.d_inner)
        # the recurrent update touches every state element once more: h = dA*h + dBx, y += C*h
        scan = Count(batch * d.d_inner * (8.0 * n + 5.0), base["ssm_scan"].bytes_min)
    else:
        weights["ssm_scan"] = 4 * 3 * d.nheads
        scan = Count(batch * d.nheads * d.headdim * (6.0 * d.d_state + 4.0), base["ssm_scan"].bytes_min)
    out: dict[str, DecodeCount] = {}
    for comp, count in base.items():
        if comp == "ssm_scan":
            out[comp] = _dc(scan, weights[comp], 2.0 * cache["ssm_scan"])
        elif comp == "conv1d":
            out[comp] = _dc(count, weights[comp], 2.0 * cache["conv1d"])
        else:
            out[comp] = _dc(count, weights.get(comp, 0))
    return out


def decode_model_counts(d_model: int, vocab: int | None, batch: int, elem: int) -> dict[str, DecodeCount]:
    """Closed forms of the step's parts outside the mixers, per layer (`norm`, `residual`) and per model
    (`embedding`, `lm_head`, final `norm` under the key `final_norm`)."""
    out = {"norm": _dc(norm_count(d_model, batch, 1, elem), elem * d_model),
           "residual": _dc(residual_count(d_model, batch, 1, elem), 0),
           "embedding": _dc(embedding_count(d_model, batch, 1, elem), elem * batch * d_model),
           "final_norm": _dc(norm_count(d_model, batch, 1, elem), elem * d_model)}
    if vocab:
        out["lm_head"] = _dc(lm_head_count(d_model, vocab, batch, 1, elem), elem * d_model * vocab)
    return out


def kv_cache_bytes(d: AttentionDims, batch: int, context: int, elem: int) -> float:
    """Bytes one attention layer's KV cache holds after `context` tokens: K and V, batch x context x kv heads x
    head_dim elements each (2 x kv_heads x head_dim x context x elem per sequence)."""
    return float(elem * d.kv_cache_elems(batch, context))


def attention_decode_count(d: AttentionDims, d_model: int, batch: int, context: int, elem: int) -> DecodeCount:
    """One attention layer's decode step for `batch` sequences with `context` tokens already cached.

    FLOPs: the projections (2 per weight element per token), q.K^T and P.V over context + 1 keys (2 x 2 x heads x
    head_dim per key per sequence) and the softmax (~5 per score). Cache traffic (state_bytes): the whole KV cache
    read and this token's K and V written, 2 x kv_heads x head_dim x (context + 1) x elem per sequence; it grows
    linearly with the context, where the SSM state's does not. Minimum bytes add the weights and the activations
    (input and output, q/k/v and the attention output once each)."""
    keys = context + 1
    flops = (2.0 * batch * d.weight_elems + 4.0 * batch * d.n_heads * d.head_dim * keys
             + 5.0 * batch * d.n_heads * keys)
    state = kv_cache_bytes(d, batch, keys, elem)
    acts = elem * batch * (2 * d_model + (2 * d.n_heads + 2 * d.n_kv_heads) * d.head_dim)
    weights = float(elem * d.weight_elems)
    return DecodeCount(flops, weights + state + acts, weights, state)


def mlp_decode_count(module: nn.Module, d_model: int, batch: int, elem: int) -> DecodeCount:
    """A dense feed-forward's decode step: the prefill count at one token per sequence, its weights read once."""
    return _dc(mlp_count(module, d_model, batch, 1, elem), float(elem * _linear_elems(module)))


def moe_decode_count(module: nn.Module, d_model: int, batch: int, elem: int) -> DecodeCount | None:
    """A mixture of experts' decode step: router and shared experts as dense weights, the routed experts at top_k of
    num_experts per token (FLOPs); weight bytes read cover min(num_experts, batch x top_k) distinct experts, the
    most a step can touch. None when experts or top_k cannot be read."""
    experts = getattr(module, "experts", None)
    n_exp = _first_attr(module, ("num_experts", "n_routed_experts", "num_local_experts"))
    top_k = _first_attr(module, ("top_k", "num_experts_per_tok"))
    if not isinstance(experts, nn.Module) or not n_exp or not top_k:
        return None
    expert_w = sum(p.numel() for p in experts.parameters())
    other_w = sum(p.numel() for p in module.parameters()) - expert_w
    k = min(top_k, n_exp)
    flops = 2.0 * batch * (other_w + expert_w * k / n_exp)
    weights = float(elem) * (other_w + expert_w * min(n_exp, batch * k) / n_exp)
    return DecodeCount(flops, weights + float(elem * batch * d_model * (2 + 2 * k)), weights, 0.0)
