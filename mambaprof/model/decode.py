"""Decode paths: a model's own single-token step with its cache, and the same step split into components.

A `DecodeStep` holds the decode cache of one batch (conv and SSM states; KV caches for families that have
attention), fills it from a prompt (`prefill`), and runs one generated token per sequence two ways:

- `own_step(ids)`: the model's own cached forward (transformers: `model(ids, cache=...)`; mamba_ssm:
  `model(ids, inference_params=...)` with `seqlen_offset > 0`, which runs `Mamba.step` / `Mamba2.step`);
- `split_step(ids)`: the same arithmetic through the same kernel functions, as a list of `Segment`s, one per
  (layer, component), that read and write a shared context of tensors and update the cache in place.

The segments only ever touch tensors (no Python state changes between calls), so each can be captured as its
own CUDA graph and the whole list as one graph. A family plugs in by subclassing `DecodeStep` and giving
per-layer segment builders; a hybrid's attention layer would add an `attention` segment whose KV cache is
listed in `state_tensors()` under (layer, `attention`).
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mambaprof.errors import UnsupportedModelError
from mambaprof.model.adapters.hf import uses_reference
from mambaprof.model.structure import ModelStructure
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


def _module_fn(module: nn.Module, name: str) -> Callable[..., Any]:
    """`name` from the Python module that defines the class of `module` (the kernel or its fallback)."""
    fn = getattr(sys.modules[type(module).__module__], name, None)
    if fn is None:
        raise UnsupportedModelError(f"{type(module).__module__} has no {name}: no decode split for this version")
    return fn


class HFDecodeStep(DecodeStep):
    """transformers MambaForCausalLM / Mamba2ForCausalLM with their DynamicCache."""

    backend = "transformers"

    def __init__(self, model: nn.Module, structure: ModelStructure, batch: int, max_seqlen: int) -> None:
        super().__init__(model, structure, batch, max_seqlen)
        self.family = structure.family
        self.cache: Any = None
        self.backbone = model.backbone

    def prefill(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.model(ids, use_cache=True)
        self.cache = getattr(out, "cache", None) or getattr(out, "cache_params", None)
        if self.cache is None:
            raise UnsupportedModelError(f"{type(self.model).__name__} returned no cache from use_cache=True")
        self._segments = None
        return out.logits[:, -1]

    def own_step(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids, cache=self.cache, use_cache=True).logits[:, -1]

    def generate(self, ids: torch.Tensor, new_tokens: int, cuda_graphs: bool) -> torch.Tensor:
        from transformers import GenerationConfig

        config = GenerationConfig(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                  use_cache=True, pad_token_id=0, eos_token_id=None, bos_token_id=None)
        out = self.model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=config)
        return out[:, ids.shape[1]:]

    def state_tensors(self) -> dict[tuple[int, str], list[torch.Tensor]]:
        out: dict[tuple[int, str], list[torch.Tensor]] = {}
        for site in self.structure.mixers:
            idx = int(site.module.layer_idx)
            out[(site.layer, "conv1d")] = [self.cache.get_conv_state(idx, state_idx=0)]
            out[(site.layer, "ssm_scan")] = [self.cache.get_recurrent_state(idx, state_idx=0)]
        return out

    def _reference_scan(self, mixer: nn.Module) -> bool:
        return uses_reference(_module_fn(mixer, "mamba_selective_state_update" if self.family == "mamba1"
                                         else "mamba2_selective_state_update"))

    def fused_components(self) -> dict[str, str]:
        if self.family == "mamba1" and self.structure.mixers and not self._reference_scan(
                self.structure.mixers[0].module):
            return {"gating": "fused into ssm_scan (y*silu(z) runs inside the selective_state_update kernel)"}
        return {}

    def build_segments(self) -> list[Segment]:
        c = self.ctx
        bb = self.backbone
        segs = [Segment(MODEL_LAYER, "embedding", lambda: c.__setitem__("h", bb.embeddings(self.token)))]
        for site in self.structure.mixers:
            segs += self._block_segments(site.layer, site.block, site.module)
        segs.append(Segment(MODEL_LAYER, "norm", lambda: c.__setitem__("h", bb.norm_f(c["h"]))))
        head = self.model.lm_head
        segs.append(Segment(MODEL_LAYER, "lm_head", lambda: c.__setitem__("logits", head(c["h"])[:, -1])))
        return segs

    def _block_segments(self, layer: int, block: nn.Module, m: nn.Module) -> list[Segment]:
        c = self.ctx
        idx = int(m.layer_idx)
        conv_state = self.cache.get_conv_state(idx, state_idx=0)
        rec_state = self.cache.get_recurrent_state(idx, state_idx=0)
        conv_update = _module_fn(m, "causal_conv1d_update")
        r32 = bool(getattr(block, "residual_in_fp32", False))

        def norm() -> None:
            c["res"] = c["h"]
            c["h"] = block.norm(c["h"].to(dtype=block.norm.weight.dtype))

        def residual() -> None:
            res = c["res"].to(torch.float32) if r32 else c["res"]
            c["h"] = res + c["h"]

        segs = [Segment(layer, "norm", norm)]
        segs += (self._mamba1(layer, m, conv_state, rec_state, conv_update) if self.family == "mamba1"
                 else self._mamba2(layer, m, conv_state, rec_state, conv_update))
        segs.append(Segment(layer, "residual", residual))
        return segs

    def _mamba1(self, layer: int, m: nn.Module, conv_state: torch.Tensor, rec_state: torch.Tensor,
                conv_update: Callable[..., Any]) -> list[Segment]:
        c = self.ctx
        scan = _module_fn(m, "mamba_selective_state_update")
        split_gating = uses_reference(scan)

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
                conv_update: Callable[..., Any]) -> list[Segment]:
        c = self.ctx
        scan = _module_fn(m, "mamba2_selective_state_update")
        batch = self.batch
        di, n, g, heads, p = m.intermediate_size, m.ssm_state_size, m.n_groups, m.num_heads, m.head_dim

        def in_proj() -> None:
            c["dtype"] = c["h"].dtype
            c["gate"], c["xbc"], c["dt"] = m.in_proj(c["h"]).split([di, m.conv_dim, heads], dim=-1)

        def conv1d() -> None:
            xbc = conv_update(c["xbc"].transpose(1, 2), conv_state, m.conv1d.weight.squeeze(1), m.conv1d.bias,
                              activation=m.activation).transpose(1, 2)
            c["x"], c["B"], c["C"] = torch.split(xbc, [di, g * n, g * n], dim=-1)

        def ssm_scan() -> None:
            a = (-torch.exp(m.A_log.float()))[:, None, None].expand(-1, p, n)
            y = scan(rec_state, c["x"].view(batch, heads, p), c["dt"].transpose(1, 2).expand(-1, -1, p), a,
                     c["B"].view(batch, g, n), c["C"].view(batch, g, n), m.D[:, None].expand(-1, p), z=None,
                     dt_bias=m.dt_bias[:, None].expand(-1, p), dt_softplus=True)
            c["y"] = y.view(batch, 1, -1)

        def gating() -> None:
            c["y"] = m.norm(c["y"], c["gate"])

        def out_proj() -> None:
            c["h"] = m.out_proj(c["y"].to(c["dtype"]))

        return [Segment(layer, "in_proj", in_proj), Segment(layer, "conv1d", conv1d),
                Segment(layer, "ssm_scan", ssm_scan), Segment(layer, "gating", gating),
                Segment(layer, "out_proj", out_proj)]


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

    def state_tensors(self) -> dict[tuple[int, str], list[torch.Tensor]]:
        out: dict[tuple[int, str], list[torch.Tensor]] = {}
        for site in self.structure.mixers:
            conv_state, ssm_state = self.params.key_value_memory_dict[site.module.layer_idx]
            out[(site.layer, "conv1d")] = [conv_state]
            out[(site.layer, "ssm_scan")] = [ssm_state]
        return out

    def fused_components(self) -> dict[str, str]:
        if self.family == "mamba1":
            return {"gating": "fused into ssm_scan (y*silu(z) runs inside the selective_state_update kernel)"}
        return {}

    def build_segments(self) -> list[Segment]:
        from mamba_ssm.ops.triton.layer_norm import RMSNorm, layer_norm_fn

        c = self.ctx
        bb = self.model.backbone
        def embedding() -> None:
            c["h"] = bb.embedding(self.token)
            c["res"] = None  # the first block starts the residual stream

        segs = [Segment(MODEL_LAYER, "embedding", embedding)]
        for site in self.structure.mixers:
            block = site.block
            layer = site.layer
            if getattr(block, "mlp", None) is not None:
                raise UnsupportedModelError("mamba_ssm blocks with an MLP have no decode split yet")
            if block.fused_add_norm:
                def norm(block: nn.Module = block) -> None:
                    c["h"], c["res"] = layer_norm_fn(c["h"], block.norm.weight, block.norm.bias, residual=c["res"],
                                                     prenorm=True, residual_in_fp32=block.residual_in_fp32,
                                                     eps=block.norm.eps, is_rms_norm=isinstance(block.norm, RMSNorm))
                segs.append(Segment(layer, "norm", norm))
            else:
                def residual(block: nn.Module = block) -> None:
                    c["res"] = c["h"] + c["res"] if c["res"] is not None else c["h"]

                def plain_norm(block: nn.Module = block) -> None:
                    c["h"] = block.norm(c["res"].to(dtype=block.norm.weight.dtype))
                    if block.residual_in_fp32:
                        c["res"] = c["res"].to(torch.float32)
                segs += [Segment(layer, "residual", residual), Segment(layer, "norm", plain_norm)]
            conv_state, ssm_state = self.params.key_value_memory_dict[site.module.layer_idx]
            segs += (self._mamba1(layer, site.module, conv_state, ssm_state) if self.family == "mamba1"
                     else self._mamba2(layer, site.module, conv_state, ssm_state))
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
              "transformers.models.mamba2.modeling_mamba2.Mamba2ForCausalLM")
_SSM_DECODE = ("mamba_ssm.models.mixer_seq_simple.MambaLMHeadModel",)


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
        raise UnsupportedModelError(f"--phase decode: {path} mixes Mamba-1 and Mamba-2 layers; no decode path yet")
    if path in _HF_DECODE and all(s.block is not None for s in structure.mixers):
        return HFDecodeStep(model, structure, batch, max_seqlen)
    if path in _SSM_DECODE:
        return SSMDecodeStep(model, structure, batch, max_seqlen)
    raise UnsupportedModelError(
        f"--phase decode: {path} has no decode cache path mambaprof knows",
        "supported: transformers MambaForCausalLM / Mamba2ForCausalLM, mamba_ssm MambaLMHeadModel")
