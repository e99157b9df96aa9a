"""`mambaprof calibrate`: measure the present device's copy bandwidth and GEMM throughput, and store
them where reports find them.

Measured, not looked up: a device-to-device copy of a large random tensor (bytes read + written per
second) and square random GEMMs per dtype (2n^3 FLOP per GEMM), each timed with CUDA events on a GPU
or perf_counter on the CPU (`mambaprof.collectors.timing.ForwardTimer`), after warm-up; the rate is
that of the fastest repeat (the median is recorded beside it). Results are stored per device name
in `peaks.json` in the user config directory (`$MAMBAPROF_CONFIG_DIR`, else
`$XDG_CONFIG_HOME/mambaprof`, else `~/.config/mambaprof`); a report over a run from a device of that
name uses them (an explicit `--peaks FILE` wins).
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mambaprof.errors import MambaprofError
from mambaprof.reports.peaks import DevicePeaks, canonical_dtype, peaks_from_dict

PEAKS_FILE = "peaks.json"


def config_dir() -> Path:
    """Folder of mambaprof's user configuration (see the module docstring for the order)."""
    if os.environ.get("MAMBAPROF_CONFIG_DIR"):
        return Path(os.environ["MAMBAPROF_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mambaprof"


def calibration_path() -> Path:
    """The JSON file calibrations are stored in."""
    return config_dir() / PEAKS_FILE


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
    from mambaprof.collectors.timing import ForwardTimer

    timer = ForwardTimer(device)
    for _ in range(warmup):
        timer.time(fn)
    times = [timer.time(fn)[0] for _ in range(repeats)]
    return statistics.median(times), min(times)


def measure_copy(device: Any, nbytes: int, warmup: int = 3, repeats: int = 10) -> Measurement:
    """Copy bandwidth in GB/s: dst.copy_(src) of a random tensor of `nbytes`, counting read + write."""
    import torch

    n = max(1, nbytes // 4)
    src = torch.randn(n, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    med, best = _median_ms(lambda: dst.copy_(src), device, warmup, repeats)
    moved = 2.0 * n * 4
    return Measurement("copy", f"{n * 4 / 2**20:.0f} MiB", med, best, moved / (best * 1e-3) / 1e9, "GB/s")


def measure_gemm(device: Any, dtype: str, n: int, warmup: int = 3, repeats: int = 10) -> Measurement:
    """GEMM throughput in TFLOP/s: (n x n) @ (n x n) of random values in `dtype`, 2n^3 FLOP each."""
    import torch

    tdtype = getattr(torch, canonical_dtype(dtype))
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=tdtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=tdtype)
    out = torch.empty(n, n, device=device, dtype=tdtype)
    med, best = _median_ms(lambda: torch.matmul(a, b, out=out), device, warmup, repeats)
    return Measurement(f"gemm {canonical_dtype(dtype)}", f"n={n}", med, best,
                       2.0 * n**3 / (best * 1e-3) / 1e12, "TFLOP/s")


def default_plan(device_type: str) -> tuple[int, dict[str, int]]:
    """(copy bytes, {dtype: GEMM size}) that run in seconds on the device type."""
    if device_type == "cuda":
        return 1 << 30, {"bfloat16": 8192, "float16": 8192, "float32": 4096}
    return 1 << 27, {"float32": 1024}


def calibrate(device: Any, dtypes: list[str] | None = None, quick: bool = False,
              progress: Callable[[str], None] | None = None) -> tuple[DevicePeaks, list[Measurement]]:
    """Measure `device` (a torch.device): copy bandwidth and GEMM TFLOP/s for each dtype.

    quick: smaller sizes and fewer repeats (for tests); the numbers are then lower bounds.
    Returns the peaks (kind `calibrated`) and the individual measurements.
    """
    from mambaprof.env import collect_env

    copy_bytes, sizes = default_plan(device.type)
    if dtypes:
        sizes = {canonical_dtype(d): sizes.get(canonical_dtype(d), 4096 if device.type == "cuda" else 1024)
                 for d in dtypes}
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
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    peaks = DevicePeaks(
        name=name, tflop_per_s={m.what.split()[1]: m.rate for m in measurements if m.what.startswith("gemm")},
        gb_per_s=measurements[0].rate, source=f"mambaprof calibrate on {stamp}", kind="calibrated")
    return peaks, measurements


def _read_store(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"devices": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise MambaprofError(f"calibration file {path} is unreadable: {exc}".splitlines()[0],
                             "delete it and run `mambaprof calibrate` again") from None
    if not isinstance(data, dict) or not isinstance(data.get("devices"), dict):
        raise MambaprofError(f"calibration file {path} has no `devices` object",
                             "delete it and run `mambaprof calibrate` again")
    return data


def store_calibration(peaks: DevicePeaks, measurements: list[Measurement], path: Path | None = None) -> Path:
    """Save `peaks` under its device name in the calibration file (other devices are kept)."""
    path = path or calibration_path()
    data = _read_store(path)
    data["devices"][peaks.name] = {
        "name": peaks.name, "tflop_per_s": peaks.tflop_per_s, "gb_per_s": peaks.gb_per_s, "source": peaks.source,
        "measurements": [m.__dict__ for m in measurements],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return path


def load_calibration(device_name: str | None, path: Path | None = None) -> DevicePeaks | None:
    """The stored calibration of the device called `device_name`, or None."""
    if not device_name:
        return None
    path = path or calibration_path()
    entry = _read_store(path)["devices"].get(device_name)
    if entry is None:
        return None
    return peaks_from_dict(entry, source=str(path), kind="calibrated")
