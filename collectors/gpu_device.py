"""One GPU's management counters behind an abstract device, with an empty stand-in when there is none.

Collectors (the NVML sampler, energy, I/O) talk to a `GPUDevice`, never to pynvml. `open_device`
returns an `NVMLDevice` for a CUDA device whose NVML handle can be opened, and a `NullDevice`
carrying the one-line reason otherwise (CPU run, pynvml missing, no driver, no permission), so a
run without NVML goes on and says why it has no samples.

Every reading either returns a value, raises `MetricUnsupported` (this GPU or driver does not offer
the metric, or not to this user: the caller stops asking for it) or raises `DeviceLost` (NVML
stopped working: the caller stops using the device and records the reason).
"""

from __future__ import annotations

import statistics
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch

from mambaprof.errors import one_line


class DeviceError(Exception):
    """Base of the device errors."""


class MetricUnsupported(DeviceError):
    """The metric is not available on this GPU/driver, or not to this user."""


class DeviceLost(DeviceError):
    """NVML failed in a way that makes further readings meaningless (GPU lost, driver gone, ...)."""


#: Clock event (throttle) reason bits, as NVML defines them, and the names the tables use.
THROTTLE_REASONS: tuple[tuple[int, str], ...] = (
    (0x1, "gpu_idle"), (0x2, "applications_clocks_setting"), (0x4, "sw_power_cap"), (0x8, "hw_slowdown"),
    (0x10, "sync_boost"), (0x20, "sw_thermal"), (0x40, "hw_thermal"), (0x80, "hw_power_brake"),
    (0x100, "display_clock"),
)


def throttle_names(mask: int | None) -> str | None:
    """The active reasons of a throttle bitmask, comma-separated (`` for none, None for no mask)."""
    if mask is None:
        return None
    return ",".join(name for bit, name in THROTTLE_REASONS if mask & bit)


#: width of NVML's PCIe byte counters as seen on an H200 (driver 580): they wrap at 2**32 although
#: the field is read as a 64-bit value (a 0.8 GB copy read as -3.4 GB before this was handled)
PCIE_COUNTER_WRAP = 1 << 32


def counter_delta(before: int, after: int, wrap: int = PCIE_COUNTER_WRAP) -> int | None:
    """Bytes between two reads of a cumulative counter that wraps at `wrap`: after - before, plus one
    wrap when the counter went round once; None when it went backwards from above the wrap (a reset)."""
    if after >= before:
        return after - before
    if before < wrap:
        return after + wrap - before
    return None


def unwrap_counter(delta: int | None, estimate: float | None, wrap: int = PCIE_COUNTER_WRAP) -> int | None:
    """The whole bytes a wrapping counter moved over a window: `delta` (its reading difference, known only
    modulo `wrap`) plus the number of extra wraps that brings it closest to `estimate` (bytes integrated
    from finer-grained samples of the same counter). Without an estimate, `delta` as it is."""
    if delta is None or estimate is None or estimate <= delta:
        return delta
    return delta + wrap * round((estimate - delta) / wrap)


class GPUDevice(ABC):
    """Management counters of one GPU. Units are in the method names."""

    #: False for the empty stand-in
    available: bool = True
    #: why the device is unavailable (None when it is available)
    reason: str | None = None
    index: int = -1
    name: str = ""

    @abstractmethod
    def power_mw(self) -> int:
        """Board power draw (driver-averaged), mW."""

    @abstractmethod
    def power_instant_mw(self) -> int:
        """Instantaneous power, mW."""

    @abstractmethod
    def energy_mj(self) -> int:
        """Total-energy counter since the driver loaded, mJ."""

    @abstractmethod
    def utilization_pct(self) -> tuple[float, float]:
        """(GPU, memory) utilisation over the driver's last sample period, %."""

    @abstractmethod
    def memory_bytes(self) -> tuple[int, int]:
        """(used, total) device memory, bytes."""

    @abstractmethod
    def clocks_mhz(self) -> tuple[float, float]:
        """(SM, memory) clocks, MHz."""

    @abstractmethod
    def temperature_c(self) -> float:
        """GPU die temperature, degrees C."""

    @abstractmethod
    def pcie_counters_bytes(self) -> tuple[int, int]:
        """Cumulative PCIe (transmit, receive) byte counters."""

    @abstractmethod
    def pcie_throughput_bytes_per_s(self) -> tuple[float, float]:
        """PCIe (transmit, receive) throughput over a short driver window (slow: ~20 ms per counter)."""

    @abstractmethod
    def throttle_reasons(self) -> int:
        """Current clock event (throttle) reason bitmask."""

    def sample_period_ms(self, kind: str) -> float | None:
        """The driver's own sampling period of `power` or `utilization` (ms), if it exposes one."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook: most devices hold nothing to release
        """Release the device (NVML shutdown)."""


class NullDevice(GPUDevice):
    """The empty stand-in: every reading raises MetricUnsupported with the reason there is no device."""

    available = False

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def _none(self) -> Any:
        raise MetricUnsupported(self.reason or "no GPU device")

    def power_mw(self) -> int:
        return self._none()

    def power_instant_mw(self) -> int:
        return self._none()

    def energy_mj(self) -> int:
        return self._none()

    def utilization_pct(self) -> tuple[float, float]:
        return self._none()

    def memory_bytes(self) -> tuple[int, int]:
        return self._none()

    def clocks_mhz(self) -> tuple[float, float]:
        return self._none()

    def temperature_c(self) -> float:
        return self._none()

    def pcie_counters_bytes(self) -> tuple[int, int]:
        return self._none()

    def pcie_throughput_bytes_per_s(self) -> tuple[float, float]:
        return self._none()

    def throttle_reasons(self) -> int:
        return self._none()


#: nvmlValueType_t -> the member of nvmlValue_t holding it
_VALUE_MEMBERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


class NVMLDevice(GPUDevice):
    """A GPU read through pynvml (nvidia-ml-py). Construct with `open_device`."""

    def __init__(self, pynvml: Any, handle: Any, index: int, how: str) -> None:
        self._nvml = pynvml
        self._handle = handle
        self.index = index
        self.how = how  # how the NVML handle was matched to the torch device
        self._closed = False
        try:
            name = pynvml.nvmlDeviceGetName(handle)
            self.name = name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # noqa: BLE001 - the name is decoration
            self.name = ""
        # errors that only mean "not this metric"; anything else means NVML is gone
        self._unsupported = {getattr(pynvml, n) for n in (
            "NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_NO_PERMISSION", "NVML_ERROR_FUNCTION_NOT_FOUND",
            "NVML_ERROR_INVALID_ARGUMENT", "NVML_ERROR_NO_DATA", "NVML_ERROR_NOT_FOUND") if hasattr(pynvml, n)}

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._closed:
            raise DeviceLost("NVML device closed")
        try:
            return fn(self._handle, *args)
        except self._nvml.NVMLError as exc:
            if getattr(exc, "value", None) in self._unsupported:
                raise MetricUnsupported(one_line(exc)) from exc
            raise DeviceLost(one_line(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - a broken binding is NVML failing too
            raise DeviceLost(one_line(exc)) from exc

    def _fields(self, *field_ids: int) -> list[float]:
        """Numeric values of NVML fields, read as the type NVML says each one has."""
        nv = self._nvml
        out = []
        for value in self._call(nv.nvmlDeviceGetFieldValues, list(field_ids)):
            if value.nvmlReturn != nv.NVML_SUCCESS:
                raise MetricUnsupported(f"NVML field {value.fieldId}: return code {value.nvmlReturn}")
            member = _VALUE_MEMBERS.get(int(value.valueType))
            if member is None:
                raise MetricUnsupported(f"NVML field {value.fieldId}: value type {value.valueType}")
            out.append(getattr(value.value, member))
        return out

    def power_mw(self) -> int:
        return int(self._call(self._nvml.nvmlDeviceGetPowerUsage))

    def power_instant_mw(self) -> int:
        field = getattr(self._nvml, "NVML_FI_DEV_POWER_INSTANT", None)
        if field is None:
            raise MetricUnsupported("this pynvml has no NVML_FI_DEV_POWER_INSTANT")
        return int(self._fields(field)[0])

    def energy_mj(self) -> int:
        return int(self._call(self._nvml.nvmlDeviceGetTotalEnergyConsumption))

    def utilization_pct(self) -> tuple[float, float]:
        util = self._call(self._nvml.nvmlDeviceGetUtilizationRates)
        return float(util.gpu), float(util.memory)

    def memory_bytes(self) -> tuple[int, int]:
        info = self._call(self._nvml.nvmlDeviceGetMemoryInfo)
        return int(info.used), int(info.total)

    def clocks_mhz(self) -> tuple[float, float]:
        nv = self._nvml
        return (float(self._call(nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_SM)),
                float(self._call(nv.nvmlDeviceGetClockInfo, nv.NVML_CLOCK_MEM)))

    def temperature_c(self) -> float:
        nv = self._nvml
        return float(self._call(nv.nvmlDeviceGetTemperature, nv.NVML_TEMPERATURE_GPU))

    def pcie_counters_bytes(self) -> tuple[int, int]:
        nv = self._nvml
        tx_id, rx_id = getattr(nv, "NVML_FI_DEV_PCIE_COUNT_TX_BYTES", None), getattr(
            nv, "NVML_FI_DEV_PCIE_COUNT_RX_BYTES", None)
        if tx_id is None or rx_id is None:
            raise MetricUnsupported("this pynvml has no PCIe byte-counter fields")
        tx, rx = self._fields(tx_id, rx_id)
        return int(tx), int(rx)

    def pcie_throughput_bytes_per_s(self) -> tuple[float, float]:
        nv = self._nvml
        tx = self._call(nv.nvmlDeviceGetPcieThroughput, nv.NVML_PCIE_UTIL_TX_BYTES)
        rx = self._call(nv.nvmlDeviceGetPcieThroughput, nv.NVML_PCIE_UTIL_RX_BYTES)
        return float(tx) * 1024.0, float(rx) * 1024.0  # NVML reports KB/s

    def throttle_reasons(self) -> int:
        nv = self._nvml
        fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or nv.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(self._call(fn))

    def sample_period_ms(self, kind: str) -> float | None:
        """Median spacing of the driver's buffered samples (nvmlDeviceGetSamples), ms."""
        nv = self._nvml
        sample_type = {"power": "NVML_TOTAL_POWER_SAMPLES", "utilization": "NVML_GPU_UTILIZATION_SAMPLES"}[kind]
        try:
            _, samples = self._call(nv.nvmlDeviceGetSamples, getattr(nv, sample_type), 0)
        except (MetricUnsupported, DeviceLost, AttributeError):
            return None
        stamps = sorted({int(s.timeStamp) for s in samples})
        gaps = [(b - a) / 1000.0 for a, b in zip(stamps, stamps[1:], strict=False) if b > a]
        return statistics.median(gaps) if len(gaps) >= 2 else None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - shutting down a failed NVML is best effort
            pass


def _nvml_handle(pynvml: Any, device: torch.device) -> tuple[Any, int, str]:
    """The NVML handle of a torch CUDA device: by UUID, else via CUDA_VISIBLE_DEVICES, else by index."""
    index = device.index or 0
    try:
        uuid = str(torch.cuda.get_device_properties(index).uuid)
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
        return handle, int(pynvml.nvmlDeviceGetIndex(handle)), "uuid"
    except Exception:  # noqa: BLE001 - fall back to index mapping
        pass
    try:
        nvml_index = int(torch.cuda._get_nvml_device_index(index))
        how = "cuda_visible_devices"
    except Exception:  # noqa: BLE001
        nvml_index, how = index, "index"
    return pynvml.nvmlDeviceGetHandleByIndex(nvml_index), nvml_index, how


def open_device(device: torch.device | str) -> GPUDevice:
    """The management counters of `device`: an NVMLDevice, or a NullDevice saying why there are none."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return NullDevice(f"device is {dev}: NVML counters exist for NVIDIA GPUs only")
    try:
        import pynvml
    except Exception as exc:  # noqa: BLE001
        return NullDevice(f"pynvml (nvidia-ml-py) not importable: {one_line(exc)}")
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001
        return NullDevice(f"nvmlInit failed: {one_line(exc)}")
    try:
        handle, index, how = _nvml_handle(pynvml, dev)
    except Exception as exc:  # noqa: BLE001
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
        return NullDevice(f"no NVML handle for {dev}: {one_line(exc)}")
    return NVMLDevice(pynvml, handle, index, how)


def energy_update_period_ms(device: GPUDevice, max_s: float = 1.5, changes: int = 8,
                            clock: Callable[[], int] = time.perf_counter_ns,
                            sleep: Callable[[float], None] = time.sleep) -> float | None:
    """Measured update period of the total-energy counter (ms): poll it until it changed `changes`
    times (or `max_s` passed) and take the median spacing of the changes. None when it changed
    fewer than 3 times (no usable counter). Raises MetricUnsupported / DeviceLost from the device."""
    start = clock()
    last = device.energy_mj()
    stamps: list[int] = []
    while (clock() - start) / 1e9 < max_s and len(stamps) < changes + 1:
        value = device.energy_mj()
        if value != last:
            stamps.append(clock())
            last = value
        sleep(0.0005)
    gaps = [(b - a) / 1e6 for a, b in zip(stamps, stamps[1:], strict=False)]
    return statistics.median(gaps) if len(gaps) >= 2 else None
