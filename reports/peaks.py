"""Device peaks for the roofline: a table of known GPUs (datasheet numbers, with sources), plus
peaks measured by `mambaprof calibrate` or given in a --peaks file.

Compute peaks are *dense* (no 2:4 sparsity; datasheets print the sparse figure with an asterisk,
twice the dense one). `float32` is the FP32 CUDA-core peak, not TF32: torch runs fp32 matmuls
without TF32 unless `torch.backends.cuda.matmul.allow_tf32` is set. Bandwidth is the memory's
peak (HBM/GDDR) in GB/s (1e9 bytes/s). CPUs have no datasheet entry: a CPU's achievable peaks
depend on cores, clocks and the BLAS, so they come from `mambaprof calibrate` only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mambaprof.errors import BadArgumentError

DTYPES = ("bfloat16", "float16", "float32")
_DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32", "float": "float32"}


def canonical_dtype(name: str) -> str:
    """`bf16`/`torch.bfloat16`/`bfloat16` -> `bfloat16` (likewise fp16, fp32)."""
    key = name.replace("torch.", "").strip().lower()
    return _DTYPE_ALIASES.get(key, key)


@dataclass(frozen=True)
class DevicePeaks:
    """Peaks of one device: dense TFLOP/s per dtype and memory bandwidth in GB/s, and where they come from.

    kind: `datasheet` (the known-GPU table), `calibrated` (`mambaprof calibrate`) or `file` (--peaks).
    """

    name: str
    tflop_per_s: dict[str, float]
    gb_per_s: float | None
    source: str
    kind: str = "datasheet"
    patterns: tuple[str, ...] = field(default=(), compare=False)

    def tflops(self, dtype: str) -> float | None:
        """Peak TFLOP/s for `dtype` (None when unknown for that dtype)."""
        return self.tflop_per_s.get(canonical_dtype(dtype))

    def ridge(self, dtype: str) -> float | None:
        """The roofline ridge in FLOP/byte: peak FLOP/s / peak bytes/s (None when either is unknown)."""
        tf = self.tflops(dtype)
        if tf is None or not self.gb_per_s:
            return None
        return tf * 1e12 / (self.gb_per_s * 1e9)

    def describe(self) -> str:
        """One line naming the peaks and their source, for reports."""
        return f"{self.name} ({self.kind}: {self.source})"


def _gpu(name: str, patterns: tuple[str, ...], bf16: float, fp16: float, fp32: float, gbs: float,
         source: str) -> DevicePeaks:
    return DevicePeaks(name=name, tflop_per_s={"bfloat16": bf16, "float16": fp16, "float32": fp32}, gb_per_s=gbs,
                       source=source, kind="datasheet", patterns=patterns)


_H100 = "NVIDIA H100 datasheet, https://www.nvidia.com/en-us/data-center/h100/"
_H200 = "NVIDIA H200 datasheet, https://www.nvidia.com/en-us/data-center/h200/"
_A100 = ("NVIDIA A100 datasheet, https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/"
         "nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf")
_ADA = ("NVIDIA Ada Lovelace architecture whitepaper (BF16/FP16 tensor with FP32 accumulate), "
        "https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf")

#: Known GPUs, most specific pattern first (names as torch.cuda.get_device_name() prints them).
KNOWN_GPUS: tuple[DevicePeaks, ...] = (
    _gpu("H100 NVL", (r"H100 NVL",), 835.0, 835.0, 60.0, 3900.0, _H100),
    _gpu("H100 PCIe", (r"H100 PCIe",), 756.0, 756.0, 51.0, 2000.0, _H100),
    _gpu("H100 SXM", (r"H100 80GB HBM3", r"H100 SXM", r"H100$"), 989.0, 989.0, 67.0, 3350.0, _H100),
    _gpu("H200 NVL", (r"H200 NVL",), 835.0, 835.0, 60.0, 4800.0, _H200),
    _gpu("H200 SXM", (r"H200",), 989.0, 989.0, 67.0, 4800.0, _H200),
    _gpu("A100 80GB PCIe", (r"A100 80GB PCIe", r"A100-PCIE-80GB"), 312.0, 312.0, 19.5, 1935.0, _A100),
    _gpu("A100 80GB SXM", (r"A100-SXM4?-80GB", r"A100 80GB"), 312.0, 312.0, 19.5, 2039.0, _A100),
    _gpu("A100 40GB", (r"A100-(SXM4?|PCIE)-40GB", r"A100 40GB", r"A100$"), 312.0, 312.0, 19.5, 1555.0, _A100),
    _gpu("L40S", (r"L40S",), 362.05, 362.05, 91.6, 864.0,
         "NVIDIA L40S datasheet, https://www.nvidia.com/en-us/data-center/l40s/"),
    _gpu("L40", (r"L40$", r"L40 ",), 181.05, 181.05, 90.5, 864.0,
         "NVIDIA L40 datasheet, https://www.nvidia.com/en-us/data-center/l40/"),
    _gpu("L4", (r"\bL4$", r"\bL4 "), 121.0, 121.0, 30.3, 300.0,
         "NVIDIA L4 datasheet, https://www.nvidia.com/en-us/data-center/l4/"),
    _gpu("A10", (r"\bA10$", r"\bA10 ",), 125.0, 125.0, 31.2, 600.0,
         "NVIDIA A10 datasheet, https://www.nvidia.com/en-us/data-center/products/a10-gpu/"),
    _gpu("RTX 4090", (r"RTX 4090",), 165.2, 165.2, 82.6, 1008.0, _ADA),
    DevicePeaks("V100", {"float16": 125.0, "float32": 15.7}, 900.0,
                "NVIDIA V100 datasheet (SXM2; no bf16), https://images.nvidia.com/content/technologies/volta/pdf/"
                "volta-v100-datasheet-update-us-1165301-r5.pdf", patterns=(r"V100",)),
    DevicePeaks("T4", {"float16": 65.0, "float32": 8.1}, 320.0,
                "NVIDIA T4 datasheet (no bf16), https://www.nvidia.com/en-us/data-center/tesla-t4/",
                patterns=(r"\bT4\b",)),
)


def lookup_known(device_name: str | None) -> DevicePeaks | None:
    """The datasheet entry whose pattern matches `device_name` (e.g. `NVIDIA H100 80GB HBM3`), else None."""
    if not device_name:
        return None
    for entry in KNOWN_GPUS:
        if any(re.search(p, device_name.strip()) for p in entry.patterns):
            return entry
    return None


def peaks_from_dict(data: dict[str, Any], source: str, kind: str) -> DevicePeaks:
    """Build peaks from a JSON object: {"name", "tflop_per_s": {dtype: value}, "gb_per_s"}.

    Raises BadArgumentError naming what is missing or not a positive number.
    """
    if not isinstance(data, dict):
        raise BadArgumentError(f"peaks in {source} must be a JSON object")
    tf = data.get("tflop_per_s")
    if not isinstance(tf, dict) or not tf:
        raise BadArgumentError(f"peaks in {source} have no `tflop_per_s` object",
                               'write e.g. {"name": "my GPU", "tflop_per_s": {"bfloat16": 900}, "gb_per_s": 3000}')
    values: dict[str, float] = {}
    for dtype, value in tf.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise BadArgumentError(f"peaks in {source}: tflop_per_s[{dtype!r}] = {value!r} is not a positive number")
        values[canonical_dtype(str(dtype))] = float(value)
    gbs = data.get("gb_per_s")
    if gbs is not None and (not isinstance(gbs, (int, float)) or isinstance(gbs, bool) or gbs <= 0):
        raise BadArgumentError(f"peaks in {source}: gb_per_s = {gbs!r} is not a positive number")
    return DevicePeaks(name=str(data.get("name") or "unnamed device"), tflop_per_s=values,
                       gb_per_s=None if gbs is None else float(gbs), source=str(data.get("source") or source),
                       kind=kind)


def load_peaks_file(path: Path) -> DevicePeaks:
    """Peaks from a JSON file (the --peaks option): see `peaks_from_dict` for the format."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadArgumentError(f"--peaks {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BadArgumentError(f"--peaks {path} is not readable JSON: {exc}".splitlines()[0]) from None
    return peaks_from_dict(data, source=str(path), kind="file")


def resolve_peaks(device_name: str | None, peaks_file: Path | None = None,
                  calibrated: DevicePeaks | None = None) -> DevicePeaks | None:
    """The peaks a report uses, in order of precedence: an explicit --peaks file, a calibration of this
    device (`mambaprof calibrate`), the known-GPU table; None when nothing matches (e.g. a CPU never
    calibrated)."""
    if peaks_file is not None:
        return load_peaks_file(peaks_file)
    if calibrated is not None:
        return calibrated
    return lookup_known(device_name)
