"""Inputs for a sweep point, calling the model with them, and comparing outputs."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mambaprof.errors import ModelLoadError
from mambaprof.model.loading import MakeInputs
from mambaprof.model.structure import ModelStructure

#: Tolerance on max|split - original| / max|original| per dtype.
TOLERANCE: dict[torch.dtype, float] = {torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 5e-3}


@dataclass
class ModelCall:
    """How to call the model for one point: `call()` runs one forward and returns its output."""

    model: nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def __call__(self) -> Any:
        return self.model(*self.args, **self.kwargs)


def _accepts(model: nn.Module, name: str) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def make_call(model: nn.Module, structure: ModelStructure, batch: int, seqlen: int, device: torch.device,
              dtype: torch.dtype, make_inputs: MakeInputs | None, seed: int = 0) -> ModelCall:
    """Inputs for (batch, seqlen): the user's make_inputs, else random token ids / hidden states.

    Random values are drawn from a fixed seed (never all zeros, never the same across points).
    """
    if make_inputs is not None:
        try:
            value = make_inputs(batch, seqlen, device, dtype)
        except Exception as exc:  # noqa: BLE001 - user code
            text = str(exc).strip().splitlines()
            raise ModelLoadError(f"make_inputs({batch}, {seqlen}, ...) raised {type(exc).__name__}"
                                 f"{': ' + text[0] if text else ''}", "run with --debug for the traceback") from exc
        if isinstance(value, dict):
            call = ModelCall(model, (), dict(value))
        elif isinstance(value, (tuple, list)):
            call = ModelCall(model, tuple(value), {})
        elif isinstance(value, torch.Tensor):
            call = ModelCall(model, (value,), {})
        else:
            raise ModelLoadError(f"make_inputs returned {type(value).__name__}; expected a tensor, tuple or dict")
        check_inputs(call, batch, seqlen, device, dtype, structure)
        return call
    gen = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + batch * 7919 + seqlen)
    if structure.embeddings:
        vocab = structure.embeddings[0].num_embeddings
        ids = torch.randint(0, vocab, (batch, seqlen), generator=gen).to(device)
        kwargs: dict[str, Any] = {}
        if _accepts(model, "use_cache"):
            kwargs["use_cache"] = False
        if _accepts(model, "input_ids"):
            return ModelCall(model, (), {"input_ids": ids, **kwargs})
        return ModelCall(model, (ids,), kwargs)
    hidden = torch.randn((batch, seqlen, structure.d_model), generator=gen).to(device=device, dtype=dtype)
    return ModelCall(model, (hidden,), {})


def check_inputs(call: ModelCall, batch: int, seqlen: int, device: torch.device, dtype: torch.dtype,
                 structure: ModelStructure | None = None) -> None:
    """Refuse make_inputs results that cannot be what the point asks for.

    Every tensor must be on `device`; floating tensors must have `dtype`; one tensor must be the model's
    input for batch x seqlen: integer token ids of shape (batch, seqlen), or hidden states of shape
    (batch, seqlen, d_model) (d_model from `structure`; for a model that starts with an embedding, ids
    or embeddings of that width). Raises ModelLoadError saying which rule broke.
    """
    tensors = [v for v in (*call.args, *call.kwargs.values()) if isinstance(v, torch.Tensor)]
    if not tensors:
        raise ModelLoadError("make_inputs returned no tensor", "return the model's input tensor(s)")
    for t in tensors:
        same_gpu = t.device.type == device.type == "cuda" and t.device.index in (None, device.index)
        if t.device != device and not same_gpu:
            raise ModelLoadError(f"make_inputs returned a tensor on {t.device}, but the run is on {device}",
                                 "create inputs with the `device` argument")
        if t.is_floating_point() and t.dtype != dtype:
            raise ModelLoadError(f"make_inputs returned a {str(t.dtype).replace('torch.', '')} tensor, but --dtype is "
                                 f"{str(dtype).replace('torch.', '')}", "create inputs with the `dtype` argument")
    described = ", ".join(f"{str(t.dtype).replace('torch.', '')} {tuple(t.shape)}" for t in tensors[:3])
    if not any(t.dim() >= 2 and tuple(t.shape[:2]) == (batch, seqlen) for t in tensors):
        raise ModelLoadError(f"make_inputs({batch}, {seqlen}, ...) returned {described}; no tensor starts with "
                             f"batch {batch} x seqlen {seqlen}", "honour the batch and seqlen arguments")
    if structure is None:
        return
    d_model = structure.d_model

    def is_ids(t: torch.Tensor) -> bool:
        return not t.is_floating_point() and not t.is_complex() and tuple(t.shape) == (batch, seqlen)

    def is_hidden(t: torch.Tensor) -> bool:
        return t.is_floating_point() and tuple(t.shape) == (batch, seqlen, d_model)

    if any(is_ids(t) or is_hidden(t) for t in tensors):
        return
    if structure.embeddings:
        vocab = structure.embeddings[0].num_embeddings
        raise ModelLoadError(f"make_inputs({batch}, {seqlen}, ...) returned {described}; the model starts with an "
                             f"embedding (vocabulary {vocab}), which takes integer token ids of shape "
                             f"({batch}, {seqlen})", "return torch.randint(0, vocab, (batch, seqlen), device=device)")
    raise ModelLoadError(f"make_inputs({batch}, {seqlen}, ...) returned {described}; the model has no embedding, "
                         f"so it takes hidden states of shape ({batch}, {seqlen}, {d_model}) (its d_model)",
                         "return a (batch, seqlen, d_model) tensor of the run's dtype")


def first_tensor(output: Any) -> torch.Tensor:
    """The main tensor of a model output: logits / last_hidden_state / first tensor found."""
    if isinstance(output, torch.Tensor):
        return output
    for attr in ("logits", "last_hidden_state"):
        value = getattr(output, attr, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, dict):
        values: Any = output.values()
    elif isinstance(output, (tuple, list)):
        values = output
    else:
        values = getattr(output, "__dict__", {}).values()
    for value in values:
        if isinstance(value, torch.Tensor):
            return value
    raise ModelLoadError(f"the model returned {type(output).__name__} with no tensor in it",
                         "return a tensor (or an object with .logits)")


@dataclass
class OutputCheck:
    """Split-vs-original output comparison: errors are unitless, relative to max|original|."""

    passed: bool
    max_abs_err: float
    rel_err: float
    tolerance: float


def compare_outputs(reference: Any, candidate: Any, dtype: torch.dtype) -> OutputCheck:
    """Compare two model outputs with the tolerance for `dtype`.

    Works through the outputs in slices so that large logits are never upcast whole.
    """
    ref = first_tensor(reference).detach()
    cand = first_tensor(candidate).detach()
    tol = TOLERANCE.get(dtype, 1e-2)
    if ref.shape != cand.shape:
        return OutputCheck(False, float("inf"), float("inf"), tol)
    if ref.numel() == 0:
        return OutputCheck(True, 0.0, 0.0, tol)
    flat_ref, flat_cand = ref.reshape(-1), cand.reshape(-1)
    step = 1 << 24
    max_abs = scale = 0.0
    finite = True
    for start in range(0, flat_ref.numel(), step):
        r = flat_ref[start:start + step].float()
        c = flat_cand[start:start + step].float()
        finite = finite and bool(torch.isfinite(c).all())
        max_abs = max(max_abs, float((r - c).abs().max()))
        scale = max(scale, float(r.abs().max()))
    rel = max_abs / scale if scale > 0 else max_abs
    return OutputCheck(finite and rel <= tol, max_abs, rel, tol)


def no_grad_call(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Wrap a forward so it runs under torch.inference_mode()."""

    def run() -> Any:
        with torch.inference_mode():
            return fn()

    return run
