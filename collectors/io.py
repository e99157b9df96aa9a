"""I/O collector: host<->device copies and PCIe traffic of one explicit run, by phase.

The point's inputs are copied to host memory first (pageable, as a data loader would hand them
over). One run then times three phases, each ending with a device synchronisation and marked by
a `mambaprof/io/<phase>` profiler range: `upload` (inputs to the device), `forward` (the model's
own forward; copies it makes itself, e.g. scalars or index tensors), `download` (the output's
main tensor back to the host). torch.profiler's memcpy events give copies, bytes and device time,
placed in a phase by the host time of the call that launched them (`attribute_copies`, tested on
the CPU with synthetic events). The GPU's cumulative PCIe byte counters are read at the phase
boundaries, and the NVML samples that fell inside each phase give mean PCIe throughput.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.autograd import DeviceType
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile
from torch.utils._pytree import tree_map

from mambaprof.collectors.context import PointContext
from mambaprof.collectors.gpu_device import DeviceError, GPUDevice, NullDevice, counter_delta, unwrap_counter
from mambaprof.collectors.nvml import NvmlSampler
from mambaprof.collectors.profiler import device_events_of, quiet_native_stderr
from mambaprof.collectors.rows import guarded, point_identity
from mambaprof.model.inputs import first_tensor

PHASES = ("upload", "forward", "download")
RANGE_PREFIX = "mambaprof/io/"
Row = dict[str, Any]


@dataclass
class Copy:
    """One memcpy activity: direction, host launch time and device time (us from the trace start), bytes."""

    kind: str  # h2d | d2h | d2d
    launch_us: float | None
    start_us: float
    duration_us: float
    nbytes: int | None  # None: the profiler did not record it


@dataclass
class PhaseIO:
    """Copies of one phase, by direction."""

    h2d_bytes: int = 0
    d2h_bytes: int = 0
    d2d_bytes: int = 0
    h2d_count: int = 0
    d2h_count: int = 0
    d2d_count: int = 0
    h2d_us: float = 0.0
    d2h_us: float = 0.0
    memcpy_us: float = 0.0
    unknown_bytes: int = 0

    def add(self, c: Copy) -> None:
        """Count one copy."""
        if c.nbytes is None:
            self.unknown_bytes += 1
        else:
            setattr(self, f"{c.kind}_bytes", getattr(self, f"{c.kind}_bytes") + c.nbytes)
        setattr(self, f"{c.kind}_count", getattr(self, f"{c.kind}_count") + 1)
        if c.kind in ("h2d", "d2h"):
            setattr(self, f"{c.kind}_us", getattr(self, f"{c.kind}_us") + c.duration_us)
        self.memcpy_us += c.duration_us


def copy_kind(name: str) -> str | None:
    """h2d / d2h / d2d from a profiler memcpy name (`Memcpy HtoD (Pageable -> Device)`); None otherwise."""
    if not name.startswith("Memcpy"):
        return None
    for tag, kind in (("HtoD", "h2d"), ("DtoH", "d2h"), ("DtoD", "d2d"), ("PtoP", "d2d")):
        if tag in name:
            return kind
    return None


def attribute_copies(copies: Sequence[Copy],
                     phases: Sequence[tuple[str, float, float]]) -> tuple[dict[str, PhaseIO], int]:
    """Place each copy in the phase whose host range holds its launch (its device start when the launch
    was not recorded). Returns per-phase totals and the number of copies outside every phase."""
    out = {name: PhaseIO() for name, _, _ in phases}
    outside = 0
    for c in copies:
        t = c.launch_us if c.launch_us is not None else c.start_us
        for name, start, end in phases:
            if start <= t <= end:
                out[name].add(c)
                break
        else:
            outside += 1
    return out, outside


def _kineto_bytes(ev: Any) -> int | None:
    """Bytes of a memcpy activity from the Kineto event (its nbytes, else its metadata), if recorded."""
    try:
        n = int(ev.nbytes())
    except Exception:  # noqa: BLE001 - older bindings
        n = 0
    if n > 0:
        return n
    try:
        text = ev.metadata_json()
        meta = json.loads("{" + text + "}") if text else {}
    except (ValueError, TypeError, AttributeError):
        meta = {}
    value = meta.get("bytes")
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


def trace_memcpy_bytes(trace: dict[str, Any]) -> list[int]:
    """Bytes of every memcpy in a Chrome trace (torch.profiler export), in start order."""
    events = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X" and str(e.get("name", "")).startswith(
        "Memcpy") and "bytes" in (e.get("args") or {})]
    events.sort(key=lambda e: float(e.get("ts", 0.0)))
    return [int(e["args"]["bytes"]) for e in events]


def profiled_copies(prof: Any) -> list[Copy]:
    """The memcpy activities of a finished torch.profiler run, with their bytes (from the Kineto events,
    else from the exported Chrome trace, matched in start order)."""
    results = getattr(getattr(prof, "profiler", None), "kineto_results", None)
    if results is None:
        return []
    t0 = results.trace_start_ns()
    nbytes: dict[tuple[str, float], int | None] = {}
    for ev in results.events():
        if ev.device_type() != DeviceType.CPU and ev.name().startswith("Memcpy"):
            nbytes[(ev.name(), round((ev.start_ns() - t0) / 1e3, 1))] = _kineto_bytes(ev)
    copies = []
    for d in sorted(device_events_of(prof), key=lambda d: d.start_us):
        kind = copy_kind(d.name)
        if kind is not None:
            size = nbytes.get((d.name, round(d.start_us, 1)))
            copies.append(Copy(kind, d.launch_us, d.start_us, d.duration_us, size))
    if any(c.nbytes is None for c in copies):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "trace.json"
            prof.export_chrome_trace(str(path))
            sizes = trace_memcpy_bytes(json.loads(path.read_text()))
        if len(sizes) == len(copies):
            for c, n in zip(copies, sizes, strict=True):
                c.nbytes = n
    return copies


def phase_ranges(cpu_events: Sequence[Any]) -> list[tuple[str, float, float]]:
    """(phase, start_us, end_us) of the `mambaprof/io/<phase>` ranges among profiler CPU events."""
    out = []
    for e in cpu_events:
        if e.name.startswith(RANGE_PREFIX):
            out.append((e.name[len(RANGE_PREFIX):], float(e.time_range.start), float(e.time_range.end)))
    return out


def integrated_bytes(samples: list[Row], rate_key: str) -> float | None:
    """Bytes from consecutive samples' rates (bytes/s) times their spacing (host_ns); None with fewer than
    two rated samples. Each rate covers the interval up to its own sample, so the first is left out."""
    total, have = 0.0, False
    for prev, cur in zip(samples, samples[1:], strict=False):
        rate = cur.get(rate_key)
        if rate is not None:
            total += rate * (cur["host_ns"] - prev["host_ns"]) / 1e9
            have = True
    return total if have else None


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


class IOCollector:
    """PointCollector: the `io` table."""

    def __init__(self, device: GPUDevice | None = None, sampler: NvmlSampler | None = None,
                 clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self.device = device or NullDevice("no device given")
        self.sampler = sampler
        self.clock = clock

    def _phase(self, phase: str) -> None:
        if self.sampler is not None:
            self.sampler.set_phase(phase)

    def _pcie(self) -> tuple[int, int] | None:
        try:
            return self.device.pcie_counters_bytes()
        except DeviceError:
            return None

    def _explicit_run(self, ctx: PointContext, host_args: Any, host_kwargs: Any) -> list[Row]:
        """upload -> forward -> download, each phase ending with a synchronisation; host windows per phase."""
        dev = ctx.spec.device
        marks: list[Row] = []

        def to_device(x: Any) -> Any:
            return x.to(dev) if isinstance(x, torch.Tensor) else x

        def sync() -> None:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)

        state: dict[str, Any] = {}

        def upload() -> None:
            state["args"], state["kwargs"] = tree_map(to_device, host_args), tree_map(to_device, host_kwargs)

        def forward() -> None:
            with torch.inference_mode():
                state["out"] = ctx.call.model(*state["args"], **state["kwargs"])

        def download() -> None:
            state["host"] = first_tensor(state.pop("out")).to("cpu")

        sync()
        for name, fn in (("upload", upload), ("forward", forward), ("download", download)):
            self._phase(f"io/{name}")
            counters = self._pcie()
            start = self.clock()
            with record_function(RANGE_PREFIX + name):
                fn()
                sync()
            end = self.clock()
            after = self._pcie()
            mark: Row = {"phase": name, "start_ns": start, "end_ns": end}
            if counters is not None and after is not None:
                mark["pcie_tx_bytes"] = counter_delta(counters[0], after[0])
                mark["pcie_rx_bytes"] = counter_delta(counters[1], after[1])
            marks.append(mark)
        state.clear()
        return marks

    @guarded("io")
    def measure_point(self, ctx: PointContext, point_row: Row) -> dict[str, list[Row]]:
        """One warm-up and one profiled explicit run; a row per phase."""
        dev = ctx.spec.device
        ident = point_identity(point_row)

        def to_host(x: Any) -> Any:
            return x.detach().to("cpu") if isinstance(x, torch.Tensor) else x

        host_args, host_kwargs = tree_map(to_host, ctx.call.args), tree_map(to_host, ctx.call.kwargs)
        self._explicit_run(ctx, host_args, host_kwargs)  # warm-up (allocator, pageable staging)
        on_gpu = dev.type == "cuda"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
        with quiet_native_stderr():
            prof = profile(activities=activities)
            prof.__enter__()
        try:
            marks = self._explicit_run(ctx, host_args, host_kwargs)
        finally:
            with quiet_native_stderr():
                prof.__exit__(None, None, None)
        self._phase("io/done")
        per, outside = attribute_copies(profiled_copies(prof) if on_gpu else [],
                                        phase_ranges([e for e in prof.events() if e.device_type == DeviceType.CPU]))
        rows = []
        for mark in marks:
            row: Row = {**ident, "phase": mark["phase"], "phase_ms": (mark["end_ns"] - mark["start_ns"]) / 1e6,
                        "pcie_tx_bytes": mark.get("pcie_tx_bytes"), "pcie_rx_bytes": mark.get("pcie_rx_bytes")}
            if on_gpu:
                io = per.get(mark["phase"], PhaseIO())
                row.update(h2d_bytes=io.h2d_bytes, d2h_bytes=io.d2h_bytes, d2d_bytes=io.d2d_bytes,
                           h2d_count=io.h2d_count, d2h_count=io.d2h_count, d2d_count=io.d2d_count,
                           memcpy_us=io.memcpy_us,
                           h2d_bytes_per_s=io.h2d_bytes / (io.h2d_us / 1e6) if io.h2d_us > 0 else None,
                           d2h_bytes_per_s=io.d2h_bytes / (io.d2h_us / 1e6) if io.d2h_us > 0 else None)
                notes = [f"{outside} copies fell outside every phase"] if outside else []
                if io.unknown_bytes:
                    notes.append(f"{io.unknown_bytes} copies without a byte count: bytes are a lower bound")
                row["note"] = "; ".join(notes) or None
            else:
                row["note"] = f"device is {dev}: no host-device transfers to measure"
            if self.sampler is not None:
                samples = self.sampler.take(mark["start_ns"], mark["end_ns"])
                row["nvml_samples"] = len(samples)
                row["pcie_tx_bytes_per_s_mean"] = _mean([s["pcie_tx_bytes_per_s"] for s in samples
                                                         if s.get("pcie_tx_bytes_per_s") is not None])
                row["pcie_rx_bytes_per_s_mean"] = _mean([s["pcie_rx_bytes_per_s"] for s in samples
                                                         if s.get("pcie_rx_bytes_per_s") is not None])
                # the phase's two counter readings only know the bytes modulo the counter's wrap (4 GiB):
                # a long download wraps it several times; the 10 ms samples' rates say how many
                for key in ("pcie_tx_bytes", "pcie_rx_bytes"):
                    row[key] = unwrap_counter(row[key], integrated_bytes(samples, f"{key}_per_s"))
            rows.append(row)
        return {"io": rows}
