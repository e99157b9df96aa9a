"""Adapters for mamba_ssm's `Mamba` (Mamba-1) and `Mamba2` mixers (GPU only).

The split forwards mirror the kernels of the original paths call for call:
- Mamba fast path (`mamba_inner_fn`): in_proj GEMM, causal_conv1d forward, x_proj GEMM, dt GEMM,
  B/C layout copies, `selective_scan_cuda.fwd` with z (gating fused in), out_proj GEMM.
- Mamba slow path (use_fast_path=False): the same through `causal_conv1d_fn` and `selective_scan_fn`.
- Mamba2 memory-efficient path (`mamba_split_conv1d_scan_combined`): in_proj, causal_conv1d forward
  on the channels-last view, `_mamba_chunk_scan_combined_fwd` (z=None), the gated RMSNorm
  `_layer_norm_fwd`, out_proj.
- Mamba2 plain path (use_mem_eff_path=False): in_proj, causal_conv1d_fn, mamba_chunk_scan_combined,
  RMSNormGated module, out_proj.
Configurations outside these (tensor parallel, D per head-dim, an MLP part in in_proj, no rmsnorm,
inference caches) are not split: the adapter returns None and the caller runs the original.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mambaprof.model.adapters.base import MixerAdapter, WindowFn
from mambaprof.model.adapters.dims import MixerDims


def _rearrange() -> Any:
    from einops import rearrange

    return rearrange


class SSMMambaAdapter(MixerAdapter):
    """mamba_ssm.modules.mamba_simple.Mamba."""

    family = "mamba1"
    handles = "mamba_ssm.modules.mamba_simple.Mamba"

    def dims(self, module: nn.Module) -> MixerDims:
        return MixerDims(family="mamba1", d_model=int(module.d_model), d_inner=int(module.d_inner),
                         d_state=int(module.d_state), d_conv=int(module.d_conv), dt_rank=int(module.dt_rank))

    def fused_components(self, module: nn.Module) -> dict[str, str]:
        return {"gating": "fused into ssm_scan (y*silu(z) runs inside the selective-scan CUDA kernel)"}

    def split_forward(self, module: nn.Module, window: WindowFn, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> torch.Tensor | None:
        if kwargs.get("inference_params") is not None or (len(args) > 1 and args[1] is not None):
            return None
        import mamba_ssm.modules.mamba_simple as ms

        m = module
        rearrange = _rearrange()
        hidden_states = args[0] if args else kwargs["hidden_states"]
        _, seqlen, _ = hidden_states.shape
        fast = bool(m.use_fast_path) and ms.causal_conv1d_fn is not None
        with window("in_proj"):
            xz = rearrange(m.in_proj.weight @ rearrange(hidden_states, "b l d -> d (b l)"),
                           "d (b l) -> b d l", l=seqlen)
            if m.in_proj.bias is not None:
                xz = xz + rearrange(m.in_proj.bias.to(dtype=xz.dtype), "d -> d 1")
            if fast and xz.stride(-1) != 1:
                xz = xz.contiguous()
        if fast:
            return self._fast(m, window, xz, seqlen)
        return self._slow(m, window, xz, seqlen, ms)

    def _fast(self, m: nn.Module, window: WindowFn, xz: torch.Tensor, seqlen: int) -> torch.Tensor:
        import selective_scan_cuda
        from causal_conv1d.cpp_functions import causal_conv1d_fwd_function

        rearrange = _rearrange()
        with window("conv1d"):
            conv_weight = rearrange(m.conv1d.weight, "d 1 w -> d w")
            x, z = xz.chunk(2, dim=1)
            conv_bias = m.conv1d.bias.contiguous() if m.conv1d.bias is not None else None
            conv_out = causal_conv1d_fwd_function(x, conv_weight, conv_bias, None, None, None, True)
        with window("ssm_params"):
            delta_rank = m.dt_proj.weight.shape[1]
            d_state = m.A_log.shape[-1]
            x_dbl = F.linear(rearrange(conv_out, "b d l -> (b l) d"), m.x_proj.weight)
            delta = rearrange(m.dt_proj.weight @ x_dbl[:, :delta_rank].t(), "d (b l) -> b d l", l=seqlen)
            b = rearrange(x_dbl[:, delta_rank:delta_rank + d_state], "(b l) dstate -> b 1 dstate l",
                          l=seqlen).contiguous()
            c = rearrange(x_dbl[:, -d_state:], "(b l) dstate -> b 1 dstate l", l=seqlen).contiguous()
        with window("ssm_scan"):
            a = -torch.exp(m.A_log.float())
            d = m.D.float().contiguous()
            delta_bias = m.dt_proj.bias.float()
            _, _, out_z = selective_scan_cuda.fwd(conv_out, delta, a, b, c, d, z, delta_bias, True)
            # mamba_inner_fn drops these two before its out_proj GEMM (checkpoint_lvl 1): so does the split,
            # so the out_proj window sees the same memory as the fused forward
            del conv_out, delta
        with window("out_proj"):
            return F.linear(rearrange(out_z, "b d l -> b l d"), m.out_proj.weight, m.out_proj.bias)

    def _slow(self, m: nn.Module, window: WindowFn, xz: torch.Tensor, seqlen: int, ms: Any) -> torch.Tensor:
        rearrange = _rearrange()
        with window("conv1d"):
            x, z = xz.chunk(2, dim=1)
            if ms.causal_conv1d_fn is None:
                x = m.act(m.conv1d(x)[..., :seqlen])
            else:
                x = ms.causal_conv1d_fn(x=x, weight=rearrange(m.conv1d.weight, "d 1 w -> d w"),
                                        bias=m.conv1d.bias, activation=m.activation)
        with window("ssm_params"):
            x_dbl = m.x_proj(rearrange(x, "b d l -> (b l) d"))
            dt, b, c = torch.split(x_dbl, [m.dt_rank, m.d_state, m.d_state], dim=-1)
            dt = m.dt_proj.weight @ dt.t()
            dt = rearrange(dt, "d (b l) -> b d l", l=seqlen)
            b = rearrange(b, "(b l) dstate -> b dstate l", l=seqlen).contiguous()
            c = rearrange(c, "(b l) dstate -> b dstate l", l=seqlen).contiguous()
        with window("ssm_scan"):
            a = -torch.exp(m.A_log.float())
            y = ms.selective_scan_fn(x, dt, a, b, c, m.D.float(), z=z, delta_bias=m.dt_proj.bias.float(),
                                     delta_softplus=True, return_last_state=False)
        with window("out_proj"):
            return m.out_proj(rearrange(y, "b d l -> b l d"))


class SSMMamba2Adapter(MixerAdapter):
    """mamba_ssm.modules.mamba2.Mamba2."""

    family = "mamba2"
    handles = "mamba_ssm.modules.mamba2.Mamba2"

    def dims(self, module: nn.Module) -> MixerDims:
        return MixerDims(family="mamba2", d_model=int(module.d_model), d_inner=int(module.d_ssm),
                         d_state=int(module.d_state), d_conv=int(module.d_conv), nheads=int(module.nheads),
                         headdim=int(module.headdim), ngroups=int(module.ngroups),
                         chunk_size=int(module.chunk_size))

    @staticmethod
    def _splittable(m: nn.Module, zxbcdt_width: int) -> bool:
        d_nonssm = (zxbcdt_width - 2 * m.d_ssm - 2 * m.ngroups * m.d_state - m.nheads) // 2
        return (m.process_group is None and not m.D_has_hdim and m.rmsnorm and d_nonssm == 0)

    def split_forward(self, module: nn.Module, window: WindowFn, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> torch.Tensor | None:
        m = module
        if any(kwargs.get(k) is not None for k in ("seqlen", "seq_idx", "cu_seqlens", "inference_params")):
            return None
        if len(args) > 1:
            return None
        if not self._splittable(m, m.in_proj.weight.shape[0]):
            return None
        u = args[0] if args else kwargs["u"]
        with window("in_proj"):
            zxbcdt = m.in_proj(u)
        if m.use_mem_eff_path:
            return self._mem_eff(m, window, zxbcdt)
        return self._plain(m, window, zxbcdt)

    def _dt_limit(self, m: nn.Module) -> dict[str, Any]:
        return {} if m.dt_limit == (0.0, float("inf")) else {"dt_limit": m.dt_limit}

    def _mem_eff(self, m: nn.Module, window: WindowFn, zxbcdt: torch.Tensor) -> torch.Tensor:
        from causal_conv1d.cpp_functions import causal_conv1d_fwd_function
        from mamba_ssm.ops.triton.layernorm_gated import _layer_norm_fwd
        from mamba_ssm.ops.triton.ssd_combined import _mamba_chunk_scan_combined_fwd, ensure_stride

        rearrange = _rearrange()
        batch = zxbcdt.shape[0]
        dim, ngroups, dstate, nheads = m.d_ssm, m.ngroups, m.d_state, m.nheads
        with window("conv1d"):
            _, z, xbc, dt = torch.split(zxbcdt, [0, dim, dim + ngroups * dstate * 2, nheads], dim=-1)
            conv_weight = rearrange(m.conv1d.weight, "d 1 w -> d w")
            xbc_conv = rearrange(
                causal_conv1d_fwd_function(rearrange(ensure_stride(xbc), "b s d -> b d s"), conv_weight,
                                           m.conv1d.bias, None, None, None, True),
                "b d s -> b s d")
        with window("ssm_scan"):
            a = -torch.exp(m.A_log.float())
            x, b, c = torch.split(xbc_conv, [dim, ngroups * dstate, ngroups * dstate], dim=-1)
            x = rearrange(x, "b l (h p) -> b l h p", h=nheads)
            b = rearrange(b, "b l (g n) -> b l g n", g=ngroups)
            c = rearrange(c, "b l (g n) -> b l g n", g=ngroups)
            out_x, *_ = _mamba_chunk_scan_combined_fwd(
                x, dt, a, b, c, chunk_size=m.chunk_size, D=m.D, z=None, dt_bias=m.dt_bias,
                initial_states=None, seq_idx=None, dt_softplus=True,
                dt_limit=m.dt_limit)
        with window("gating"):
            x_rms = rearrange(out_x, "b s h p -> (b s) (h p)")
            z_rms = rearrange(rearrange(z, "b l (h p) -> b l h p", h=nheads), "b s h p -> (b s) (h p)")
            out, _, _ = _layer_norm_fwd(x_rms, m.norm.weight.contiguous(), None, m.norm.eps, z_rms, out=None,
                                        group_size=dim // ngroups, norm_before_gate=m.norm_before_gate,
                                        is_rms_norm=True)
            out = rearrange(out, "(b s) d -> b s d", b=batch)
        with window("out_proj"):
            return F.linear(out, m.out_proj.weight, m.out_proj.bias)

    def _plain(self, m: nn.Module, window: WindowFn, zxbcdt: torch.Tensor) -> torch.Tensor:
        import mamba_ssm.modules.mamba2 as m2

        rearrange = _rearrange()
        with window("conv1d"):
            _, _, z, xbc, dt = torch.split(
                zxbcdt, [0, 0, m.d_ssm, m.d_ssm + 2 * m.ngroups * m.d_state, m.nheads], dim=-1)
            if m2.causal_conv1d_fn is None:
                xbc = m.act(m.conv1d(xbc.transpose(1, 2)).transpose(1, 2)[:, :-(m.d_conv - 1)])
            else:
                xbc = m2.causal_conv1d_fn(xbc.transpose(1, 2), rearrange(m.conv1d.weight, "d 1 w -> d w"),
                                          bias=m.conv1d.bias, activation=m.activation).transpose(1, 2)
        with window("ssm_scan"):
            a = -torch.exp(m.A_log.float())
            x, b, c = torch.split(xbc, [m.d_ssm, m.ngroups * m.d_state, m.ngroups * m.d_state], dim=-1)
            y = m2.mamba_chunk_scan_combined(
                rearrange(x, "b l (h p) -> b l h p", p=m.headdim), dt, a,
                rearrange(b, "b l (g n) -> b l g n", g=m.ngroups),
                rearrange(c, "b l (g n) -> b l g n", g=m.ngroups),
                chunk_size=m.chunk_size, D=m.D, z=None, dt_bias=m.dt_bias, dt_softplus=True,
                **self._dt_limit(m))
            y = rearrange(y, "b l h p -> b l (h p)")
        with window("gating"):
            y = m.norm(y, z)
        with window("out_proj"):
            return m.out_proj(y)
