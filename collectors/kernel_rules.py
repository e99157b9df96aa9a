"""Kernel-name rules: attribute kernels to components where no split markers exist (as-is mode).

mamba_ssm fuses the whole Mamba-1 mixer into one autograd function and Mamba-2's into another, so
the model's own forward has no component boundaries. Inside a mixer's window, kernels are read in
launch order: names identify the convolution, the scan and the gated norm; GEMMs and unnamed
elementwise kernels take the phase they fall in (before the conv: in_proj; between conv and scan:
ssm_params; after the scan: out_proj, or gating for the gated norm).

Communication (models that run across ranks) is recognised by name wherever it runs: NCCL kernels,
the c10d operators and the gloo/NCCL backends' ranges go to the `communication` component.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("conv1d", re.compile(r"causal_conv1d|conv_depthwise|depthwise|conv1d|convolution", re.I)),
    ("ssm_scan", re.compile(r"selective_scan|chunk_scan|chunk_state|state_passing|bmm_chunk|chunk_cumsum|"
                            r"ssd|mamba_chunk|scan", re.I)),
    ("gating", re.compile(r"layer_norm|rms_?norm|layernorm", re.I)),
)
GEMM = re.compile(r"gemm|cutlass|xmma|nvjet|sm90_|sm80_|ampere_|cublas|matmul|splitk|gemv|addmm|aten::mm|"
                  r"aten::bmm|aten::linear", re.I)

#: Collective and point-to-point communication: NCCL kernels (`ncclDevKernel_AllReduce_...`), c10d and
#: functional-collective operators (`c10d::allreduce_`, `_c10d_functional::all_gather_into_tensor`),
#: the backends' ranges (`gloo:all_reduce`, `nccl:broadcast`) and PyTorch's `record_param_comms`.
#: Plain `broadcast` is left out on purpose: `aten::broadcast_tensors` is not communication.
COMMUNICATION = re.compile(r"nccl|gloo|c10d|record_param_comms|all_?reduce|all_?gather|reduce_?scatter|"
                           r"all_?to_?all", re.I)


def is_communication(name: str) -> bool:
    """True for kernels and operators that move data between ranks (NCCL, gloo, c10d collectives)."""
    return bool(COMMUNICATION.search(name))


def classify(name: str) -> str | None:
    """Component a kernel name identifies on its own (conv1d, ssm_scan, gating), or None."""
    for component, pattern in RULES:
        if pattern.search(name):
            return component
    return None


def is_gemm(name: str) -> bool:
    """True for matrix-multiply kernels (cuBLAS, CUTLASS, nvjet...) and CPU matmul ops."""
    return bool(GEMM.search(name))


def attribute_mixer_kernels(names: Sequence[str], family: str) -> list[str]:
    """Components for the kernels of one mixer forward, given in launch order."""
    out: list[str] = []
    phase = "in_proj"
    seen_conv = seen_scan = False
    for name in names:
        comp = classify(name)
        if comp is None and is_gemm(name):
            if not seen_conv:
                comp = "in_proj"
            elif not seen_scan:
                comp = "ssm_params" if family == "mamba1" else "conv1d"
            else:
                comp = "out_proj"
        if comp == "conv1d":
            seen_conv = True
        elif comp == "ssm_scan":
            seen_scan = True
        phase = comp or phase
        out.append(phase)
    return out
