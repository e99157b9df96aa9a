"""Timing and memory of several model variants, measured interleaved in one run.

Prefill: whole forwards over (batch, seqlen) token ids; every repeat times each model once in turn
(A/B/C..., then again), so drifts in clocks and temperature hit all of them alike. Device time is
CUDA events on GPU and perf_counter on CPU (`ForwardTimer`). Decode: a prompt fills the model's
recurrent cache, then single-token steps are timed the same interleaved way. Memory: the peak GPU
allocation of one forward above what was allocated before it, and the bytes of the decode cache.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mambaprof.collectors.timing import ForwardTimer, synchronize
from mambaprof.evaluation.lm import forward_params, lm_logits
from mambaprof.model.decode import CACHE_NAMES, cache_kwarg, returned_cache


def random_ids(batch: int, seqlen: int, vocab: int, seed: int, device: torch.device) -> torch.Tensor:
    """Token ids drawn from a fixed seed (never all equal), on `device`."""
    gen = torch.Generator().manual_seed(seed * 7919 + batch * 31 + seqlen)
    return torch.randint(0, vocab, (batch, seqlen), generator=gen).to(device)


def interleaved_prefill(models: Sequence[nn.Module], ids: torch.Tensor, repeats: int, warmup: int,
                        device: torch.device) -> list[list[float]]:
    """Milliseconds of each model's forward on `ids`, per repeat: result[model][repeat]."""
    timer = ForwardTimer(device)
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for _ in range(warmup):
            for model in models:
                lm_logits(model, ids)
        synchronize(device)
        for _ in range(repeats):
            for i, model in enumerate(models):
                ms, _, out = timer.time(lambda m=model: lm_logits(m, ids))
                del out
                times[i].append(ms)
    return times


def activation_peak_bytes(model: nn.Module, ids: torch.Tensor, device: torch.device) -> int | None:
    """Peak bytes allocated during one forward above the allocation before it (GPU only, else None)."""
    if device.type != "cuda":
        return None
    gc.collect()
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    with torch.inference_mode():
        out = lm_logits(model, ids)
        synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    del out
    return int(peak - before)


class Decoder:
    """Prompt + one-token steps with a model's own recurrent cache (mamba_ssm or transformers API)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        params = forward_params(model)
        if "inference_params" in params:
            self.api = "mamba_ssm"
        elif ("use_cache" in params or "kwargs" in params) and (set(CACHE_NAMES) & params):
            # use_cache named, or taken through **kwargs (GraniteMoeHybridForCausalLM); the cache under the name
            # the installed transformers uses (hybrids before 5.18 take past_key_values)
            self.api = "transformers"
            self.cache_kwarg = cache_kwarg(model.forward)
            # where the position goes: cache_position (5.18+), else position_ids (hybrids with rotary attention,
            # whose forward otherwise restarts positions at 0), else nowhere (Mamba models need none)
            self.position_kwarg = next((n for n in ("cache_position", "position_ids") if n in params), None)
        else:
            raise ValueError(f"{type(model).__name__} exposes no recurrent cache API (mamba_ssm inference_params "
                             "or transformers use_cache)")
        self.cache: Any = None
        self.position = 0
        self.logits: torch.Tensor | None = None  # logits of the last position after prefill/step

    def prefill(self, prompt: torch.Tensor, max_new: int) -> torch.Tensor:
        """Run the prompt, filling a fresh cache; returns the next token ids (b, 1) (greedy)."""
        batch, length = prompt.shape
        self.position = 0
        if self.api == "mamba_ssm":
            from mamba_ssm.utils.generation import InferenceParams

            self.cache = InferenceParams(max_seqlen=length + max_new, max_batch_size=batch)
            logits = self.model(prompt, inference_params=self.cache).logits
            self.cache.seqlen_offset += length
        else:
            out = self.model(input_ids=prompt, use_cache=True, **self._position(length, batch))
            self.cache = returned_cache(out)
            logits = out.logits
        self.position = length
        self.logits = logits[:, -1]
        return self.logits.argmax(dim=-1, keepdim=True)

    def step(self, token: torch.Tensor) -> torch.Tensor:
        """One decode step for (b, 1) token ids; returns the next ids (b, 1)."""
        if self.api == "mamba_ssm":
            logits = self.model(token, inference_params=self.cache).logits
            self.cache.seqlen_offset += 1
        else:
            out = self.model(input_ids=token, use_cache=True, **{self.cache_kwarg: self.cache},
                             **self._position(1, token.shape[0]))
            cache = returned_cache(out)
            self.cache = self.cache if cache is None else cache
            logits = out.logits
        self.position += 1
        self.logits = logits[:, -1]
        return self.logits.argmax(dim=-1, keepdim=True)

    def _position(self, length: int, batch: int) -> dict[str, Any]:
        if self.api != "transformers" or self.position_kwarg is None:
            return {}
        positions = torch.arange(self.position, self.position + length, device=next(self.model.parameters()).device)
        if self.position_kwarg == "position_ids":
            return {"position_ids": positions.unsqueeze(0).expand(batch, -1)}
        return {"cache_position": positions}

    def cache_tensors(self) -> list[torch.Tensor]:
        """The distinct state tensors held by the cache (conv and SSM states, keys and values of every layer;
        floating-point only: transformers >= 5.25 also keeps int/bool bookkeeping tensors there)."""
        root = self.cache.key_value_memory_dict if self.api == "mamba_ssm" else self.cache
        return [t for t in collect_tensors(root) if t.is_floating_point()]


def collect_tensors(obj: Any, depth: int = 5) -> list[torch.Tensor]:
    """Distinct tensors reachable from obj through dicts, lists, tuples and object attributes."""
    found: dict[tuple[int, int], torch.Tensor] = {}
    seen: set[int] = set()

    def walk(o: Any, d: int) -> None:
        if isinstance(o, torch.Tensor):
            found.setdefault((o.untyped_storage().data_ptr(), o.storage_offset()), o)
            return
        if d < 0 or id(o) in seen or isinstance(o, (str, bytes, int, float, bool, type(None), nn.Module)):
            return
        seen.add(id(o))
        if isinstance(o, dict):
            items: Any = o.values()
        elif isinstance(o, (list, tuple, set)):
            items = o
        else:
            items = getattr(o, "__dict__", {}).values()
        for item in items:
            walk(item, d - 1)

    walk(obj, depth)
    return list(found.values())


@dataclass
class DecodeResult:
    """Per-model decode timings: ms per step, per repeat; cache bytes after the prompt."""

    ms_per_token: list[list[float]]
    cache_bytes: list[int]


def interleaved_decode(models: Sequence[nn.Module], prompt: torch.Tensor, steps: int, repeats: int,
                       warmup: int, device: torch.device) -> DecodeResult:
    """Decode `steps` tokens after `prompt` with each model, interleaved per repeat.

    Each repeat re-fills the cache with the prompt (untimed), then times the steps as one span;
    ms_per_token = span / steps.
    """
    decoders = [Decoder(m) for m in models]
    timer = ForwardTimer(device)
    times: list[list[float]] = [[] for _ in models]
    cache_bytes = [0] * len(models)

    def run(dec: Decoder, token: torch.Tensor) -> torch.Tensor:
        for _ in range(steps):
            token = dec.step(token)
        return token

    with torch.inference_mode():
        for r in range(warmup + repeats):
            for i, dec in enumerate(decoders):
                token = dec.prefill(prompt, steps)
                if r == 0:
                    cache_bytes[i] = sum(t.numel() * t.element_size() for t in dec.cache_tensors())
                ms, _, _ = timer.time(lambda d=dec, t=token: run(d, t))
                if r >= warmup:
                    times[i].append(ms / steps)
    return DecodeResult(times, cache_bytes)


def median(values: Sequence[float]) -> float | None:
    """Median, or None for no values."""
    return statistics.median(values) if values else None


@dataclass
class GraphDecodeResult:
    """Per batch: per model, ms per decode step replayed from a CUDA graph, one value per repeat."""

    batches: list[int]
    ms_per_token: dict[int, list[list[float]]]


def interleaved_graph_decode(models: Sequence[nn.Module], prompt_len: int, batches: Sequence[int], steps: int,
                             repeats: int, warmup: int, device: torch.device, vocab: int, seed: int = 0
                             ) -> GraphDecodeResult:
    """The decode step of each model captured as one CUDA graph (mambaprof.model.decode's split step, the same
    kernels as the model's own step) at each batch, timed as a greedy loop (token copy, replay, argmax) of
    `steps` steps per repeat, the models interleaved within each repeat. A batch that does not fit is left out
    (its list stays empty). ms per token = loop time / steps."""
    from mambaprof.collectors import graphs
    from mambaprof.model.decode import decode_step_for
    from mambaprof.model.structure import discover

    out: dict[int, list[list[float]]] = {}
    done: list[int] = []
    for batch in batches:
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, vocab, (batch, prompt_len), generator=g).to(device)
        bodies = []
        steppers = []
        try:
            with torch.inference_mode():
                for model in models:
                    stepper = decode_step_for(model, discover(model), batch, prompt_len + 8)
                    first = stepper.prefill(ids).argmax(-1, keepdim=True)
                    stepper.token.copy_(first)
                    graph = graphs.capture(lambda s=stepper: s.split_step(), warmup=max(warmup, 2))
                    logits = stepper.ctx["logits"]
                    state = {"tok": first}

                    def body(s: Any = stepper, gr: Any = graph, lg: torch.Tensor = logits,
                             st: dict[str, torch.Tensor] = state) -> None:
                        s.token.copy_(st["tok"])
                        gr.replay()
                        st["tok"] = lg.argmax(-1, keepdim=True)

                    steppers.append((stepper, graph))
                    bodies.append(body)
                times: list[list[float]] = [[] for _ in models]
                for r in range(warmup + repeats):
                    for i, body in enumerate(bodies):
                        ms = graphs.time_loop(body, steps, device, warmup=1)
                        if r >= warmup:
                            times[i].append(ms)
        except torch.cuda.OutOfMemoryError:
            times = [[] for _ in models]
        finally:
            for stepper, _graph in steppers:
                stepper.release()
            del bodies, steppers
            torch.cuda.empty_cache()
        out[batch] = times
        done.append(batch)
    return GraphDecodeResult(done, out)
