"""Energy per forward and per component from the GPU's total-energy counter.

The counter (nvmlDeviceGetTotalEnergyConsumption, mJ) only changes every `U` ms (measured at the
first point; ~100 ms on many datacenter GPUs), so one component's window of a few milliseconds
cannot be resolved by reading it around the component. Instead:

- forward: the model's own forward is repeated back to back until the window spans at least
  `min_updates` counter updates; energy per forward = counter difference / forwards.
- components: one split forward runs with a `SegmentCapture` listener, which cuts the forward at
  every window boundary of one representative Mamba layer (and of the embedding, final norm and
  lm_head), captures each piece into its own CUDA graph and replays it at once, so the forward goes
  on with real data (checked: its output must match the original). Then each component's graphs
  are replayed back to back, again for at least `min_updates` counter updates.
- idle: the same read over a sleep gives the idle power, so `dynamic_energy_mj` (above idle) can be
  reported next to the device energy.

`EnergyMeter` holds the resolution logic and takes the counter and the clock as functions, so it
is tested on the CPU with a fake counter. A window that spans fewer than `min_updates` updates (or a
counter that does not move) gives status `unresolved` and no number.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from mambaprof.collectors.context import PointContext
from mambaprof.collectors.gpu_device import DeviceError, GPUDevice, energy_update_period_ms
from mambaprof.collectors.markers import BLOCK, Window
from mambaprof.collectors.nvml import NvmlSampler
from mambaprof.collectors.rows import collector_failed, point_identity, status_row
from mambaprof.errors import one_line
from mambaprof.model.inputs import compare_outputs
from mambaprof.model.structure import MixerSite, ModelStructure
from mambaprof.taxonomy import BY_NAME, MODEL_LAYER

DEFAULT_MIN_UPDATES = 10
DEFAULT_MAX_WINDOW_S = 10.0
MAX_EXECUTIONS = 200_000
#: graph replays shorter than this may be bound by the host's launch rate
SHORT_EXEC_MS = 0.05
#: model-level windows whose kernels are captured and measured
MODEL_COMPONENTS = ("embedding", "norm", "lm_head")

Label = tuple[int, str]


@dataclass
class Reading:
    """One energy window: counter difference over `executions` back-to-back executions."""

    status: str  # resolved | unresolved
    reason: str | None
    executions: int
    window_ms: float
    device_ms: float | None
    delta_mj: float | None
    update_ms: float | None

    @property
    def energy_mj(self) -> float | None:
        """Energy per execution (mJ), None unless resolved."""
        if self.status != "resolved" or self.delta_mj is None or self.executions <= 0:
            return None
        return self.delta_mj / self.executions

    @property
    def power_w(self) -> float | None:
        """Average power over the window (W), None unless resolved."""
        if self.status != "resolved" or self.delta_mj is None or self.window_ms <= 0:
            return None
        return self.delta_mj / self.window_ms  # mJ/ms = W

    @property
    def exec_ms(self) -> float | None:
        """GPU time per execution (ms)."""
        return None if self.device_ms is None or self.executions <= 0 else self.device_ms / self.executions

    @property
    def counter_updates(self) -> float | None:
        """Counter updates the window spans."""
        return None if not self.update_ms else self.window_ms / self.update_ms

    @property
    def rel_err(self) -> float | None:
        """Bound on the quantisation error of the counter difference, relative to it."""
        if self.status != "resolved" or not self.update_ms or self.window_ms <= 0:
            return None
        return self.update_ms / self.window_ms

    @property
    def busy_pct(self) -> float | None:
        """Share of the window the device spent on the executions (%)."""
        if self.device_ms is None or self.window_ms <= 0:
            return None
        return 100.0 * min(self.device_ms / self.window_ms, 1.0)

    def dynamic_mj(self, idle_power_w: float | None) -> float | None:
        """Energy above idle per execution (mJ)."""
        if self.energy_mj is None or idle_power_w is None:
            return None
        return (self.delta_mj - idle_power_w * self.window_ms) / self.executions  # type: ignore[operator]


class EnergyMeter:
    """Reads an energy counter around back-to-back executions long enough to resolve it.

    read_mj: the counter (mJ, monotonic). update_ms: its measured update period (None: unknown, every
    reading is unresolved). A window must span `min_updates` updates; the quantisation error of the
    difference is then at most 1/min_updates of it (one update at each end, for steady power).
    """

    def __init__(self, read_mj: Callable[[], float], update_ms: float | None,
                 min_updates: int = DEFAULT_MIN_UPDATES, max_window_s: float = DEFAULT_MAX_WINDOW_S,
                 clock: Callable[[], int] = time.perf_counter_ns) -> None:
        self.read_mj = read_mj
        self.update_ms = update_ms
        self.min_updates = min_updates
        self.max_window_s = max_window_s
        self.clock = clock

    @property
    def target_ms(self) -> float | None:
        """Shortest window that resolves the counter (ms)."""
        return None if not self.update_ms else self.min_updates * self.update_ms

    def executions_for(self, exec_ms: float) -> int:
        """Executions of `exec_ms` each that fill the target window (with 20% margin), within the caps."""
        target = self.target_ms or 0.0
        per = max(exec_ms, 1e-6)
        wanted = math.ceil(1.2 * target / per)
        cap = max(1, int(self.max_window_s * 1000.0 / per))
        return max(1, min(wanted, cap, MAX_EXECUTIONS))

    def judge(self, e0: float, e1: float, window_ms: float, executions: int, device_ms: float | None) -> Reading:
        """Turn two counter reads into a Reading (resolved, or unresolved with the reason)."""
        def unresolved(reason: str) -> Reading:
            return Reading("unresolved", reason, executions, window_ms, device_ms, None, self.update_ms)

        if not self.update_ms:
            return unresolved("the energy counter's update period is unknown (it did not change while probed)")
        if e1 < e0:
            return unresolved("the energy counter went backwards (reset or wrapped) during the window")
        updates = window_ms / self.update_ms
        if updates < self.min_updates:
            return unresolved(f"window of {window_ms:.1f} ms spans {updates:.1f} counter updates "
                              f"(every {self.update_ms:.1f} ms), fewer than {self.min_updates}")
        if e1 == e0:
            return unresolved(f"the energy counter did not change over {window_ms:.1f} ms")
        return Reading("resolved", None, executions, window_ms, device_ms, float(e1 - e0), self.update_ms)

    def measure(self, run: Callable[[int], float | None], executions: int, sync: Callable[[], None]) -> Reading:
        """Read the counter, run `executions` (run returns their device ms, after synchronising, or
        None), read again."""
        sync()
        e0 = self.read_mj()
        t0 = self.clock()
        device_ms = run(executions)
        sync()
        t1 = self.clock()
        e1 = self.read_mj()
        return self.judge(e0, e1, (t1 - t0) / 1e6, executions, device_ms)

    def measure_adaptive(self, run: Callable[[int], float | None], exec_ms: float,
                         sync: Callable[[], None]) -> Reading:
        """measure() with executions sized from `exec_ms`; once more, longer, if the window came out short."""
        if not self.update_ms:
            return self.judge(0.0, 0.0, 0.0, 0, None)
        n = self.executions_for(exec_ms)
        reading = self.measure(run, n, sync)
        target = self.target_ms or 0.0
        if reading.status == "unresolved" and 0 < reading.window_ms < target:
            per = reading.window_ms / n
            longer = self.executions_for(per)
            if longer > n:
                reading = self.measure(run, longer, sync)
        return reading

    def idle(self, sync: Callable[[], None], sleep: Callable[[float], None] = time.sleep) -> Reading:
        """The counter over a sleep of the target window (idle power)."""
        if not self.update_ms:
            return self.judge(0.0, 0.0, 0.0, 0, None)
        seconds = 1.2 * (self.target_ms or 0.0) / 1000.0

        def rest(_: int) -> None:
            sleep(seconds)

        return self.measure(rest, 1, sync)


# --------------------------------------------------------------------------------------------------
# capture of one layer's components into CUDA graphs
# --------------------------------------------------------------------------------------------------

@dataclass
class Segment:
    """A captured piece of the forward: the component it belongs to and its graph."""

    label: Label
    graph: Any
    empty: bool


class SegmentCapture:
    """Listener: captures the pieces of a forward that belong to one layer's components (and the
    model-level embedding / final norm / lm_head) into CUDA graphs, one graph per piece, replaying
    each right after its capture so the rest of the forward sees real data.

    A piece ends at every window boundary where the component changes (the block's own ops before the
    norm, between norm and mixer and after the mixer are `residual` pieces, or `norm` pieces where the
    add is fused into the norm). Labels in `skip` run eagerly. When a capture fails, `broken` is set
    and `failed_label` names the piece.
    """

    def __init__(self, layer: int, fused_norm: bool, stream: Any, skip: set[Label] | None = None) -> None:
        self.layer = layer
        self.fused_norm = fused_norm
        self.stream = stream
        self.skip = skip or set()
        self.stack: list[Window] = []
        self.segments: list[Segment] = []
        self.current: Label | None = None
        self.broken = False
        self.failed_label: Label | None = None
        self.failure: str | None = None
        self._graph: Any = None
        self._stream_ctx: Any = None

    def label_of(self, stack: list[Window]) -> Label | None:
        """The component a piece running under `stack` belongs to, if it is one we capture.

        Between two component windows the mixer window is innermost: the split forward runs nothing
        there, so no piece is opened (an empty capture per boundary would only cost time)."""
        if not stack:
            return None
        w = stack[-1]
        if w.layer == self.layer:
            if w.name == BLOCK:
                return (w.layer, "norm" if self.fused_norm else "residual")
            return (w.layer, w.name) if w.name in BY_NAME else None
        if w.layer == MODEL_LAYER and w.name in MODEL_COMPONENTS:
            return (w.layer, w.name)
        return None

    def enter(self, window: Window) -> None:
        self.stack.append(window)
        self._update()

    def exit(self, window: Window) -> None:
        if self.stack and self.stack[-1] == window:
            self.stack.pop()
        elif window in self.stack:
            del self.stack[len(self.stack) - 1 - self.stack[::-1].index(window):]
        self._update()

    def _update(self) -> None:
        if self.broken:
            return
        label = self.label_of(self.stack)
        if label in self.skip:
            label = None
        if label == self.current:
            return
        self._end()
        if label is not None and not self.broken:
            self._begin(label)

    def _begin(self, label: Label) -> None:
        self._stream_ctx = torch.cuda.stream(self.stream)
        self._stream_ctx.__enter__()
        graph = torch.cuda.CUDAGraph()
        try:
            graph.capture_begin(capture_error_mode="thread_local")
        except Exception as exc:  # noqa: BLE001 - recorded, the forward goes on eagerly
            self._stream_ctx.__exit__(None, None, None)
            self._fail(label, exc)
            return
        self._graph, self.current = graph, label

    def _end(self) -> None:
        if self.current is None:
            return
        graph, label = self._graph, self.current
        self._graph, self.current = None, None
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                graph.capture_end()
        except Exception as exc:  # noqa: BLE001 - e.g. an op in the piece is not capturable
            self._fail(label, exc)
            return
        finally:
            self._stream_ctx.__exit__(None, None, None)
        empty = any("empty" in str(w.message).lower() for w in caught)
        if not empty:
            try:
                graph.replay()
            except RuntimeError as exc:  # an empty graph has nothing to replay
                if "capture" not in str(exc) and "empty" not in str(exc):
                    raise
                empty = True
        self.segments.append(Segment(label, graph, empty))

    def _fail(self, label: Label, exc: BaseException) -> None:
        self.broken = True
        self.failed_label = label
        self.failure = one_line(exc)

    def groups(self) -> dict[Label, list[Segment]]:
        """Segments by label, in capture order."""
        out: dict[Label, list[Segment]] = {}
        for seg in self.segments:
            out.setdefault(seg.label, []).append(seg)
        return out


class KeepAlive:
    """Holds the eager tensors captured pieces read (inputs of the captured modules, and the last
    block's output for a fused final norm), so their memory is not reused while graphs replay."""

    def __init__(self, inputs_of: list[nn.Module], outputs_of: list[nn.Module]) -> None:
        self.inputs_of = inputs_of
        self.outputs_of = outputs_of
        self.tensors: list[torch.Tensor] = []

    def _keep(self, *values: Any) -> None:
        self.tensors.extend(v for v in tree_leaves(values) if isinstance(v, torch.Tensor))

    @contextmanager
    def hooks(self) -> Iterator[None]:
        """Install the hooks for one forward."""
        handles = [m.register_forward_pre_hook(lambda _m, args, kwargs: self._keep(args, kwargs), with_kwargs=True)
                   for m in self.inputs_of]
        handles += [m.register_forward_hook(lambda _m, _a, out: self._keep(out)) for m in self.outputs_of]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def release(self) -> None:
        """Drop the references."""
        self.tensors.clear()


def representative_site(structure: ModelStructure, layer: int | None = None) -> MixerSite:
    """The Mamba layer whose components are measured: `layer`, else the middle one."""
    sites = structure.mixers
    if layer is not None:
        for s in sites:
            if s.layer == layer:
                return s
        raise ValueError(f"no Mamba layer {layer} (the model has {len(sites)})")
    return sites[len(sites) // 2]


def layers_like(structure: ModelStructure, site: MixerSite) -> int:
    """Mamba layers with the same mixer class and shape as `site`."""
    return sum(1 for s in structure.mixers if s.mixer_class == site.mixer_class and s.dims == site.dims)


# --------------------------------------------------------------------------------------------------
# the collector
# --------------------------------------------------------------------------------------------------

def _cuda_ms(device: torch.device, fn: Callable[[], None]) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize(device)
    return float(start.elapsed_time(end))


class EnergyCollector:
    """PointCollector: the `energy` table (forward and per-component energy, J/token)."""

    def __init__(self, device: GPUDevice, sampler: NvmlSampler | None = None,
                 min_updates: int = DEFAULT_MIN_UPDATES, max_window_s: float = DEFAULT_MAX_WINDOW_S,
                 layer: int | None = None, components: bool = True) -> None:
        self.device = device
        self.sampler = sampler
        self.min_updates = min_updates
        self.max_window_s = max_window_s
        self.layer = layer
        self.components = components
        self.update_ms: float | None = None
        self._probed = False

    def _phase(self, phase: str) -> None:
        if self.sampler is not None:
            self.sampler.set_phase(phase)

    def measure_point(self, ctx: PointContext, point_row: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """Energy rows for this point, or a collector_status row saying why there are none."""
        dev = ctx.spec.device
        pid = point_row["point_id"]
        if dev.type != "cuda":
            return {"collector_status": [status_row(point_row, "energy", "unavailable",
                                                    f"device is {dev}: the energy counter belongs to an NVIDIA GPU",
                                                    point_id=pid)]}
        if not self.device.available:
            return {"collector_status": [status_row(point_row, "energy", "unavailable", self.device.reason,
                                                    point_id=pid)]}
        try:
            if not self._probed:
                self._probed = True
                self._phase("energy/probe")
                self.update_ms = energy_update_period_ms(self.device)
            rows = self._measure(ctx, point_row)
        except DeviceError as exc:
            return {"collector_status": [status_row(point_row, "energy", "failed", f"NVML: {exc}", point_id=pid)]}
        except Exception as exc:  # noqa: BLE001 - energy failing must not fail the point's other data
            return collector_failed(point_row, "energy", exc, dev)
        details = {"counter_update_ms": self.update_ms, "min_updates": self.min_updates,
                   "max_window_s": self.max_window_s}
        unresolved = [f"{r['layer']}/{r['component']}" for r in rows if r["status"] != "resolved"]
        status = "partial" if unresolved else "ok"
        reason = ("not resolved: " + ", ".join(unresolved)) if unresolved else None
        return {"energy": rows, "collector_status": [status_row(point_row, "energy", status, reason, details,
                                                                point_id=pid)]}

    def _measure(self, ctx: PointContext, point_row: dict[str, Any]) -> list[dict[str, Any]]:
        dev = ctx.spec.device
        meter = EnergyMeter(self.device.energy_mj, self.update_ms, self.min_updates, self.max_window_s)
        tokens = ctx.spec.batch * ctx.spec.seqlen

        def sync() -> None:
            torch.cuda.synchronize(dev)

        self._phase("energy/idle")
        idle = meter.idle(sync)
        idle_w = idle.power_w

        self._phase("energy/forward")

        def forwards(n: int) -> float:
            def body() -> None:
                for _ in range(n):
                    ctx.run_original()
            return _cuda_ms(dev, body)

        forwards(1)
        fwd_ms = min(forwards(1) for _ in range(3))
        reading = meter.measure_adaptive(forwards, fwd_ms, sync)
        rows = [self._row(point_row, (MODEL_LAYER, "forward"), "forward", reading, idle_w, tokens, 1, None,
                          "the model's own forward, repeated back to back")]
        if self.components and ctx.structure.mixers and ctx.spec.mode == "split":
            rows += self._components(ctx, point_row, meter, idle_w, tokens)
        self._phase("energy/done")
        return rows

    def _components(self, ctx: PointContext, point_row: dict[str, Any], meter: EnergyMeter,
                    idle_w: float | None, tokens: int) -> list[dict[str, Any]]:
        dev = ctx.spec.device
        st = ctx.structure
        site = representative_site(st, self.layer)
        stream = torch.cuda.Stream(dev)
        modules_in = [site.block if site.block is not None else site.module, *st.embeddings, *st.lm_heads,
                      *st.final_norms]
        keep = KeepAlive(modules_in, [st.fused_final_norm[0]] if st.fused_final_norm is not None else [])
        failures: dict[Label, str] = {}
        self._phase(f"energy/capture/L{site.layer}")
        stream.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(stream):  # warm-up on the capture stream (cuBLAS workspaces, lazy init)
            ctx.run_instrumented([])
        torch.cuda.current_stream(dev).wait_stream(stream)
        reference = ctx.run_original()
        cap: SegmentCapture | None = None
        check = None
        for _ in range(4):
            keep.release()
            cap = SegmentCapture(site.layer, site.fused_add_norm, stream, skip=set(failures))
            try:
                with keep.hooks():
                    out = ctx.run_instrumented([cap])
            except Exception as exc:  # noqa: BLE001 - a piece that cannot be captured is recorded
                torch.cuda.synchronize(dev)
                if cap.failed_label is None:
                    keep.release()
                    reason = f"the forward with captured pieces failed: {one_line(exc)}"
                    return self._failed_rows(point_row, site, st, reason, tokens)
                failures[cap.failed_label] = one_line(exc)
                continue
            if cap.broken and cap.failed_label is not None:
                failures[cap.failed_label] = cap.failure or "capture failed"
                continue
            check = compare_outputs(reference, out, ctx.spec.dtype)
            del out
            break
        del reference
        torch.cuda.synchronize(dev)
        rows: list[dict[str, Any]] = []
        groups = cap.groups() if cap is not None and check is not None else {}
        fused = site.adapter.fused_components(site.module)
        eager_before = bool(failures)
        verdict = None if check is None else ("pass" if check.passed else "fail")
        for label, segs in groups.items():
            graphs = [s.graph for s in segs if not s.empty]
            represented = layers_like(st, site) if label[0] == site.layer else 1
            note = self._note(label, site, fused, eager_before)
            if not graphs:
                rows.append(self._row(point_row, label, "component", None, idle_w, tokens, represented, verdict,
                                      note, status="empty", reason="no kernels in this component's windows"))
                continue
            self._phase(f"energy/L{label[0]}/{label[1]}" if label[0] >= 0 else f"energy/model/{label[1]}")

            def replay(n: int, graphs: list[Any] = graphs) -> float:
                def body() -> None:
                    for _ in range(n):
                        for g in graphs:
                            g.replay()
                return _cuda_ms(dev, body)

            replay(1)
            exec_ms = min(replay(3) / 3 for _ in range(2))
            reading = meter.measure_adaptive(replay, exec_ms, lambda: torch.cuda.synchronize(dev))
            rows.append(self._row(point_row, label, "component", reading, idle_w, tokens, represented, verdict,
                                  note))
        for label, reason in failures.items():
            represented = layers_like(st, site) if label[0] == site.layer else 1
            rows.append(self._row(point_row, label, "component", None, idle_w, tokens, represented, None,
                                  None, status="capture_failed", reason=reason))
        keep.release()
        groups.clear()
        if cap is not None:
            cap.segments.clear()
        return rows

    @staticmethod
    def _note(label: Label, site: MixerSite, fused: dict[str, str], eager_before: bool) -> str:
        parts = ["kernels replayed back to back from CUDA graphs (no launch gaps)"]
        if label == (site.layer, "ssm_scan") and "gating" in fused:
            parts.append("includes gating (fused into the scan kernel)")
        if label == (site.layer, "norm") and site.fused_add_norm:
            parts.append("includes the residual add (fused add+norm kernel)")
        if eager_before and label[0] == site.layer:
            parts.append("a piece of this layer ran eagerly, so this graph may replay on reused input memory")
        return "; ".join(parts)

    def _failed_rows(self, point_row: dict[str, Any], site: MixerSite, st: ModelStructure, reason: str,
                     tokens: int) -> list[dict[str, Any]]:
        comps = [(site.layer, c) for c in site.adapter.components()
                 if c not in site.adapter.fused_components(site.module)]
        return [self._row(point_row, label, "component", None, None, tokens, layers_like(st, site), None, None,
                          status="capture_failed", reason=reason) for label in comps]

    def _row(self, point_row: dict[str, Any], label: Label, scope: str, reading: Reading | None,
             idle_w: float | None, tokens: int, represented: int, check: str | None, note: str | None,
             status: str | None = None, reason: str | None = None) -> dict[str, Any]:
        row: dict[str, Any] = point_identity(point_row)
        row.update(layer=label[0], component=label[1], scope=scope, tokens=tokens, layers_represented=represented,
                   capture_check=check, note=note, counter_update_ms=self.update_ms, idle_power_w=idle_w)
        if reading is None:
            row.update(status=status, reason=reason)
            return row
        energy = reading.energy_mj
        if scope == "component" and reading.exec_ms is not None and reading.exec_ms < SHORT_EXEC_MS:
            row["note"] = "; ".join(filter(None, [note, f"executions shorter than {SHORT_EXEC_MS} ms may be "
                                                        "launch-bound: energy_mj includes idle gaps, "
                                                        "dynamic_energy_mj does not"]))
        row.update(status=reading.status, reason=reading.reason, executions=reading.executions,
                   window_ms=reading.window_ms, exec_ms=reading.exec_ms, busy_pct=reading.busy_pct,
                   counter_updates=reading.counter_updates, energy_mj=energy, energy_rel_err=reading.rel_err,
                   power_w=reading.power_w, dynamic_energy_mj=reading.dynamic_mj(idle_w),
                   energy_per_token_j=None if energy is None else energy / 1000.0 / tokens)
        return row
