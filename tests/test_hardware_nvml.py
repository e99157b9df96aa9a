"""NVML sampler: sampling, the driver-period floor, unsupported metrics, NVML dying mid-run, no NVML."""

import time

import pynvml
import pytest
import torch
from support.hardware_fakes import FakeDevice

from mambaprof.collectors import gpu_device
from mambaprof.collectors.gpu_device import NullDevice, NVMLDevice, counter_delta, open_device, throttle_names
from mambaprof.collectors.nvml import NvmlRunCollector, NvmlSampler


def _run_for(sampler: NvmlSampler, seconds: float) -> None:
    sampler.start()
    time.sleep(seconds)
    sampler.stop()


def test_sampler_samples_at_interval_with_known_values():
    dev = FakeDevice(watts=123.0, tx_bps=1e9, rx_bps=2e9)
    s = NvmlSampler(dev, interval_ms=5.0)
    s.set_phase("timing")
    _run_for(s, 0.3)
    rows = s.drain()
    assert s.state == "stopped" and s.interval_ms == 5.0
    assert 20 <= len(rows) <= 70, len(rows)  # ~60 at 5 ms, fewer on a loaded CI machine
    stamps = [r["host_ns"] for r in rows]
    assert stamps == sorted(stamps)
    gaps = sorted((b - a) / 1e6 for a, b in zip(stamps, stamps[1:], strict=False))
    assert gaps[len(gaps) // 2] == pytest.approx(5.0, abs=2.0)  # median spacing is the interval
    assert all(r["phase"] == "timing" and r["power_w"] == 123.0 for r in rows)
    assert rows[0]["gpu_util_pct"] == 87.0 and rows[0]["memory_total_bytes"] == 80 << 30
    assert rows[0]["throttle_names"] == "gpu_idle,sw_power_cap" and rows[0]["throttle_reasons"] == 5
    energies = [r["energy_mj"] for r in rows]
    assert energies == sorted(energies) and energies[-1] > energies[0]
    # PCIe rates come from the cumulative counters between samples: the fake's 1 GB/s and 2 GB/s
    tx = [r["pcie_tx_bytes_per_s"] for r in rows[1:]]
    rx = [r["pcie_rx_bytes_per_s"] for r in rows[1:]]
    assert rows[0].get("pcie_tx_bytes_per_s") is None
    assert sorted(tx)[len(tx) // 2] == pytest.approx(1e9, rel=0.05)
    assert sorted(rx)[len(rx) // 2] == pytest.approx(2e9, rel=0.05)


def test_counter_delta_handles_one_wrap_and_refuses_a_reset():
    assert counter_delta(100, 350) == 250
    assert counter_delta((1 << 32) - 100, 50) == 150  # went round 2**32 once
    assert counter_delta(7 << 33, 5) is None  # backwards from above the wrap: a reset, no number


def test_sampler_pcie_rates_survive_counters_that_wrap():
    # 40 GB/s against a 2**32-byte counter: it wraps every ~107 ms, several times in the window
    dev = FakeDevice(tx_bps=40e9, rx_bps=1e9, pcie_wrap=1 << 32)
    s = NvmlSampler(dev, interval_ms=5.0)
    _run_for(s, 0.4)
    rows = s.drain()[1:]
    tx = sorted(r["pcie_tx_bytes_per_s"] for r in rows)
    assert all(v >= 0 for v in tx)
    assert tx[len(tx) // 2] == pytest.approx(40e9, rel=0.05)


def test_metrics_never_read_faster_than_the_driver_updates_them():
    dev = FakeDevice(driver_period_ms=20.0)
    s = NvmlSampler(dev, interval_ms=4.0)
    _run_for(s, 0.4)
    rows = s.drain()
    status = s.status()
    assert s.interval_ms == 4.0 and status["driver_sample_period_ms"] == {"power": 20.0, "utilization": 20.0}
    assert status["metric_period_ms"] == {"power": 20.0, "utilization": 20.0}
    power = [r["host_ns"] for r in rows if r.get("power_w") is not None]
    assert 0 < len(power) < len(rows) / 2  # read about every 5th sample, null in between
    assert min((b - a) / 1e6 for a, b in zip(power, power[1:], strict=False)) >= 0.95 * 20.0
    assert all(r.get("sm_clock_mhz") == 1755.0 for r in rows)  # no driver period: read every sample
    assert dev.power_reads == len(power)


def test_unsupported_metric_is_dropped_and_pcie_falls_back_to_throughput():
    dev = FakeDevice(unsupported=("power_instant", "pcie_counters"))
    s = NvmlSampler(dev, interval_ms=5.0)
    _run_for(s, 0.35)
    rows = s.drain()
    assert s.state == "stopped"
    assert set(s.unsupported) == {"power_instant", "pcie_counters"}
    assert all(r.get("power_instant_w") is None for r in rows)
    slow = [r for r in rows if r.get("pcie_tx_bytes_per_s") is not None]
    assert 1 <= len(slow) <= 5  # the 20 ms throughput query is made at most every 100 ms
    assert slow[0]["pcie_tx_bytes_per_s"] == 1e9


def test_device_lost_mid_run_stops_the_thread_and_keeps_samples():
    s = NvmlSampler(FakeDevice(lose_after=5), interval_ms=2.0)
    _run_for(s, 0.2)
    rows = s.drain()
    assert len(rows) == 5
    assert s.state == "failed" and "GPU is lost" in s.reason and s.failed_at_unix_ns is not None
    assert s.sample_once() is None  # stays dead


def test_null_device_never_starts():
    s = NvmlSampler(NullDevice("no GPU here"))
    s.start()
    assert s.state == "unavailable" and s._thread is None and s.sample_once() is None
    c = NvmlRunCollector(s)
    c.start_run("r", {"rank": 0, "world_size": 1})
    row = c.stop_run()["collector_status"][0]
    assert row["status"] == "unavailable" and row["reason"] == "no GPU here" and row["point_id"] is None


def test_open_device_cpu_and_throttle_names():
    dev = open_device("cpu")
    assert not dev.available and "NVIDIA GPUs only" in dev.reason
    with pytest.raises(gpu_device.MetricUnsupported):
        dev.power_mw()
    assert throttle_names(0) == "" and throttle_names(None) is None
    assert throttle_names(0x44) == "sw_power_cap,hw_thermal"


def test_genuine_no_driver_path():
    """On this machine there is no NVIDIA driver: nvmlInit really fails and the device says so."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        expected = str(exc)
    else:
        pynvml.nvmlShutdown()
        pytest.skip("an NVIDIA driver is present")
    dev = open_device(torch.device("cuda:0"))
    assert isinstance(dev, NullDevice)
    assert dev.reason.startswith("nvmlInit failed") and expected in dev.reason


class _Handle:
    pass


def _patch_nvml(monkeypatch, lose_after: int | None = None):
    """A pynvml whose calls return fixed values (the library itself is absent here)."""
    state = {"power": 0}

    def power(handle):
        state["power"] += 1
        if lose_after is not None and state["power"] > lose_after:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        return 250_000

    class Util:
        gpu, memory = 99, 63

    class Mem:
        used, total = 10 << 30, 80 << 30

    def not_supported(*a, **k):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    for name, fn in {
        "nvmlInit": lambda: None, "nvmlShutdown": lambda: None,
        "nvmlDeviceGetHandleByIndex": lambda i: _Handle(), "nvmlDeviceGetIndex": lambda h: 0,
        "nvmlDeviceGetHandleByUUID": not_supported,
        "nvmlDeviceGetName": lambda h: "NVIDIA H100 80GB HBM3", "nvmlDeviceGetPowerUsage": power,
        "nvmlDeviceGetTotalEnergyConsumption": lambda h: 1_000_000 + 250 * state["power"],
        "nvmlDeviceGetUtilizationRates": lambda h: Util(), "nvmlDeviceGetMemoryInfo": lambda h: Mem(),
        "nvmlDeviceGetClockInfo": lambda h, c: 1980 if c == pynvml.NVML_CLOCK_SM else 2619,
        "nvmlDeviceGetTemperature": lambda h, t: 51, "nvmlDeviceGetFieldValues": not_supported,
        "nvmlDeviceGetPcieThroughput": lambda h, c: 1000, "nvmlDeviceGetSamples": not_supported,
        "nvmlDeviceGetCurrentClocksEventReasons": lambda h: 0x1,
    }.items():
        monkeypatch.setattr(pynvml, name, fn)


def test_nvml_device_through_real_pynvml_bindings_dying_mid_run(monkeypatch):
    _patch_nvml(monkeypatch, lose_after=4)
    dev = open_device(torch.device("cuda:0"))
    assert isinstance(dev, NVMLDevice) and dev.available and dev.name == "NVIDIA H100 80GB HBM3"
    assert dev.how in ("index", "cuda_visible_devices")
    s = NvmlSampler(dev, interval_ms=2.0)
    _run_for(s, 0.2)
    rows = s.drain()
    assert len(rows) == 4
    first = rows[0]
    assert first["power_w"] == 250.0 and first["gpu_util_pct"] == 99.0 and first["sm_clock_mhz"] == 1980.0
    assert first["memory_used_bytes"] == 10 << 30 and first["temperature_c"] == 51.0
    assert first["pcie_tx_bytes_per_s"] == 1000 * 1024.0  # KB/s -> bytes/s, via the throughput fallback
    assert "power_instant" in s.unsupported and "pcie_counters" in s.unsupported  # field values: NOT_SUPPORTED
    assert s.state == "failed" and "reading power" in s.reason and "GPU is lost" in s.reason


def test_field_values_are_read_as_their_declared_type(monkeypatch):
    _patch_nvml(monkeypatch)
    counters = {pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES: (3, "ullVal", 7 << 33),
                pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES: (3, "ullVal", 123),
                pynvml.NVML_FI_DEV_POWER_INSTANT: (1, "uiVal", 412_000)}

    def field_values(handle, ids):
        out = (pynvml.c_nvmlFieldValue_t * len(ids))()
        for slot, fid in zip(out, ids, strict=True):
            vtype, member, number = counters[fid]
            slot.fieldId, slot.valueType, slot.nvmlReturn = fid, vtype, pynvml.NVML_SUCCESS
            setattr(slot.value, member, number)
        return out

    monkeypatch.setattr(pynvml, "nvmlDeviceGetFieldValues", field_values)
    dev = open_device(torch.device("cuda:0"))
    assert dev.pcie_counters_bytes() == (7 << 33, 123)
    assert dev.power_instant_mw() == 412_000
    counters[pynvml.NVML_FI_DEV_POWER_INSTANT] = (9, "uiVal", 1)
    with pytest.raises(gpu_device.MetricUnsupported, match="value type 9"):
        dev.power_instant_mw()
