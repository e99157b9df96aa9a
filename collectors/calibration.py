"""Measure the present device's copy bandwidth and GEMM throughput (`mambaprof calibrate`).

Measured, not looked up: a device-to-device copy of a large random tensor (bytes read + written per
second) and square random GEMMs per dtype (2n^3 FLOP per GEMM), each timed with CUDA events on a GPU
or perf_counter on the CPU (`mambaprof.collectors.timing.ForwardTimer`), after warm-up; the rate is
that of the fastest repeat (the median is recorded beside it). `mambaprof.reports.calibration` stores
the result where reports find it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mambaprof.collectors.timing import ForwardTimer
from mambaprof.env import collect_env


@dataclass(frozen=True)
class Measurement:
    """One calibration measurement: what, its size, the median and best time (ms), and the rate of the best
    repeat (noise only ever slows a repeat down, so the fastest is the closest to what the device can do)."""

    what: str
    size: str
    median_ms: float
    best_ms: float
    rate: float
    unit: str


def _median_ms(fn: Callable[[], Any], device: Any, warmup: int, repeats: int) -> tuple[float, float]:
    timer = ForwardTimer(device)
    for _ in range(warmup):
        timer.time(fn)
    times = [timer.time(fn)[0] for _ in range(repeats)]
    return statistics.median(times), min(times)


def measure_copy(device: Any, nbytes: int, warmup: int = 3, repeats: int = 10) -> Measurement:
    """Copy bandwidth in GB/s: dst.copy_(src) of a random tensor of `nbytes`, counting read + write."""
    n = max(1, nbytes // 4)
    src = torch.randn(n, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    med, best = _median_ms(lambda: dst.copy_(src), device, warmup, repeats)
    moved = 2.0 * n * 4
    return Measurement("copy", f"{n * 4 / 2**20:.0f} MiB", med, best, moved / (best * 1e-3) / 1e9, "GB/s")


def measure_gemm(device: Any, dtype: str, n: int, warmup: int = 3, repeats: int = 10) -> Measurement:
    """GEMM throughput in TFLOP/s: (n x n) @ (n x n) of random values in `dtype`, 2n^3 FLOP each."""
    tdtype = getattr(torch, dtype)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=tdtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=tdtype)
    out = torch.empty(n, n, device=device, dtype=tdtype)
    med, best = _median_ms(lambda: torch.matmul(a, b, out=out), device, warmup, repeats)
    return Measurement(f"gemm {dtype}", f"n={n}", med, best,
                       2.0 * n**3 / (best * 1e-3) / 1e12, "TFLOP/s")


def default_plan(device_type: str) -> tuple[int, dict[str, int]]:
    """(copy bytes, {dtype: GEMM size}) that run in seconds on the device type."""
    if device_type == "cuda":
        return 1 << 30, {"bfloat16": 8192, "float16": 8192, "float32": 4096}
    return 1 << 27, {"float32": 1024}


def calibrate(device: Any, dtypes: list[str] | None = None, quick: bool = False,
              progress: Callable[[str], None] | None = None) -> tuple[str, list[Measurement]]:
    """Measure `device` (a torch.device): copy bandwidth (GB/s) and GEMM TFLOP/s for each dtype (canonical torch
    names, e.g. `bfloat16`; default: bf16, fp16, fp32 on a GPU, fp32 on the CPU).

    quick: smaller sizes and fewer repeats (for tests); the numbers are then lower bounds.
    Returns the device's name and the individual measurements (the copy first).
    """
    copy_bytes, sizes = default_plan(device.type)
    if dtypes:
        sizes = {d: sizes.get(d, 4096 if device.type == "cuda" else 1024) for d in dtypes}
    warmup, repeats = (1, 3) if quick else (3, 10)
    if quick:
        copy_bytes = min(copy_bytes, 1 << 24)
        sizes = {d: min(n, 256) for d, n in sizes.items()}
    name = collect_env(str(device)).device_name
    measurements: list[Measurement] = []
    if progress:
        progress("copy bandwidth")
    measurements.append(measure_copy(device, copy_bytes, warmup, repeats))
    for dtype, n in sizes.items():
        if progress:
            progress(f"GEMM {dtype} n={n}")
        measurements.append(measure_gemm(device, dtype, n, warmup, repeats))
    return name, measurements
