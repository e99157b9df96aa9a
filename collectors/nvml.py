"""NVML sampler: a background thread reading the GPU's management counters while a run goes on.

`NvmlSampler` samples a `GPUDevice` every `interval_ms` (default 10 ms). A metric whose driver
sample period pynvml exposes (power, utilisation: the spacing of `nvmlDeviceGetSamples`' buffer)
is read no faster than that period, so no value is read twice and presented as new: in the samples
between two of its updates it is null. Each sample carries `host_ns` (time.perf_counter_ns, the
clock every hardware collector marks its windows on), `unix_ns` and the phase the run was in. A
metric the GPU does not offer is dropped after its first refusal; NVML failing (GPU lost, driver
gone, any unexpected error) stops the thread and is recorded, and the run goes on.

`NvmlRunCollector` ties the sampler to a sweep (the run-level collector hook of
`mambaprof.run.sweep.run_sweep`): started with the run, told when points and phases begin, it hands
each point its samples (`nvml_samples`) and writes one `collector_status` row saying whether and
how it sampled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from mambaprof.collectors.gpu_device import GPUDevice, MetricUnsupported, counter_delta, throttle_names
from mambaprof.collectors.rows import point_identity, status_row

DEFAULT_INTERVAL_MS = 10.0
#: never sample faster than this, whatever the driver says
MIN_INTERVAL_MS = 1.0
#: nvmlDeviceGetPcieThroughput blocks ~20 ms per counter: read it at most this often
PCIE_THROUGHPUT_EVERY_MS = 100.0

Row = dict[str, Any]


class NvmlSampler:
    """Samples a GPUDevice on a background thread. Thread-safe readers: `take`, `drain`, `status`."""

    def __init__(self, device: GPUDevice, interval_ms: float = DEFAULT_INTERVAL_MS,
                 clock: Callable[[], int] = time.perf_counter_ns, wall: Callable[[], int] = time.time_ns) -> None:
        if interval_ms <= 0:
            raise ValueError("interval_ms must be positive")
        self.device = device
        self.requested_ms = float(interval_ms)
        self.interval_ms = float(interval_ms)
        self.clock = clock
        self.wall = wall
        self.phase = "setup"
        self.state = "unavailable" if not device.available else "idle"
        self.reason: str | None = device.reason
        self.failed_at_unix_ns: int | None = None
        self.unsupported: dict[str, str] = {}
        self.driver_periods_ms: dict[str, float | None] = {}
        self.sample_count = 0
        self._samples: list[Row] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._readers: list[tuple[str, Callable[[Row], None], float | None]] = []
        self._last_read: dict[str, int] = {}
        self._pcie_prev: tuple[int, int, int] | None = None
        self._pcie_last_slow_ns = 0

    # -- control -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Probe the driver's sample periods, start the thread.

        Does nothing (state stays `unavailable`) when the device is the empty stand-in.
        """
        if not self.device.available or self._thread is not None:
            return
        self._stop.clear()
        for kind in ("power", "utilization"):
            try:
                self.driver_periods_ms[kind] = self.device.sample_period_ms(kind)
            except Exception:  # noqa: BLE001 - a probe failing only means "unknown"
                self.driver_periods_ms[kind] = None
        self.interval_ms = max(self.requested_ms, MIN_INTERVAL_MS)
        self._readers = self._make_readers()
        self._last_read.clear()
        self.state = "running"
        self._thread = threading.Thread(target=self._run, name="mambaprof-nvml", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (waits for the sample in progress)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        if self.state == "running":
            self.state = "stopped"

    def set_phase(self, phase: str) -> None:
        """Label the following samples with `phase`."""
        self.phase = phase

    @property
    def alive(self) -> bool:
        """True while the thread is sampling."""
        return self.state == "running"

    # -- readers -----------------------------------------------------------------------------------
    def take(self, start_ns: int, end_ns: int | None = None) -> list[Row]:
        """Copies of the samples with start_ns <= host_ns (<= end_ns)."""
        with self._lock:
            return [dict(s) for s in self._samples
                    if s["host_ns"] >= start_ns and (end_ns is None or s["host_ns"] <= end_ns)]

    def drain(self) -> list[Row]:
        """Remove and return every sample taken so far."""
        with self._lock:
            out, self._samples = self._samples, []
        return out

    def status(self) -> dict[str, Any]:
        """Facts about the sampling so far (for `collector_status.details_json`)."""
        return {"state": self.state, "reason": self.reason, "interval_ms_requested": self.requested_ms,
                "interval_ms": self.interval_ms, "driver_sample_period_ms": self.driver_periods_ms,
                "metric_period_ms": {name: period for name, _, period in self._readers if period},
                "samples": self.sample_count, "unsupported_metrics": self.unsupported,
                "failed_at_unix_ns": self.failed_at_unix_ns, "gpu_index": self.device.index,
                "gpu_name": self.device.name, "handle_match": getattr(self.device, "how", None)}

    # -- sampling ----------------------------------------------------------------------------------
    def _make_readers(self) -> list[tuple[str, Callable[[Row], None], float | None]]:
        """(metric, reader, driver period or None: read at every sample)."""
        d = self.device

        def power(row: Row) -> None:
            row["power_w"] = d.power_mw() / 1000.0

        def power_instant(row: Row) -> None:
            row["power_instant_w"] = d.power_instant_mw() / 1000.0

        def energy(row: Row) -> None:
            row["energy_mj"] = d.energy_mj()

        def utilization(row: Row) -> None:
            row["gpu_util_pct"], row["mem_util_pct"] = d.utilization_pct()

        def memory(row: Row) -> None:
            row["memory_used_bytes"], row["memory_total_bytes"] = d.memory_bytes()

        def clocks(row: Row) -> None:
            row["sm_clock_mhz"], row["mem_clock_mhz"] = d.clocks_mhz()

        def temperature(row: Row) -> None:
            row["temperature_c"] = d.temperature_c()

        def throttle(row: Row) -> None:
            mask = d.throttle_reasons()
            row["throttle_reasons"], row["throttle_names"] = mask, throttle_names(mask)

        periods = self.driver_periods_ms
        return [("power", power, periods.get("power")), ("power_instant", power_instant, None),
                ("energy", energy, None), ("utilization", utilization, periods.get("utilization")),
                ("memory", memory, None), ("clocks", clocks, None), ("temperature", temperature, None),
                ("throttle", throttle, None), ("pcie", self._pcie, None)]

    def _pcie(self, row: Row) -> None:
        """PCIe rates from the cumulative byte counters; without them, the slow throughput query."""
        if "pcie_counters" not in self.unsupported:
            try:
                tx, rx = self.device.pcie_counters_bytes()
                now = self.clock()  # the counters' own read time: the row's stamp is a few readings earlier
            except MetricUnsupported as exc:
                self.unsupported["pcie_counters"] = str(exc)
            else:
                if self._pcie_prev is not None and now > self._pcie_prev[0]:
                    dt = (now - self._pcie_prev[0]) / 1e9
                    dtx, drx = counter_delta(self._pcie_prev[1], tx), counter_delta(self._pcie_prev[2], rx)
                    row["pcie_tx_bytes_per_s"] = None if dtx is None else dtx / dt
                    row["pcie_rx_bytes_per_s"] = None if drx is None else drx / dt
                self._pcie_prev = (now, tx, rx)
                return
        if (row["host_ns"] - self._pcie_last_slow_ns) / 1e6 < PCIE_THROUGHPUT_EVERY_MS:
            return
        self._pcie_last_slow_ns = row["host_ns"]
        row["pcie_tx_bytes_per_s"], row["pcie_rx_bytes_per_s"] = self.device.pcie_throughput_bytes_per_s()

    def sample_once(self) -> Row | None:
        """Take one sample now (the thread's body; also callable directly). None once NVML has failed."""
        if self.state in ("failed", "unavailable"):
            return None
        row: Row = {"host_ns": self.clock(), "unix_ns": self.wall(), "phase": self.phase,
                    "gpu_index": self.device.index}
        now = row["host_ns"]
        for name, read, period in list(self._readers):
            last = self._last_read.get(name)
            if period and last is not None and (now - last) < 0.95 * period * 1e6:
                continue  # the driver has not updated it since the last read
            try:
                read(row)
                self._last_read[name] = now
            except MetricUnsupported as exc:
                self.unsupported[name] = str(exc)
                self._readers = [r for r in self._readers if r[0] != name]
            except Exception as exc:  # noqa: BLE001 - DeviceLost or worse: NVML dying mid-run must not kill the run
                self.state = "failed"
                self.failed_at_unix_ns = self.wall()
                self.reason = f"NVML failed mid-run reading {name}: {exc}"
                return None
        if not self._readers:
            self.state = "failed"
            self.reason = "the GPU supports none of the sampled NVML metrics: " + "; ".join(
                f"{k}: {v}" for k, v in self.unsupported.items())
            return None
        with self._lock:
            self._samples.append(row)
            self.sample_count += 1
        return row

    def _run(self) -> None:
        step = int(self.interval_ms * 1e6)
        next_ns = self.clock()
        while not self._stop.is_set():
            if self.sample_once() is None:
                return
            next_ns += step
            now = self.clock()
            if next_ns < now:  # fell behind (a slow query): skip ticks rather than burst
                next_ns = now
            self._stop.wait((next_ns - now) / 1e9)


_SAMPLE_COLUMNS = ("host_ns", "unix_ns", "phase", "gpu_index", "power_w", "power_instant_w", "energy_mj",
                   "gpu_util_pct", "mem_util_pct", "memory_used_bytes", "memory_total_bytes", "sm_clock_mhz",
                   "mem_clock_mhz", "temperature_c", "pcie_tx_bytes_per_s", "pcie_rx_bytes_per_s",
                   "throttle_reasons", "throttle_names")


class NvmlRunCollector:
    """The sampler as a run-level collector: one thread for the run, samples written per point."""

    def __init__(self, sampler: NvmlSampler) -> None:
        self.sampler = sampler
        self.identity: dict[str, Any] = {}
        self.point_start_ns: int | None = None
        self.outside_points = 0
        self._reported_failure = False

    def start_run(self, run_id: str, identity: dict[str, Any]) -> None:
        """Start sampling (a no-op without NVML)."""
        self.identity = {"run_id": run_id, **identity}
        self.sampler.start()

    def begin_point(self, point_id: int) -> None:
        """Samples from now on belong to `point_id`."""
        self.point_start_ns = self.sampler.clock()
        self.sampler.set_phase("setup")

    def on_phase(self, point_id: int, phase: str) -> None:
        """Label samples with the sweep's phase (warm-up, timing, profiler, a collector)."""
        self.sampler.set_phase(phase)

    def end_point(self, base: dict[str, Any]) -> dict[str, list[Row]]:
        """This point's samples as `nvml_samples` rows (and a status row if NVML failed during it)."""
        samples = self.sampler.drain()
        start = self.point_start_ns if self.point_start_ns is not None else 0
        inside = [s for s in samples if s["host_ns"] >= start]
        self.outside_points += len(samples) - len(inside)
        self.point_start_ns = None
        self.sampler.set_phase("between points")
        ident = point_identity(base)
        out: dict[str, list[Row]] = {"nvml_samples": [{**ident, **{k: s.get(k) for k in _SAMPLE_COLUMNS}}
                                                      for s in inside]}
        if self.sampler.state == "failed" and not self._reported_failure:
            self._reported_failure = True
            out["collector_status"] = [status_row(base, "nvml", "failed", self.sampler.reason,
                                                  {"samples_in_point": len(inside)}, point_id=base["point_id"])]
        return out

    def stop_run(self) -> dict[str, list[Row]]:
        """Stop sampling; the run-level `collector_status` row."""
        self.sampler.stop()
        self.sampler.drain()
        s = self.sampler
        details = {**s.status(), "samples_outside_points": self.outside_points}
        if s.state == "unavailable":
            status, reason = "unavailable", s.reason
        elif s.state == "failed":
            status, reason = "failed", s.reason
        elif s.unsupported:
            status = "partial"
            reason = "metrics this GPU does not offer: " + ", ".join(sorted(s.unsupported))
        else:
            status, reason = "ok", None
        rows = [status_row(self.identity, "nvml", status, reason, details)] if self.identity else []
        self.sampler.device.close()
        return {"collector_status": rows}
