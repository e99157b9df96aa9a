"""Where `mambaprof calibrate`'s measured peaks (`mambaprof.collectors.calibration`) are kept and how reports
find them: the peaks built from the measurements, stored per device name
in `peaks.json` in the user config directory (`$MAMBAPROF_CONFIG_DIR`, else
`$XDG_CONFIG_HOME/mambaprof`, else `~/.config/mambaprof`); a report over a run from a device of that
name uses them (an explicit `--peaks FILE` wins).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mambaprof.errors import MambaprofError
from mambaprof.reports.peaks import DevicePeaks, peaks_from_dict

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


def calibrated_peaks(device_name: str, measurements: Sequence[dict[str, Any]]) -> DevicePeaks:
    """The roofline peaks of `mambaprof calibrate`'s measurements (dicts with `what` and `rate`): GEMM TFLOP/s per
    dtype from `gemm <dtype>` rows, GB/s from the `copy` row."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    copy = [m["rate"] for m in measurements if m["what"] == "copy"]
    return DevicePeaks(
        name=device_name, tflop_per_s={m["what"].split()[1]: m["rate"] for m in measurements
                                       if m["what"].startswith("gemm")},
        gb_per_s=copy[0] if copy else None, source=f"mambaprof calibrate on {stamp}", kind="calibrated")


def store_calibration(peaks: DevicePeaks, measurements: Sequence[dict[str, Any]], path: Path | None = None) -> Path:
    """Save `peaks` under its device name in the calibration file (other devices are kept)."""
    path = path or calibration_path()
    data = _read_store(path)
    data["devices"][peaks.name] = {
        "name": peaks.name, "tflop_per_s": peaks.tflop_per_s, "gb_per_s": peaks.gb_per_s, "source": peaks.source,
        "measurements": [dict(m) for m in measurements],
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
