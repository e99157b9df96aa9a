"""Decode paths: a model's own single-token step with its cache, and the same step split into components.

A `DecodeStep` holds the decode cache of one batch (conv and SSM states; KV caches for families that have
attention), fills it from a prompt (`prefill`), and runs one generated token per sequence two ways:

- `own_step(ids)`: the model's own cached forward (transformers: `model(ids, cache=...)`; mamba_ssm:
  `model(ids, inference_params=...)` with `seqlen_offset > 0`, which runs `Mamba.step` / `Mamba2.step`);
- `split_step(ids)`: the same arithmetic through the same kernel functions, as a list of `Segment`s, one per
  (layer, component), that read and write a shared context of tensors and update the cache in place.

The segments only ever touch tensors (no Python state changes between calls), so each can be captured as its
own CUDA graph and the whole list as one graph. A family plugs in by subclassing `DecodeStep` and giving
per-layer segment builders. Hybrids (`HFHybridDecodeStep`: Bamba, Nemotron-H, Granite-4.0-H, Jamba, Falcon-H1,
Zamba2; mamba_ssm MambaLMHeadModel with `MHA` layers) add one `attention` segment per attention layer: the layer's
own attention module called with the model's own cache, which appends this token's keys and values; that KV cache
is listed in `state_tensors()` under (layer, `attention`). A hybrid family plugs in as data: a `HybridLayout` says in
which order a decoder layer calls its norms and sub-modules, with which multipliers; what each sub-module is
(Mamba mixer, attention, mlp, moe) comes from the model's structure (LayerSite). Zamba2's hybrid layers, which call
a shared transformer block on the concatenated embeddings before their Mamba layer (not a pre-norm residual step),
are a small subclass (`Zamba2DecodeStep`).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mambaprof.errors import UnsupportedModelError
from mambaprof.model.adapters.hf import kernel_fn, uses_reference
from mambaprof.model.adapters.recipes import MixerRecipe
from mambaprof.model.structure import LayerSite, ModelStructure
from mambaprof.taxonomy import MODEL_LAYER

#: context key -> tensor, shared by the segments of one step
Context = dict[str, Any]


@dataclass
class Segment:
    """One component of one layer of a decode step: `run()` reads and writes the step's context."""

    layer: int
    component: str
    run: Callable[[], None]


class DecodeStep(ABC):
    """The decode cache of one batch and the single-token step, the model's own and component-split."""

    #: `mamba1`, `mamba2`, `mixed`
    family: str = ""
    #: what runs the model's own step, for the run record
    backend: str = ""

    def __init__(self, model: nn.Module, structure: ModelStructure, batch: int, max_seqlen: int) -> None:
        self.model = model
        self.structure = structure
        self.batch = batch
        self.max_seqlen = max_seqlen
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        #: the static input of the split step: (batch, 1) token ids
        self.token = torch.zeros(batch, 1, dtype=torch.long, device=self.device)
        self.ctx: Context = {}
        self._segments: list[Segment] | None = None

    @abstractmethod
    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        """Run the prompt (batch x prompt_len ids) through the model's own forward, filling the cache; return
        the last position's logits (batch x vocab)."""

    @abstractmethod
    def own_step(self, ids: torch.Tensor) -> torch.Tensor:
        """The model's own single-token step: (batch, 1) ids -> (batch, vocab) logits; updates the cache."""

    @abstractmethod
    def build_segments(self) -> list[Segment]:
        """The component-split step (called after `prefill`, once the cache exists)."""

    @abstractmethod
    def state_tensors(self) -> dict[tuple[int, str], list[torch.Tensor]]:
        """The cache, per (layer, component that reads and writes it): conv state -> conv1d, SSM state ->
        ssm_scan (KV cache -> attention in hybrids)."""

    def fused_components(self) -> dict[str, str]:
        """Components the split step cannot separate on this kernel path -> where their time is."""
        return {}

    def graph_capturable(self) -> str | None:
        """None when the split step can be captured as CUDA graphs, else why not (one line)."""
        return None

    def own_graph(self, prompt_len: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The model's own CUDA-graph decode step ((batch, 1) ids -> logits), or None where it has none."""
        return None

    @abstractmethod
    def generate(self, ids: torch.Tensor, new_tokens: int, cuda_graphs: bool) -> torch.Tensor:
        """The model's own greedy generate from `ids`: the (batch, new_tokens) tokens it produced."""

    def segments(self) -> list[Segment]:
        """The split step's segments, in execution order (built once)."""
        if self._segments is None:
            self._segments = self.build_segments()
        return self._segments

    def split_step(self, ids: torch.Tensor | None = None) -> torch.Tensor:
        """One component-split step; `ids` (batch, 1) is copied into the static token buffer first (None: use
        what is there). Returns the logits tensor of the context (batch x vocab)."""
        if ids is not None:
            self.token.copy_(ids)
        for segment in self.segments():
            segment.run()
        return self.ctx["logits"]

    def snapshot(self) -> list[torch.Tensor]:
        """Copies of every cache tensor (to run two steps from the same state)."""
        return [t.clone() for ts in self.state_tensors().values() for t in ts]

    def restore(self, snap: list[torch.Tensor]) -> None:
        """Put a snapshot back, in place (the tensors captured graphs read stay the same)."""
        live = [t for ts in self.state_tensors().values() for t in ts]
        for t, s in zip(live, snap, strict=True):
            t.copy_(s)

    def release(self) -> None:
        """Drop what this step keeps beyond its own cache (e.g. graphs the model's generate cached)."""
        self.ctx.clear()
        self._segments = None

    def cache_bytes(self) -> dict[tuple[int, str], int]:
        """Bytes the decode cache holds, per (layer, component), from the live tensors."""
        return {k: sum(t.numel() * t.element_size() for t in ts) for k, ts in self.state_tensors().items()}

    def state_element_bytes(self) -> dict[str, int]:
        """Bytes per element of the decode cache as the model keeps it, per component (`conv1d`, `ssm_scan`,
        `attention`), from the live tensors: a model may keep a state in another dtype than its weights (transformers
        keeps the scan's float32 final SSM state of a bf16 model)."""
        out: dict[str, int] = {}
        for (_, comp), ts in self.state_tensors().items():
            for t in ts:
                out.setdefault(comp, t.element_size())
        return out


def _module_fn(module: nn.Module, name: str) -> Callable[..., Any]:
    """`name` from the Python module that defines the class of `module` (the kernel or its fallback)."""
    fn = kernel_fn(module, name)
    if fn is None:
        raise UnsupportedModelError(f"{type(module).__module__} has no {name}: no decode split for this version")
    return fn


#: what transformers calls the cache argument: `cache` (5.18+), `past_key_values` (models with attention before
#: 5.18), `cache_params` (Mamba models and mixers before 5.18)
CACHE_NAMES = ("cache", "past_key_values", "cache_params")


def cache_kwarg(fn: Callable[..., Any]) -> str:
    """The name under which `fn` (a transformers forward) takes the cache, from its signature."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return "cache"
    return next((n for n in CACHE_NAMES if n in params), "cache")


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def returned_cache(out: Any) -> Any:
    """The cache a transformers forward returned (under `cache`, `past_key_values` or `cache_params`), or None."""
    for name in CACHE_NAMES:
        cache = getattr(out, name, None)
        if cache is not None:
            return cache
    return None


def linear_states(cache: Any, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(conv state, SSM state) of layer `idx` in a transformers cache: the layer objects' `conv_states` /
    `recurrent_states` (5.x), else `get_conv_state` / `get_recurrent_state`, else the older per-cache lists."""
    layers = getattr(cache, "layers", None)
    if layers is not None and idx < len(layers) and hasattr(layers[idx], "conv_states"):
        conv, rec = layers[idx].conv_states[0], layers[idx].recurrent_states[0]
    elif hasattr(cache, "get_conv_state"):
        conv, rec = cache.get_conv_state(idx, state_idx=0), cache.get_recurrent_state(idx, state_idx=0)
    else:
        conv, rec = cache.conv_states[idx], cache.ssm_states[idx]
    if conv is None or rec is None:
        raise UnsupportedModelError(f"the model's cache holds no conv/SSM state for layer {idx} after the prompt")
    return conv, rec


class HFDecodeStep(DecodeStep):
    """transformers MambaForCausalLM / Mamba2ForCausalLM / FalconMambaForCausalLM with their DynamicCache."""

    backend = "transformers"

    def __init__(self, model: nn.Module, structure: ModelStructure, batch: int, max_seqlen: int) -> None:
        super().__init__(model, structure, batch, max_seqlen)
        self.family = structure.family
        self.cache: Any = None
        self.cache_name = cache_kwarg(model.forward)
        self.backbone = getattr(model, "backbone", None)

    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.model(ids, use_cache=True)
        self.cache = returned_cache(out)
        if self.cache is None:
            raise UnsupportedModelError(f"{type(self.model).__name__} returned no cache from use_cache=True")
        self._segments = None
        return out.logits[:, -1]

    def own_step(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids, use_cache=True, **{self.cache_name: self.cache}).logits[:, -1]

    def generate(self, ids: torch.Tensor, new_tokens: int, cuda_graphs: bool) -> torch.Tensor:
        from transformers import GenerationConfig

        config = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                  use_cache=True, pad_token_id=0, eos_token_id=None, bos_token_id=None)
        out = self.model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
        return out[:, ids.shape[1]:]

    def _mixer_states(self, site_layer: int, mixer: nn.Module) -> dict[tuple[int, str], list[torch.Tensor]]:
        conv, rec = linear_states(self.cache, int(mixer.layer_idx))
        return {(site_layer, "conv1d"): [conv], (site_layer, "ssm_scan"): [rec]}

    def state_tensors(self) -> dict[tuple[int, str], list[torch.Tensor]]:
        out: dict[tuple[int, str], list[torch.Tensor]] = {}
        for site in self.structure.mixers:
            out.update(self._mixer_states(site.layer, site.module))
        return out

    def _reference_scan(self, mixer: nn.Module) -> bool:
        return uses_reference(_module_fn(mixer, "mamba_selective_state_update" if mixer_family(mixer, self.structure)
                                         == "mamba1" else "mamba2_selective_state_update"))

    def fused_components(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for site in self.structure.mixers:
            if self._reference_scan(site.module):
                continue
            recipe = _recipe(site.adapter)
            if site.dims.family == "mamba1":
                out["gating"] = "fused into ssm_scan (y*silu(z) runs inside the selective_state_update kernel)"
            elif recipe is not None and recipe.gated_norm_flag and not getattr(site.module, recipe.gated_norm_flag):
                out["gating"] = "fused into ssm_scan (y*silu(z) runs inside the selective_state_update kernel)"
        return out

    def build_segments(self) -> list[Segment]:
        c = self.ctx
        bb = self.backbone
        segs = [Segment(MODEL_LAYER, "embedding", lambda: c.__setitem__("h", bb.embeddings(self.token)))]
        for site in self.structure.mixers:
            segs += self._block_segments(site.layer, site.block, site.module)
        segs.append(Segment(MODEL_LAYER, "norm", lambda: c.__setitem__("h", bb.norm_f(c["h"]))))
        head = self.model.lm_head
        # the model casts the (fp32 under residual_in_fp32) hidden state to the head's dtype first
        segs.append(Segment(MODEL_LAYER, "lm_head",
                            lambda: c.__setitem__("logits", head(c["h"].to(head.weight.dtype))[:, -1])))
        return segs

    def _block_segments(self, layer: int, block: nn.Module, m: nn.Module) -> list[Segment]:
        c = self.ctx
        r32 = bool(getattr(block, "residual_in_fp32", False))

        def norm() -> None:
            c["res"] = c["h"]
            c["h"] = block.norm(c["h"].to(dtype=block.norm.weight.dtype))

        def residual() -> None:
            res = c["res"].to(torch.float32) if r32 else c["res"]
            c["h"] = res + c["h"]

        return [Segment(layer, "norm", norm), *self.mixer_segments(layer, m),
                Segment(layer, "residual", residual)]

    def mixer_segments(self, layer: int, m: nn.Module) -> list[Segment]:
        """The mixer's components for one token: read the context's `h`, write the mixer output to `h`, update
        the layer's conv and SSM state in the cache (the family's recipe applied: dt/B/C norms, multipliers)."""
        site = next(s for s in self.structure.mixers if s.module is m)
        conv_state, rec_state = linear_states(self.cache, int(m.layer_idx))
        conv_update = _module_fn(m, "causal_conv1d_update")
        recipe = _recipe(site.adapter)
        if site.dims.family == "mamba1":
            return self._mamba1(layer, m, conv_state, rec_state, conv_update, recipe)
        return self._mamba2(layer, m, conv_state, rec_state, conv_update, recipe)

    def _mamba1(self, layer: int, m: nn.Module, conv_state: torch.Tensor, rec_state: torch.Tensor,
                conv_update: Callable[..., Any], recipe: MixerRecipe | None = None) -> list[Segment]:
        c = self.ctx
        scan = _module_fn(m, "mamba_selective_state_update")
        split_gating = uses_reference(scan)
        norms = [getattr(m, n) for n in recipe.bcdt_norms] if recipe is not None else []

        def in_proj() -> None:
            c["dtype"] = c["h"].dtype
            xbc, gate = m.in_proj(c["h"]).transpose(1, 2).chunk(2, dim=1)
            c["xbc"], c["gate"] = xbc, gate

        def conv1d() -> None:
            c["xbc"] = conv_update(c["xbc"], conv_state, m.conv1d.weight.squeeze(1), m.conv1d.bias,
                                   activation=m.activation).transpose(1, 2)

        def ssm_params() -> None:
            ts, b, cc = torch.split(m.x_proj(c["xbc"]), [m.time_step_rank, m.ssm_state_size, m.ssm_state_size],
                                    dim=-1)
            if norms:
                ts, b, cc = norms[0](ts), norms[1](b), norms[2](cc)
            c["dt"], c["B"], c["C"] = m.dt_proj.weight @ ts.transpose(1, 2), b, cc

        def ssm_scan() -> None:
            a = -torch.exp(m.A_log.float())
            bias = m.dt_proj.bias.float() if m.dt_proj.bias is not None else None
            c["y"] = scan(rec_state, c["xbc"].transpose(1, 2)[..., 0], c["dt"][..., 0], a, c["B"][:, 0],
                          c["C"][:, 0], m.D, z=None if split_gating else c["gate"][..., 0], dt_bias=bias,
                          dt_softplus=True).unsqueeze(-1)

        def gating() -> None:
            c["y"] = c["y"] * F.silu(c["gate"])

        def out_proj() -> None:
            c["h"] = m.out_proj(c["y"].transpose(1, 2).to(c["dtype"]))

        segs = [Segment(layer, "in_proj", in_proj), Segment(layer, "conv1d", conv1d),
                Segment(layer, "ssm_params", ssm_params), Segment(layer, "ssm_scan", ssm_scan)]
        if split_gating:
            segs.append(Segment(layer, "gating", gating))
        return segs + [Segment(layer, "out_proj", out_proj)]

    def _mamba2(self, layer: int, m: nn.Module, conv_state: torch.Tensor, rec_state: torch.Tensor,
                conv_update: Callable[..., Any], recipe: MixerRecipe | None = None) -> list[Segment]:
        c = self.ctx
        scan = _module_fn(m, "mamba2_selective_state_update")
        batch = self.batch
        di, n, g, heads, p = m.intermediate_size, m.ssm_state_size, m.n_groups, m.num_heads, m.head_dim
        in_mult = getattr(m, recipe.in_multiplier) if recipe is not None and recipe.in_multiplier else None
        proj_mult = getattr(m, recipe.proj_multiplier) if recipe is not None and recipe.proj_multiplier else None
        plain_gating = recipe is not None and recipe.gated_norm_flag is not None and not getattr(
            m, recipe.gated_norm_flag)
        # y*silu(z) without the norm: a separate op where the scan is the reference, inside the kernel otherwise
        gate_in_scan = plain_gating and not uses_reference(scan)

        def in_proj() -> None:
            c["dtype"] = c["h"].dtype
            x = c["h"] * in_mult if in_mult is not None else c["h"]
            projected = m.in_proj(x)
            if proj_mult is not None:
                projected = projected * proj_mult
            c["gate"], c["xbc"], c["dt"] = projected.split([di, m.conv_dim, heads], dim=-1)

        def conv1d() -> None:
            xbc = conv_update(c["xbc"].transpose(1, 2), conv_state, m.conv1d.weight.squeeze(1), m.conv1d.bias,
                              activation=m.activation).transpose(1, 2)
            c["x"], c["B"], c["C"] = torch.split(xbc, [di, g * n, g * n], dim=-1)

        def ssm_scan() -> None:
            a = (-torch.exp(m.A_log.float()))[:, None, None].expand(-1, p, n)
            y = scan(rec_state, c["x"].view(batch, heads, p), c["dt"].transpose(1, 2).expand(-1, -1, p), a,
                     c["B"].view(batch, g, n), c["C"].view(batch, g, n), m.D[:, None].expand(-1, p),
                     z=c["gate"].view(batch, heads, p) if gate_in_scan else None,
                     dt_bias=m.dt_bias[:, None].expand(-1, p), dt_softplus=True)
            c["y"] = y.view(batch, 1, -1)

        def gating() -> None:
            c["y"] = c["y"] * F.silu(c["gate"]) if plain_gating else m.norm(c["y"], c["gate"])

        def out_proj() -> None:
            c["h"] = m.out_proj(c["y"].to(c["dtype"]))

        segs = [Segment(layer, "in_proj", in_proj), Segment(layer, "conv1d", conv1d),
                Segment(layer, "ssm_scan", ssm_scan)]
        if not gate_in_scan:
            segs.append(Segment(layer, "gating", gating))
        return segs + [Segment(layer, "out_proj", out_proj)]


def _recipe(adapter: Any) -> MixerRecipe | None:
    recipe = getattr(adapter, "recipe", None)
    return recipe if isinstance(recipe, MixerRecipe) else None


def mixer_family(mixer: nn.Module, structure: ModelStructure) -> str:
    """`mamba1` / `mamba2` of a recognised mixer of `structure`."""
    return next(s.dims.family for s in structure.mixers if s.module is mixer)


@dataclass(frozen=True)
class Branch:
    """A sub-module a decoder layer calls on a stage's normed input: its attribute on the layer, and the layer's
    attributes (or None) that multiply its input and its output (muP)."""

    attr: str
    in_multiplier: str | None = None
    out_multiplier: str | None = None


@dataclass(frozen=True)
class Stage:
    """One pre-norm residual step of a decoder layer: res = h; x = norm(h); h = res + sum(branches(x)) [x mult]."""

    norm: str
    branches: tuple[Branch, ...]


@dataclass(frozen=True)
class HybridLayout:
    """How a transformers hybrid runs one token, as data (the sub-modules' kinds come from the structure).

    backbone / embed / final_norm / rotary: attribute names (backbone on the ForCausalLM, the rest on it).
    stages: a decoder layer's pre-norm steps in call order; absent or None branches are skipped (a Bamba layer
        has `mamba` or `self_attn`, not both).
    residual_multiplier: layer attribute scaling each stage's output before the residual add (Granite).
    embedding_multiplier / logits_multiplier: backbone attributes; logits_divisor: config attribute.
    norm_cast: the layer casts its input to the norm's weight dtype first (Nemotron-H).
    """

    name: str
    stages: tuple[Stage, ...]
    embed: str = "embed_tokens"
    final_norm: str = "final_layernorm"
    backbone: str = "model"
    rotary: str = "rotary_emb"
    residual_multiplier: str | None = None
    embedding_multiplier: str | None = None
    logits_multiplier: str | None = None
    logits_divisor: str | None = None
    norm_cast: bool = False


_MIXER_OR_ATTN = (Branch("mamba"), Branch("self_attn"))
_PRE_FF = Stage("pre_ff_layernorm", (Branch("feed_forward"),))

#: ForCausalLM class name -> its layout (transformers 5.x; the same in 5.17 and 5.24)
HYBRID_LAYOUTS: dict[str, HybridLayout] = {
    "BambaForCausalLM": HybridLayout("bamba", (Stage("input_layernorm", _MIXER_OR_ATTN), _PRE_FF)),
    "JambaForCausalLM": HybridLayout("jamba", (Stage("input_layernorm", _MIXER_OR_ATTN), _PRE_FF)),
    "NemotronHForCausalLM": HybridLayout("nemotron_h", (Stage("norm", (Branch("mixer"),)),), embed="embeddings",
                                         final_norm="norm_f", norm_cast=True),
    "GraniteMoeHybridForCausalLM": HybridLayout(
        "granitemoehybrid", (Stage("input_layernorm", _MIXER_OR_ATTN),
                             Stage("post_attention_layernorm", (Branch("block_sparse_moe"), Branch("shared_mlp")))),
        final_norm="norm", residual_multiplier="residual_multiplier", embedding_multiplier="embedding_multiplier",
        logits_divisor="logits_scaling"),
    "FalconH1ForCausalLM": HybridLayout(
        "falcon_h1", (Stage("input_layernorm", (Branch("mamba", out_multiplier="ssm_out_multiplier"),
                                                Branch("self_attn", "attention_in_multiplier", "attn_out_multiplier"))),
                      _PRE_FF),
        embedding_multiplier="embedding_multiplier", logits_multiplier="lm_head_multiplier"),
    # its Mamba layers; its hybrid layers (the shared transformer block, then a Mamba layer) are Zamba2DecodeStep's
    "Zamba2ForCausalLM": HybridLayout("zamba2", (Stage("input_layernorm", (Branch("mamba"),)),)),
}


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


class HFHybridDecodeStep(HFDecodeStep):
    """transformers hybrids (Mamba mixers with attention, MLP and MoE layers) with the model's own DynamicCache.

    The prompt runs through the model's own forward (`use_cache=True`), which returns its cache: conv and SSM
    states per Mamba layer, a growing KV cache per attention layer. The split step runs, per layer, the layout's
    stages: `norm`, then each sub-module by its kind in the structure (the Mamba mixer's components as in
    HFDecodeStep, `attention` = the layer's own attention module called with the cache, which appends this token's
    K/V, `mlp`, `moe`), then `residual`. Positions: the step keeps its own position tensor (batch x 1), passed to
    the model's own step as position_ids and, in the split step, turned into the rotary cos/sin by the model's
    rotary module in (model, `other`).
    """

    def __init__(self, model: nn.Module, structure: ModelStructure, batch: int, max_seqlen: int,
                 layout: HybridLayout) -> None:
        super().__init__(model, structure, batch, max_seqlen)
        self.layout = layout
        self.backbone = getattr(model, layout.backbone)
        self.pos = torch.zeros(batch, 1, dtype=torch.long, device=self.device)
        for name in (layout.embed, layout.final_norm):
            if not isinstance(getattr(self.backbone, name, None), nn.Module):
                raise UnsupportedModelError(f"--phase decode: {type(model).__name__} has no {layout.backbone}.{name}; "
                                            "this transformers version is not the one its decode layout describes")
        self._layers = self._check_layers()

    def _check_layers(self) -> list[LayerSite]:
        layers = [ls for ls in self.structure.layers if ls.block is not None]
        if len(layers) != len(self.structure.layers):
            raise UnsupportedModelError(f"--phase decode: {type(self.model).__name__} has layers without a block")
        for ls in layers:
            if not self._describes(ls):
                raise UnsupportedModelError(
                    f"--phase decode: layer {ls.layer} ({type(ls.block).__name__}) does not have the "
                    f"{self.layout.name} layout (norms {', '.join(st.norm for st in self.layout.stages)})")
        return layers

    def _describes(self, ls: LayerSite) -> bool:
        """Whether the layout's stages call every module the structure found in the layer, and its norms exist."""
        called = [getattr(ls.block, b.attr, None) for st in self.layout.stages for b in st.branches]
        known = ([ls.mixer.module] if ls.mixer else []) + ls.attention + ls.mlp + ls.moe
        return all(any(m is x for x in called) for m in known) and all(
            isinstance(getattr(ls.block, st.norm, None), nn.Module) for st in self.layout.stages)

    def graph_capturable(self) -> str | None:
        return ("transformers' DynamicCache appends each token's keys and values by concatenation (new tensors "
                "every step), which a captured graph cannot replay")

    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        logits = super().prefill(ids)
        self.pos.fill_(ids.shape[1])
        return logits

    def own_step(self, ids: torch.Tensor) -> torch.Tensor:
        position = self.pos.clone()
        self.pos.add_(1)
        return self.model(ids, use_cache=True, position_ids=position, **{self.cache_name: self.cache}).logits[:, -1]

    def _kv_index(self, ls: LayerSite, attn: nn.Module) -> int:
        """Where in the cache the attention module `attn` of layer `ls` keeps its keys and values."""
        return int(attn.layer_idx)

    def _kv_layer(self, ls: LayerSite, attn: nn.Module) -> Any:
        idx = self._kv_index(ls, attn)
        layer = self.cache.layers[idx]
        if getattr(layer, "keys", None) is None:
            raise UnsupportedModelError(f"the model's cache holds no keys for attention layer {idx}")
        return layer

    def state_tensors(self) -> dict[tuple[int, str], list[torch.Tensor]]:
        out: dict[tuple[int, str], list[torch.Tensor]] = {}
        for ls in self._layers:
            if ls.mixer is not None:
                out.update(self._mixer_states(ls.layer, ls.mixer.module))
            kv = [self._kv_layer(ls, a) for a in ls.attention]
            if kv:
                out[(ls.layer, "attention")] = [t for layer in kv for t in (layer.keys, layer.values)]
        return out

    def snapshot(self) -> list[torch.Tensor]:
        """Copies of the conv/SSM states and the position, and each KV cache's length (the KV cache only grows, so
        cutting it back to its length restores it)."""
        out = [t.clone() for key, ts in self.state_tensors().items() if key[1] != "attention" for t in ts]
        out.append(self.pos.clone())
        out += [torch.tensor(self._kv_layer(ls, a).keys.shape[-2]) for ls in self._layers for a in ls.attention]
        return out

    def restore(self, snap: list[torch.Tensor]) -> None:
        """Put a snapshot back: states and position in place, each KV cache cut back to its length then."""
        live = [t for key, ts in self.state_tensors().items() if key[1] != "attention" for t in ts]
        for t, s in zip(live, snap, strict=False):
            t.copy_(s)
        self.pos.copy_(snap[len(live)])
        lengths = snap[len(live) + 1:]
        layers = [self._kv_layer(ls, a) for ls in self._layers for a in ls.attention]
        for layer, n in zip(layers, lengths, strict=True):
            layer.keys, layer.values = layer.keys[..., :int(n), :], layer.values[..., :int(n), :]

    def _embedding_segment(self) -> Segment:
        """(model, embedding): the token embedding of the step's tokens into `h` (times the embedding multiplier)."""
        c, lay, bb = self.ctx, self.layout, self.backbone
        embed = getattr(bb, lay.embed)
        emb_mult = getattr(bb, lay.embedding_multiplier) if lay.embedding_multiplier else None

        def embedding() -> None:
            c["h"] = embed(self.token) * emb_mult if emb_mult is not None else embed(self.token)
        return Segment(MODEL_LAYER, "embedding", embedding)

    def build_segments(self) -> list[Segment]:
        c, lay, bb = self.ctx, self.layout, self.backbone
        rotary = getattr(bb, lay.rotary, None)

        def positions() -> None:
            c["pe"] = rotary(c["h"], self.pos) if rotary is not None else None
            self.pos.add_(1)

        segs = [self._embedding_segment(), Segment(MODEL_LAYER, "other", positions)]
        for ls in self._layers:
            segs += self._layer_segments(ls)
        final = getattr(bb, lay.final_norm)
        segs.append(Segment(MODEL_LAYER, "norm", lambda: c.__setitem__("h", final(c["h"]))))
        head = self.model.lm_head
        mult = getattr(bb, lay.logits_multiplier) if lay.logits_multiplier else None
        div = getattr(self.model.config, lay.logits_divisor) if lay.logits_divisor else None

        def lm_head() -> None:
            logits = head(c["h"])
            if mult is not None:
                logits = logits * mult
            if div is not None:
                logits = logits / div
            c["logits"] = logits[:, -1]

        segs.append(Segment(MODEL_LAYER, "lm_head", lm_head))
        return segs

    def _layer_segments(self, ls: LayerSite) -> list[Segment]:
        """One decoder layer's segments: the layout's stages in order."""
        return [seg for stage in self.layout.stages for seg in self._stage_segments(ls, stage)]

    def _stage_segments(self, ls: LayerSite, stage: Stage) -> list[Segment]:
        c, block, layer = self.ctx, ls.block, ls.layer
        norm = getattr(block, stage.norm)
        cast = self.layout.norm_cast
        branches = [(b, getattr(block, b.attr, None)) for b in stage.branches]
        branches = [(b, m) for b, m in branches if isinstance(m, nn.Module)]
        if not branches:
            return []
        mult = getattr(block, self.layout.residual_multiplier, None) if self.layout.residual_multiplier else None

        def norm_seg() -> None:
            c["res"] = c["h"]
            c["stage_in"] = norm(c["h"].to(dtype=norm.weight.dtype) if cast else c["h"])

        def residual() -> None:
            c["h"] = c["res"] + (c["acc"] * mult if mult is not None else c["acc"])

        segs = [Segment(layer, "norm", norm_seg)]
        for i, (branch, module) in enumerate(branches):
            in_m = getattr(block, branch.in_multiplier) if branch.in_multiplier else None
            out_m = getattr(block, branch.out_multiplier) if branch.out_multiplier else None

            def before(in_m: Any = in_m) -> None:
                c["h"] = c["stage_in"] * in_m if in_m is not None else c["stage_in"]

            def after(out_m: Any = out_m, first: bool = i == 0) -> None:
                y = c["h"] * out_m if out_m is not None else c["h"]
                c["acc"] = y if first else c["acc"] + y

            segs += _around(self._branch_segments(ls, module), before, after)
        return segs + [Segment(layer, "residual", residual)]

    def _branch_segments(self, ls: LayerSite, module: nn.Module) -> list[Segment]:
        """A sub-module's segments by its kind in the structure; each reads `h` and writes its output to `h`."""
        c, layer = self.ctx, ls.layer
        if ls.mixer is not None and module is ls.mixer.module:
            return self.mixer_segments(layer, module)
        if any(module is a for a in ls.attention):
            kw: dict[str, Any] = {cache_kwarg(module.forward): self.cache}
            rope = _accepts(module.forward, "position_embeddings")

            def attention() -> None:
                extra = {"position_embeddings": c["pe"]} if rope else {}
                c["h"] = _first(module(hidden_states=c["h"], attention_mask=None, **kw, **extra))

            return [Segment(layer, "attention", attention)]
        for comp, mods in (("moe", ls.moe), ("mlp", ls.mlp)):
            if any(module is m for m in mods):
                return [Segment(layer, comp, lambda: c.__setitem__("h", _first(module(c["h"]))))]
        raise UnsupportedModelError(f"--phase decode: layer {layer} calls {type(module).__name__}, which is none of "
                                    "mamba / attention / mlp / moe in the model's structure")


def _around(segs: list[Segment], before: Callable[[], None], after: Callable[[], None]) -> list[Segment]:
    """`segs` with `before` run at the start of the first and `after` at the end of the last."""
    first, last = segs[0], segs[-1]
    if first is last:
        def only() -> None:
            before()
            first.run()
            after()
        return [Segment(first.layer, first.component, only)]

    def start() -> None:
        before()
        first.run()

    def end() -> None:
        last.run()
        after()
    return [Segment(first.layer, first.component, start), *segs[1:-1], Segment(last.layer, last.component, end)]


class Zamba2DecodeStep(HFHybridDecodeStep):
    """transformers Zamba2ForCausalLM: Mamba-2 layers (the layout's one pre-norm stage) and hybrid layers, each of
    which calls the shared transformer block before its own Mamba-2 layer.

    A hybrid layer (Zamba2HybridLayer) runs as the model's own forward does: `attention` concatenates `h` with the
    token embeddings (the model's clone of them, made in (model, `embedding`)), `norm` (the block's input norm),
    `attention` (the block's self-attention called with this layer's index: its q/k/v plus this layer's LoRA
    adapters, this token's K/V appended to the cache under the layer's index), `norm` (pre-feed-forward),
    `mlp` (gate_up plus this layer's adapter, down), `other` (the layer's linear), then its Mamba layer on h + that
    output with `h` as the residual (`residual`, `norm`, the mixer's components, `residual`). The block's weights
    serve every hybrid layer (tied); each invocation is timed as the calling layer's components.
    """

    @staticmethod
    def _shared(ls: LayerSite) -> nn.Module | None:
        """The shared transformer block a hybrid layer calls, None for a Mamba layer."""
        shared = getattr(ls.block, "shared_transformer", None)
        return shared if isinstance(shared, nn.Module) else None

    def _describes(self, ls: LayerSite) -> bool:
        shared = self._shared(ls)
        if shared is None:
            return super()._describes(ls)
        mamba_layer = getattr(ls.block, "mamba_decoder", None)
        called = [getattr(mamba_layer, "mamba", None), getattr(shared, "self_attn", None),
                  getattr(shared, "feed_forward", None), getattr(ls.block, "linear", None)]
        norms = [getattr(shared, "input_layernorm", None), getattr(shared, "pre_ff_layernorm", None),
                 getattr(mamba_layer, "input_layernorm", None)]
        known = ([ls.mixer.module] if ls.mixer else []) + ls.attention + ls.mlp + ls.moe + ls.others
        return (ls.mixer is not None and all(isinstance(m, nn.Module) for m in called + norms)
                and all(any(m is x for x in called) for m in known))

    def _kv_index(self, ls: LayerSite, attn: nn.Module) -> int:
        # the shared block's attention has layer_idx -1: each hybrid layer passes its own index, under which the
        # cache keeps that invocation's keys and values
        return ls.layer if self._shared(ls) is not None else super()._kv_index(ls, attn)

    def _embedding_segment(self) -> Segment:
        c, embed = self.ctx, super()._embedding_segment()

        def embedding() -> None:
            embed.run()
            c["orig"] = torch.clone(c["h"])  # the model's original_hidden_states, which the hybrid layers read
        return Segment(MODEL_LAYER, "embedding", embedding)

    def _layer_segments(self, ls: LayerSite) -> list[Segment]:
        shared = self._shared(ls)
        if shared is None:
            return super()._layer_segments(ls)
        c, layer, mamba_layer, linear = self.ctx, ls.layer, ls.block.mamba_decoder, ls.block.linear
        attn, ff = shared.self_attn, shared.feed_forward
        kw: dict[str, Any] = {cache_kwarg(attn.forward): self.cache}

        def concat() -> None:
            c["t"] = torch.concatenate([c["h"], c["orig"]], dim=-1)

        def attention() -> None:
            c["t"] = _first(attn(hidden_states=c["t"], layer_idx=layer, attention_mask=None,
                                 position_embeddings=c["pe"], **kw))

        def into_mamba() -> None:  # the shared block's output joins the Mamba layer's input, not its residual
            c["res"] = c["h"]
            c["h"] = c["h"] + c["t"]

        def set_t(module: nn.Module, *args: Any) -> Callable[[], None]:
            return lambda: c.__setitem__("t", module(c["t"], *args))

        return [Segment(layer, "attention", concat), Segment(layer, "norm", set_t(shared.input_layernorm)),
                Segment(layer, "attention", attention), Segment(layer, "norm", set_t(shared.pre_ff_layernorm)),
                Segment(layer, "mlp", set_t(ff, layer)),
                # the taxonomy's `other`: one d_model x d_model projection of the block's output into the Mamba
                # layer's input, neither the feed-forward nor attention
                Segment(layer, "other", set_t(linear)),
                Segment(layer, "residual", into_mamba),
                Segment(layer, "norm", lambda: c.__setitem__("h", mamba_layer.input_layernorm(c["h"]))),
                *self.mixer_segments(layer, mamba_layer.mamba),
                Segment(layer, "residual", lambda: c.__setitem__("h", c["res"] + c["h"]))]


class SSMDecodeStep(DecodeStep):
    """mamba_ssm MambaLMHeadModel (Mamba / Mamba2 mixers) with InferenceParams and its `step` functions."""

    backend = "mamba_ssm"

    def __init__(self, model: nn.Module, structure: ModelStructure, batch: int, max_seqlen: int) -> None:
        super().__init__(model, structure, batch, max_seqlen)
        from mamba_ssm.utils.generation import InferenceParams

        self.family = structure.family
        self.params = InferenceParams(max_seqlen=max_seqlen, max_batch_size=batch)
        self.params.key_value_memory_dict = model.allocate_inference_cache(batch, max_seqlen, dtype=self.dtype)

    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        self.params.seqlen_offset = 0
        logits = self.model(ids, inference_params=self.params, num_last_tokens=1).logits[:, -1]
        self.params.seqlen_offset = ids.shape[1]
        self._segments = None
        return logits

    def own_step(self, ids: torch.Tensor) -> torch.Tensor:
        if self.params.seqlen_offset == 0:  # step mode needs seqlen_offset > 0 (else the mixers re-prefill)
            self.params.seqlen_offset = 1
        logits = self.model(ids, inference_params=self.params, num_last_tokens=1).logits[:, -1]
        self.params.seqlen_offset += 1
        return logits

    def release(self) -> None:
        super().release()
        if getattr(self.model, "_decoding_cache", None) is not None:  # generate(cg=True) keeps its graphs there
            self.model._decoding_cache = None

    def own_graph(self, prompt_len: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
        from mamba_ssm.utils.generation import update_graph_cache

        cache = update_graph_cache(self.model, None, self.batch, prompt_len, self.max_seqlen)
        position = torch.full((self.batch, 1), prompt_len, dtype=torch.long, device=self.device)
        return lambda ids: cache.run(ids, position, prompt_len)[:, -1]

    def generate(self, ids: torch.Tensor, new_tokens: int, cuda_graphs: bool) -> torch.Tensor:
        out = self.model.generate(ids, max_length=ids.shape[1] + new_tokens, cg=cuda_graphs, top_k=1)
        return out[:, ids.shape[1]:]

    def _attention_layers(self) -> list[tuple[LayerSite, nn.Module]]:
        return [(ls, a) for ls in self.structure.layers for a in ls.attention]

    def graph_capturable(self) -> str | None:
        if self._attention_layers():
            return ("the MHA layers write their keys and values at InferenceParams.seqlen_offset, a Python int a "
                    "captured graph would keep at its capture value")
        return None

    def state_tensors(self) -> dict[tuple[int, str], list[torch.Tensor]]:
        out: dict[tuple[int, str], list[torch.Tensor]] = {}
        for site in self.structure.mixers:
            conv_state, ssm_state = self.params.key_value_memory_dict[site.module.layer_idx]
            out[(site.layer, "conv1d")] = [conv_state]
            out[(site.layer, "ssm_scan")] = [ssm_state]
        for ls, attn in self._attention_layers():
            kv, conv = self.params.key_value_memory_dict[attn.layer_idx]
            # the filled part of the (batch, max_seqlen, 2, kv heads, head_dim) buffer
            out.setdefault((ls.layer, "attention"), []).append(kv[:, :self.params.seqlen_offset])
            if conv is not None:
                out[(ls.layer, "attention")].append(conv)
        return out

    def snapshot(self) -> list[torch.Tensor]:
        """Copies of the conv/SSM states, and the KV position (the KV cache is written at and after it only)."""
        snap = [t.clone() for key, ts in self.state_tensors().items() if key[1] != "attention" for t in ts]
        return [*snap, torch.tensor(self.params.seqlen_offset)] if self._attention_layers() else snap

    def restore(self, snap: list[torch.Tensor]) -> None:
        """Put a snapshot back: states in place, the KV position as it was."""
        live = [t for key, ts in self.state_tensors().items() if key[1] != "attention" for t in ts]
        for t, s in zip(live, snap, strict=False):
            t.copy_(s)
        if self._attention_layers():
            self.params.seqlen_offset = int(snap[len(live)])

    def fused_components(self) -> dict[str, str]:
        if self.family == "mamba1":
            return {"gating": "fused into ssm_scan (y*silu(z) runs inside the selective_state_update kernel)"}
        return {}

    def _add_norm(self, layer: int, block: nn.Module, norm: nn.Module) -> list[Segment]:
        """The block's residual add and pre-norm (fused into one `norm` where the block fuses them)."""
        from mamba_ssm.ops.triton.layer_norm import RMSNorm, layer_norm_fn

        c = self.ctx
        if block.fused_add_norm:
            def fused() -> None:
                c["h"], c["res"] = layer_norm_fn(c["h"], norm.weight, norm.bias, residual=c["res"], prenorm=True,
                                                 residual_in_fp32=block.residual_in_fp32, eps=norm.eps,
                                                 is_rms_norm=isinstance(norm, RMSNorm))
            return [Segment(layer, "norm", fused)]

        def residual() -> None:
            c["res"] = c["h"] + c["res"] if c["res"] is not None else c["h"]

        def plain_norm() -> None:
            c["h"] = norm(c["res"].to(dtype=norm.weight.dtype))
            if block.residual_in_fp32:
                c["res"] = c["res"].to(torch.float32)
        return [Segment(layer, "residual", residual), Segment(layer, "norm", plain_norm)]

    def build_segments(self) -> list[Segment]:
        from mamba_ssm.ops.triton.layer_norm import RMSNorm, layer_norm_fn

        c = self.ctx
        bb = self.model.backbone
        def embedding() -> None:
            c["h"] = bb.embedding(self.token)
            c["res"] = None  # the first block starts the residual stream

        segs = [Segment(MODEL_LAYER, "embedding", embedding)]
        for ls in self.structure.layers:
            block, layer = ls.block, ls.layer
            if block is None:
                raise UnsupportedModelError(f"--phase decode: mamba_ssm layer {layer} has no Block around its mixer")
            segs += self._add_norm(layer, block, block.norm)
            if ls.mixer is not None:
                conv_state, ssm_state = self.params.key_value_memory_dict[ls.mixer.module.layer_idx]
                segs += (self._mamba1(layer, ls.mixer.module, conv_state, ssm_state) if ls.family == "mamba1"
                         else self._mamba2(layer, ls.mixer.module, conv_state, ssm_state))
            elif ls.attention and ls.attention[0] is block.mixer:
                mixer = block.mixer
                if getattr(mixer, "d_conv", 0):
                    raise UnsupportedModelError("--phase decode: mamba_ssm MHA with a conv (d_conv > 0) has no "
                                                "decode split yet")

                def attention(mixer: nn.Module = mixer) -> None:  # writes this token's K/V at seqlen_offset
                    c["h"] = mixer(c["h"], inference_params=self.params)
                segs.append(Segment(layer, "attention", attention))
            else:
                raise UnsupportedModelError(f"--phase decode: mamba_ssm layer {layer}'s mixer "
                                            f"{type(block.mixer).__name__} is neither a Mamba mixer nor MHA")
            if getattr(block, "mlp", None) is not None:
                mlp = block.mlp
                segs += self._add_norm(layer, block, block.norm2)
                segs.append(Segment(layer, "mlp", lambda mlp=mlp: c.__setitem__("h", mlp(c["h"]))))
        if bb.fused_add_norm:
            def final_norm() -> None:
                c["h"] = layer_norm_fn(c["h"], bb.norm_f.weight, bb.norm_f.bias, eps=bb.norm_f.eps, residual=c["res"],
                                       prenorm=False, residual_in_fp32=bb.residual_in_fp32,
                                       is_rms_norm=isinstance(bb.norm_f, RMSNorm))
            segs.append(Segment(MODEL_LAYER, "norm", final_norm))
        else:
            def final_residual() -> None:
                c["res"] = c["h"] + c["res"] if c["res"] is not None else c["h"]

            segs += [Segment(MODEL_LAYER, "residual", final_residual),
                     Segment(MODEL_LAYER, "norm",
                             lambda: c.__setitem__("h", bb.norm_f(c["res"].to(dtype=bb.norm_f.weight.dtype))))]
        head = self.model.lm_head
        segs.append(Segment(MODEL_LAYER, "lm_head", lambda: c.__setitem__("logits", head(c["h"])[:, -1])))
        if self._attention_layers():
            def advance() -> None:  # the next token's KV position, as the model's own step advances it
                self.params.seqlen_offset += 1
            segs.append(Segment(MODEL_LAYER, "other", advance))
        return segs

    def _mamba1(self, layer: int, m: nn.Module, conv_state: torch.Tensor,
                ssm_state: torch.Tensor) -> list[Segment]:
        import mamba_ssm.modules.mamba_simple as ms
        from einops import rearrange

        c = self.ctx
        if ms.causal_conv1d_update is None or ms.selective_state_update is None:
            raise UnsupportedModelError("mamba_ssm without causal_conv1d_update / selective_state_update kernels: "
                                        "no decode split (install causal-conv1d)")
        conv_w = rearrange(m.conv1d.weight, "d 1 w -> d w")

        def in_proj() -> None:
            c["dtype"] = c["h"].dtype
            c["x"], c["z"] = m.in_proj(c["h"].squeeze(1)).chunk(2, dim=-1)

        def conv1d() -> None:
            c["x"] = ms.causal_conv1d_update(c["x"], conv_state, conv_w, m.conv1d.bias, m.activation)

        def ssm_params() -> None:
            dt, b, cc = torch.split(m.x_proj(c["x"]), [m.dt_rank, m.d_state, m.d_state], dim=-1)
            c["dt"], c["B"], c["C"] = F.linear(dt, m.dt_proj.weight), b, cc

        def ssm_scan() -> None:
            a = -torch.exp(m.A_log.float())
            c["y"] = ms.selective_state_update(ssm_state, c["x"], c["dt"], a, c["B"], c["C"], m.D, z=c["z"],
                                               dt_bias=m.dt_proj.bias, dt_softplus=True)

        def out_proj() -> None:
            c["h"] = m.out_proj(c["y"]).unsqueeze(1)

        return [Segment(layer, "in_proj", in_proj), Segment(layer, "conv1d", conv1d),
                Segment(layer, "ssm_params", ssm_params), Segment(layer, "ssm_scan", ssm_scan),
                Segment(layer, "out_proj", out_proj)]

    def _mamba2(self, layer: int, m: nn.Module, conv_state: torch.Tensor,
                ssm_state: torch.Tensor) -> list[Segment]:
        import mamba_ssm.modules.mamba2 as m2
        from einops import rearrange, repeat

        c = self.ctx
        if m2.causal_conv1d_update is None or m2.selective_state_update is None:
            raise UnsupportedModelError("mamba_ssm without causal_conv1d_update / selective_state_update kernels: "
                                        "no decode split (install causal-conv1d)")
        if not m.rmsnorm:
            raise UnsupportedModelError("mamba_ssm Mamba2 without rmsnorm has no decode split yet")
        conv_w = rearrange(m.conv1d.weight, "d 1 w -> d w")
        gn = m.ngroups * m.d_state
        p = m.headdim

        def in_proj() -> None:
            c["dtype"] = c["h"].dtype
            zxbcdt = m.in_proj(c["h"].squeeze(1))
            d_mlp = (zxbcdt.shape[-1] - 2 * m.d_ssm - 2 * gn - m.nheads) // 2
            if d_mlp:
                raise UnsupportedModelError("mamba_ssm Mamba2 with an MLP part in in_proj has no decode split yet")
            c["z"], c["xbc"], c["dt"] = torch.split(zxbcdt, [m.d_ssm, m.d_ssm + 2 * gn, m.nheads], dim=-1)

        def conv1d() -> None:
            xbc = m2.causal_conv1d_update(c["xbc"], conv_state, conv_w, m.conv1d.bias, m.activation)
            c["x"], c["B"], c["C"] = torch.split(xbc, [m.d_ssm, gn, gn], dim=-1)

        def ssm_scan() -> None:
            a = repeat(-torch.exp(m.A_log.float()), "h -> h p n", p=p, n=m.d_state).to(dtype=torch.float32)
            y = m2.selective_state_update(
                ssm_state, rearrange(c["x"], "b (h p) -> b h p", p=p), repeat(c["dt"], "b h -> b h p", p=p), a,
                rearrange(c["B"], "b (g n) -> b g n", g=m.ngroups), rearrange(c["C"], "b (g n) -> b g n",
                                                                               g=m.ngroups),
                repeat(m.D, "h -> h p", p=p), z=None, dt_bias=repeat(m.dt_bias, "h -> h p", p=p), dt_softplus=True)
            c["y"] = rearrange(y, "b h p -> b (h p)")

        def gating() -> None:
            c["y"] = m.norm(c["y"], c["z"])

        def out_proj() -> None:
            c["h"] = m.out_proj(c["y"]).unsqueeze(1)

        return [Segment(layer, "in_proj", in_proj), Segment(layer, "conv1d", conv1d),
                Segment(layer, "ssm_scan", ssm_scan), Segment(layer, "gating", gating),
                Segment(layer, "out_proj", out_proj)]


_HF_DECODE = ("transformers.models.mamba.modeling_mamba.MambaForCausalLM",
              "transformers.models.mamba2.modeling_mamba2.Mamba2ForCausalLM",
              "transformers.models.falcon_mamba.modeling_falcon_mamba.FalconMambaForCausalLM")
_SSM_DECODE = ("mamba_ssm.models.mixer_seq_simple.MambaLMHeadModel",)
_SUPPORTED = ("supported: transformers MambaForCausalLM / Mamba2ForCausalLM / FalconMambaForCausalLM and the hybrids "
              f"{', '.join(HYBRID_LAYOUTS)}; mamba_ssm MambaLMHeadModel (with or without attn_layer_idx)")


def decode_step_for(model: nn.Module, structure: ModelStructure, batch: int, max_seqlen: int) -> DecodeStep:
    """The decode path of `model` for `batch` sequences of up to `max_seqlen` tokens, or UnsupportedModelError
    (one line) for a model without one."""
    cls = type(model)
    path = f"{cls.__module__}.{cls.__qualname__}"
    if structure.asis:
        first = structure.asis[0]
        raise UnsupportedModelError(f"--phase decode: {len(structure.asis)} Mamba layer(s) could not be split "
                                    f"(layer {first.layer} {first.name}: {first.reason}); a decode step without them "
                                    "would time another model")
    if structure.family not in ("mamba1", "mamba2"):
        what = "mixes Mamba-1 and Mamba-2 layers" if structure.family == "mixed" else "has no Mamba layer"
        raise UnsupportedModelError(f"--phase decode: {path} {what}; no decode path yet", _SUPPORTED)
    if path in _HF_DECODE and all(s.block is not None for s in structure.mixers):
        return HFDecodeStep(model, structure, batch, max_seqlen)
    if path.startswith("transformers.") and cls.__name__ in HYBRID_LAYOUTS:
        step = Zamba2DecodeStep if cls.__name__ == "Zamba2ForCausalLM" else HFHybridDecodeStep
        return step(model, structure, batch, max_seqlen, HYBRID_LAYOUTS[cls.__name__])
    if path in _SSM_DECODE:
        return SSMDecodeStep(model, structure, batch, max_seqlen)
    raise UnsupportedModelError(f"--phase decode: {path} has no decode cache path mambaprof knows", _SUPPORTED)
