"""Facts about the machine and software a run depends on (for `mambaprof env` and the run record)."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import socket
import sys
from dataclasses import asdict, dataclass
from typing import Any

import torch


def package_version(dist: str) -> str | None:
    """Installed version of a distribution, or None if it is not installed."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def importable(module: str) -> tuple[bool, str | None]:
    """(True, None) if `module` imports, else (False, the one-line reason)."""
    try:
        importlib.import_module(module)
        return True, None
    except Exception as exc:  # noqa: BLE001 - any import failure is a fact to report
        return False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def mamba_ssm_available() -> bool:
    """True when mamba_ssm and causal_conv1d import (they need CUDA; never on the CPU path)."""
    return torch.cuda.is_available() and importable("mamba_ssm")[0] and importable("causal_conv1d")[0]


def cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo, or platform.processor()."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvml_status() -> tuple[bool, str | None, str | None]:
    """(available, driver_version, reason if unavailable) from NVML."""
    try:
        import pynvml
    except Exception as exc:  # noqa: BLE001
        return False, None, f"pynvml not importable: {exc}"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001
        return False, None, f"nvmlInit failed: {exc}"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        if isinstance(driver, bytes):
            driver = driver.decode()
        return True, driver, None
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


@dataclass
class EnvFacts:
    """What `mambaprof env` prints and each run records. Sizes in bytes."""

    device: str
    device_name: str
    device_count: int
    device_memory_bytes: int | None
    compute_capability: str | None
    driver_version: str | None
    nvml_available: bool
    nvml_reason: str | None
    cuda_version: str | None
    torch_version: str
    transformers_version: str | None
    mamba_ssm_version: str | None
    mamba_ssm_importable: bool
    mamba_ssm_reason: str | None
    causal_conv1d_version: str | None
    triton_version: str | None
    python_version: str
    platform: str
    hostname: str

    def as_dict(self) -> dict[str, Any]:
        """Plain dict of the facts."""
        return asdict(self)


def collect_env(device: str | None = None) -> EnvFacts:
    """Gather the facts for `device` (default: cuda:0 if available, else cpu)."""
    if device is None:
        device = "cuda:0" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    mem = cc = None
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        name, mem, cc = props.name, int(props.total_memory), f"{props.major}.{props.minor}"
    else:
        name = cpu_name()
    nvml_ok, driver, nvml_reason = nvml_status()
    mamba_ok, mamba_reason = (False, "not installed")
    if package_version("mamba-ssm") or package_version("mamba_ssm"):
        if torch.cuda.is_available():
            mamba_ok, mamba_reason = importable("mamba_ssm")
        else:
            mamba_reason = "installed, but it needs CUDA (no GPU here)"
    return EnvFacts(
        device=str(dev) if dev.type == "cpu" else f"cuda:{dev.index or 0}",
        device_name=name,
        device_count=torch.cuda.device_count() if torch.cuda.is_available() else 0,
        device_memory_bytes=mem,
        compute_capability=cc,
        driver_version=driver,
        nvml_available=nvml_ok,
        nvml_reason=nvml_reason,
        cuda_version=torch.version.cuda,
        torch_version=torch.__version__,
        transformers_version=package_version("transformers"),
        mamba_ssm_version=package_version("mamba-ssm") or package_version("mamba_ssm"),
        mamba_ssm_importable=mamba_ok,
        mamba_ssm_reason=mamba_reason,
        causal_conv1d_version=package_version("causal-conv1d") or package_version("causal_conv1d"),
        triton_version=package_version("triton"),
        python_version=sys.version.split()[0],
        platform=f"{platform.system()} {platform.release()} {platform.machine()}",
        hostname=socket.gethostname(),
    )
