"""Test doubles for the hardware collectors: a GPU device with known counters, a fake clock."""

from __future__ import annotations

import time

from mambaprof.collectors.gpu_device import DeviceLost, GPUDevice, MetricUnsupported


class FakeClock:
    """A clock the test advances by hand (ns)."""

    def __init__(self, start_ns: int = 1_000_000_000) -> None:
        self.now = start_ns

    def __call__(self) -> int:
        return self.now

    def advance_ms(self, ms: float) -> None:
        self.now += int(ms * 1e6)


class FakeDevice(GPUDevice):
    """A GPU whose counters follow known laws of real time (or of a given clock).

    power: `watts` W constant; energy counter: updates every `update_ms`, stepping by watts x update_ms;
    PCIe counters grow at tx/rx bytes per second (modulo `pcie_wrap` when given, as a real H200's
    do). `lose_after` readings of power make it raise
    DeviceLost (NVML dying mid-run); names in `unsupported` raise MetricUnsupported.
    """

    def __init__(self, watts: float = 100.0, update_ms: float = 5.0, tx_bps: float = 1e9, rx_bps: float = 2e9,
                 clock: object = None, lose_after: int | None = None, unsupported: tuple[str, ...] = (),
                 driver_period_ms: float | None = None, pcie_wrap: int | None = None) -> None:
        self.index = 0
        self.name = "Fake GPU"
        self.watts = watts
        self.update_ms = update_ms
        self.tx_bps, self.rx_bps = tx_bps, rx_bps
        self.clock = clock or time.perf_counter_ns
        self.t0 = self.clock()
        self.lose_after = lose_after
        self.unsupported = set(unsupported)
        self.driver_period_ms = driver_period_ms
        self.pcie_wrap = pcie_wrap
        self.power_reads = 0
        self.closed = False

    def _elapsed_s(self) -> float:
        return (self.clock() - self.t0) / 1e9

    def _check(self, name: str) -> None:
        if name in self.unsupported:
            raise MetricUnsupported(f"{name} not supported by the fake")

    def power_mw(self) -> int:
        self._check("power")
        self.power_reads += 1
        if self.lose_after is not None and self.power_reads > self.lose_after:
            raise DeviceLost("NVMLError_GpuIsLost: GPU is lost")
        return int(self.watts * 1000)

    def power_instant_mw(self) -> int:
        self._check("power_instant")
        return int(self.watts * 1000) + 1

    def energy_mj(self) -> int:
        self._check("energy")
        updates = int(self._elapsed_s() * 1000.0 / self.update_ms)
        return 5_000_000 + int(updates * self.update_ms * self.watts)  # W x ms = mJ

    def utilization_pct(self) -> tuple[float, float]:
        self._check("utilization")
        return 87.0, 41.0

    def memory_bytes(self) -> tuple[int, int]:
        self._check("memory")
        return 3 << 30, 80 << 30

    def clocks_mhz(self) -> tuple[float, float]:
        self._check("clocks")
        return 1755.0, 2619.0

    def temperature_c(self) -> float:
        self._check("temperature")
        return 48.0

    def pcie_counters_bytes(self) -> tuple[int, int]:
        self._check("pcie_counters")
        s = self._elapsed_s()
        tx, rx = int(self.tx_bps * s), int(self.rx_bps * s)
        if self.pcie_wrap:
            tx, rx = tx % self.pcie_wrap, rx % self.pcie_wrap
        return tx, rx

    def pcie_throughput_bytes_per_s(self) -> tuple[float, float]:
        self._check("pcie_throughput")
        return self.tx_bps, self.rx_bps

    def throttle_reasons(self) -> int:
        self._check("throttle")
        return 0x1 | 0x4

    def sample_period_ms(self, kind: str) -> float | None:
        return self.driver_period_ms

    def close(self) -> None:
        self.closed = True
