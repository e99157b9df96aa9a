"""torch.profiler collector: record forwards, write the TensorBoard trace, attribute every kernel.

On GPU every device event (kernel, memcpy, memset) is linked by the profiler to the CPU operator
that launched it; walking that operator's parents up to the innermost `mambaprof/...` range gives
the window, and the window gives the component (see `attribute`). On CPU the units are the
operators' self times (each op minus its children), attributed the same way.

Communication (NCCL kernels, c10d operators and whatever runs under them, gloo's collectives on
its own threads) goes to the `communication` component by name, wherever it runs; its layer is
that of the range it was launched in (-1 outside the blocks).
"""

from __future__ import annotations

import bisect
import os
import re
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

from mambaprof.collectors.kernel_rules import attribute_mixer_kernels, is_communication
from mambaprof.collectors.markers import BLOCK, FORWARD, MIXER, Window, parse_range
from mambaprof.taxonomy import BY_NAME, MODEL_LAYER


@dataclass
class KernelEvent:
    """One kernel (GPU) or operator self time (CPU) of a profiled forward. Times in microseconds."""

    iteration: int
    seq: int
    name: str
    layer: int
    component: str
    attribution: str
    range_name: str | None
    device_type: str
    device_index: int
    start_us: float
    duration_us: float


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence native (C++) writes to stderr for a moment: kineto prints `USDT: profiler_start/stop`
    lines on every start and stop that would break the progress display. Python's own stderr
    (and anything the model prints between these calls) is unaffected."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@dataclass
class DeviceEvent:
    """A device activity (kernel, memcpy, memset) from the raw Kineto results. Times in us, relative
    to the trace start (the same origin as the FunctionEvents' time ranges).

    launch_us: host time of the CUDA runtime/driver call that launched it (cudaLaunchKernel,
    cuLaunchKernel, cudaMemcpyAsync...), matched by CUDA correlation id; None if not recorded.
    linked_id: correlation id of the PyTorch op the profiler linked it to (0 if none).
    """

    name: str
    device_index: int
    start_us: float
    duration_us: float
    linked_id: int
    launch_us: float | None = None


@dataclass
class Recording:
    """What one profiled run gives attribution: CPU FunctionEvents and the device activities."""

    cpu_events: list[Any]
    device_events: list[DeviceEvent]


_LAUNCH_API = re.compile(r"^cu(da)?[A-Z]\w*$")


def is_device_activity(ev: Any) -> bool:
    """True for real device work (kernels, copies, sets); False for Kineto's GPU-side copies of
    user annotations (`gpu_user_annotation`, e.g. our `mambaprof/...` ranges or `ProfilerStep#N`),
    which span other kernels and would count their time twice."""
    activity = str(getattr(ev, "activity_type", lambda: "")() or "")
    if "user_annotation" in activity:
        return False
    if getattr(ev, "is_user_annotation", lambda: False)() or getattr(ev, "is_hidden_event", lambda: False)():
        return False
    name = ev.name()
    return parse_range(name) is None and not name.startswith("ProfilerStep#")


def device_events_of(prof: Any) -> list[DeviceEvent]:
    """Device activities with their launch times and links, from the profiler's raw Kineto results.

    Kernels launched straight from a C++ extension or Triton inside a marker range (the selective
    scan, the SSD kernels) have no PyTorch op to link to, so the launch call's host time is what
    places them in a range.
    """
    results = getattr(getattr(prof, "profiler", None), "kineto_results", None)
    if results is None:
        return []
    t0 = results.trace_start_ns()
    events = list(results.events())
    launches: dict[int, float] = {}
    for ev in events:
        if ev.device_type() == DeviceType.CPU and _LAUNCH_API.match(ev.name()):
            launches.setdefault(int(ev.correlation_id()), (ev.start_ns() - t0) / 1e3)
    out = []
    for ev in events:
        if ev.device_type() == DeviceType.CPU or not is_device_activity(ev):
            continue
        out.append(DeviceEvent(name=ev.name(), device_index=int(ev.device_index()),
                               start_us=(ev.start_ns() - t0) / 1e3, duration_us=ev.duration_ns() / 1e3,
                               linked_id=int(ev.linked_correlation_id()),
                               launch_us=launches.get(int(ev.correlation_id()))))
    return out


def record(fn: Callable[[], Any], device: torch.device, iterations: int, trace_dir: Path | None,
           worker_name: str, profile_memory: bool = False) -> Recording:
    """Run `fn` 1 + `iterations` times under torch.profiler (the first is the profiler's warm-up).

    Returns the recorded iterations' CPU events and device activities; writes a gzipped Chrome /
    TensorBoard trace to `trace_dir` when given.
    """
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    captured: dict[str, Any] = {}
    tb_handler = (tensorboard_trace_handler(str(trace_dir), worker_name=worker_name, use_gzip=True)
                  if trace_dir is not None else None)

    def on_ready(prof: Any) -> None:
        if tb_handler is not None:
            tb_handler(prof)
        captured["cpu"] = [e for e in prof.events() if e.device_type == DeviceType.CPU]
        captured["device"] = device_events_of(prof) if device.type == "cuda" else []

    prof = profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=iterations, repeat=1),
                   on_trace_ready=on_ready, profile_memory=profile_memory)
    with quiet_native_stderr():
        prof.__enter__()
    try:
        for _ in range(iterations + 1):
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            with quiet_native_stderr():
                prof.step()
    finally:
        with quiet_native_stderr():
            prof.__exit__(None, None, None)
    return Recording(captured.get("cpu", []), captured.get("device", []))


def _windows_up(event: Any) -> list[tuple[Window, Any]]:
    """mambaprof windows enclosing a CPU event (itself included), innermost first."""
    out = []
    cur = event
    while cur is not None:
        window = parse_range(cur.name)
        if window is not None:
            out.append((window, cur))
        cur = cur.cpu_parent
    return out


class _RangeIndex:
    """mambaprof ranges by host time: the innermost range containing an instant."""

    def __init__(self, cpu_events: list[Any]) -> None:
        ranges = [e for e in cpu_events if parse_range(e.name) is not None]
        ranges.sort(key=lambda e: e.time_range.start)
        self.ranges = ranges
        self.starts = [e.time_range.start for e in ranges]

    def innermost(self, t: float) -> Any | None:
        """The innermost range with start <= t <= end (ranges nest, so the latest-starting one)."""
        i = bisect.bisect_right(self.starts, t) - 1
        while i >= 0:
            e = self.ranges[i]
            if e.time_range.end >= t:
                return e
            i -= 1
        return None


def _forward_index(forwards: list[Any], starts: list[float], t: float, after_us: float) -> int | None:
    """Index of the forward an unlinked activity starting at `t` belongs to: the last forward started
    before it (the last forward only up to `after_us` past its end)."""
    i = bisect.bisect_right(starts, t) - 1
    if i >= 0 and (i + 1 < len(forwards) or t <= forwards[i].time_range.end + after_us):
        return i
    return None


def _under_communication(event: Any) -> bool:
    """True when a CPU event is, or runs inside, a communication operator (c10d::..., nccl:...)."""
    cur = event
    while cur is not None:
        if is_communication(cur.name):
            return True
        cur = cur.cpu_parent
    return False


def attribute(recording: Recording, families: dict[int, str], fused_norm_layers: set[int]) -> list[KernelEvent]:
    """Attribute each device activity (or CPU operator self time when there are none) to a layer and component.

    GPU: the launch call's host time places the activity in the innermost marker range; without a
    recorded launch, the PyTorch op it is linked to; without either, its start on the GPU assigns it
    to a forward (component `other`, attribution `none`) so that no device time inside a forward is
    ever dropped. CPU: every operator's self time, placed by its parents; a collective that the backend runs on
    its own thread (gloo) is placed by its start time, with its whole span.
    Communication is recognised by name (see kernel_rules.is_communication) and overrides the range.
    families: layer -> `mamba1`/`mamba2` (for name rules inside unsplit mixers).
    fused_norm_layers: layers whose block leftover is the fused add+norm (else `residual`).
    """
    cpu_events = recording.cpu_events
    forwards = sorted((e for e in cpu_events if e.name == Window(MODEL_LAYER, FORWARD).range_name),
                      key=lambda e: e.time_range.start)
    iteration_of = {id(e): i for i, e in enumerate(forwards)}
    forward_starts = [e.time_range.start for e in forwards]
    on_gpu = bool(recording.device_events)
    units: list[tuple[str, int, float, float, Any, int | None]] = []  # name, dev, start, dur, launcher, iter
    if on_gpu:
        by_id = {e.id: e for e in cpu_events}
        index = _RangeIndex(cpu_events)
        for d in recording.device_events:
            launcher = index.innermost(d.launch_us) if d.launch_us is not None else None
            if launcher is None and d.linked_id:
                launcher = by_id.get(d.linked_id)
            fallback_iter = None
            if launcher is None and forwards:
                fallback_iter = _forward_index(forwards, forward_starts, d.start_us, after_us=1e6)
            units.append((d.name, d.device_index, d.start_us, d.duration_us, launcher, fallback_iter))
    else:
        for e in cpu_events:
            if parse_range(e.name) is not None:
                continue
            start = e.time_range.start
            if e.cpu_parent is None and is_communication(e.name):  # a backend thread's collective (gloo)
                i = _forward_index(forwards, forward_starts, start, after_us=0.0)
                if i is not None and start <= forwards[i].time_range.end:  # the forward waits for it
                    units.append((e.name, -1, start, e.time_range.end - start, None, i))
            elif not e.is_user_annotation and e.self_cpu_time_total > 0:
                # every operator's self time (its time minus its children's): an op with children, such as
                # aten::mm allocating its output, keeps the time it spent itself; nothing is counted twice
                units.append((e.name, -1, start, e.self_cpu_time_total, e, None))

    rows: list[KernelEvent] = []
    pending: dict[tuple[int, int], list[KernelEvent]] = defaultdict(list)
    for name, device_index, start_us, duration_us, launcher, fallback_iter in units:
        chain = _windows_up(launcher) if launcher is not None else []
        fwd = next((ev for w, ev in chain if w.name == FORWARD), None)
        if fwd is None:
            if fallback_iter is None:
                continue
            fwd = forwards[fallback_iter]
            chain = [(Window(MODEL_LAYER, FORWARD), fwd)]
        iteration = iteration_of[id(fwd)]
        inner, inner_ev = chain[0]
        row = KernelEvent(
            iteration=iteration, seq=0, name=name, layer=inner.layer, component="other",
            attribution="range", range_name=inner.range_name, device_type="cuda" if on_gpu else "cpu",
            device_index=device_index, start_us=float(start_us - fwd.time_range.start),
            duration_us=float(duration_us))
        if is_communication(name) or (launcher is not None and _under_communication(launcher)):
            row.component, row.attribution = "communication", "name_rule"
            if inner.name == FORWARD:
                row.layer = MODEL_LAYER
            if launcher is None:
                row.range_name = None
        elif inner.name in BY_NAME:
            row.component = inner.name
        elif inner.name == BLOCK:
            row.component = "norm" if inner.layer in fused_norm_layers else "residual"
        elif inner.name == MIXER:
            row.attribution = "name_rule"
            pending[(iteration, id(inner_ev))].append(row)
        else:  # forward window only
            row.layer, row.attribution = MODEL_LAYER, "none"
            if launcher is None:
                row.range_name = None
        rows.append(row)

    for kernels in pending.values():
        kernels.sort(key=lambda r: r.start_us)
        family = families.get(kernels[0].layer, "mamba1")
        for row, comp in zip(kernels, attribute_mixer_kernels([r.name for r in kernels], family), strict=True):
            row.component = comp

    rows.sort(key=lambda r: (r.iteration, r.start_us))
    seq: dict[int, int] = defaultdict(int)
    for row in rows:
        row.seq = seq[row.iteration]
        seq[row.iteration] += 1
    return rows


@dataclass
class KernelStats:
    """Summed kernel time of one (layer, component) per forward, over profiled forwards (ms)."""

    median_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    samples: int
    count_per_forward: int
    attribution: str


def component_stats(rows: list[KernelEvent], iterations: int) -> dict[tuple[int, str], KernelStats]:
    """Per (layer, component): statistics over forwards of the summed kernel time."""
    per: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0.0] * iterations)
    counts: dict[tuple[int, str], int] = defaultdict(int)
    how: dict[tuple[int, str], str] = {}
    for r in rows:
        if r.iteration >= iterations:
            continue
        key = (r.layer, r.component)
        per[key][r.iteration] += r.duration_us / 1000.0
        counts[key] += 1
        how.setdefault(key, r.attribution)
    out = {}
    for key, values in per.items():
        out[key] = KernelStats(
            median_ms=statistics.median(values), mean_ms=statistics.fmean(values), min_ms=min(values),
            max_ms=max(values), samples=iterations, count_per_forward=round(counts[key] / iterations),
            attribution=how[key])
    return out


def forward_totals(rows: list[KernelEvent], iterations: int) -> tuple[float, float, int]:
    """(median kernel ms per forward, % attributed to a named component, kernels per forward)."""
    total = [0.0] * iterations
    named = [0.0] * iterations
    for r in rows:
        if r.iteration >= iterations:
            continue
        total[r.iteration] += r.duration_us / 1000.0
        if r.component != "other":
            named[r.iteration] += r.duration_us / 1000.0
    if iterations == 0 or sum(total) == 0:
        return 0.0, 0.0, 0
    pct = 100.0 * sum(named) / sum(total)
    return statistics.median(total), pct, round(len(rows) / iterations)
