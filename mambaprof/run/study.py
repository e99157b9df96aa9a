"""The PerfMamba study in one command: several models, one sweep grid, one run directory each.

A study directory holds one ordinary run directory per model (`<out>/<model>/`) plus the study
report written from them. Models run one after another, smallest first, each freed before the next;
a model that fails to load is recorded and the study goes on.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from mambaprof.collectors.hardware import HardwareCollectors, HardwareOptions, build_hardware
from mambaprof.errors import MambaprofError, RunDirectoryError
from mambaprof.model.loading import LoadedModel
from mambaprof.model.presets import PRESETS, get_preset
from mambaprof.model.structure import ModelStructure
from mambaprof.run.decode import DecodeConfig, run_decode_sweep
from mambaprof.run.sweep import ProgressFn, TraceConfig
from mambaprof.run.tracing import ModelSource, trace
from mambaprof.storage.rundir import MARKER, STUDY_FILE, RunWriter, utcnow

#: Models of the default study: the 130m and 1.4b-class of each family (the paper's two families).
DEFAULT_MODELS = ("mamba-130m", "mamba2-130m", "mamba-1.4b", "mamba2-1.3b")
DEFAULT_SEQLENS = "64..16384"
DEFAULT_BATCHES = "1,8"


@dataclass
class ModelOutcome:
    """How one model of the study ended."""

    model: str
    run_dir: str | None
    status: str
    reason: str | None
    n_points: int = 0
    n_ok: int = 0


@dataclass
class StudyOutcome:
    """A finished (or stopped) study: where, which models, how each ended."""

    out: Path
    started_at: str
    finished_at: str | None = None
    models: list[ModelOutcome] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    #: the decode phase's runs (`<out>/<model>-decode/`), one per model, when the study ran it
    decode: list[ModelOutcome] = field(default_factory=list)

    @property
    def run_dirs(self) -> list[Path]:
        """Run directories that hold at least one finished point."""
        return [Path(m.run_dir) for m in self.models if m.run_dir and m.n_ok > 0]

    def write(self) -> None:
        """The study manifest (`study.json`): models, their run directories and statuses."""
        data = {"started_at": self.started_at, "finished_at": self.finished_at, "config": self.config,
                "models": [asdict(m) for m in self.models], "decode": [asdict(m) for m in self.decode]}
        tmp = self.out / f".{STUDY_FILE}.tmp"
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.out / STUDY_FILE)


def per_model_progress(progress: ProgressFn | None, models: list[str], per_model: int) -> list[ProgressFn]:
    """One progress callback per model (done, total, what) that counts points across the whole study."""
    report = progress or (lambda done, total_, desc: None)
    total = per_model * len(models)

    def for_model(index: int, name: str) -> ProgressFn:
        return lambda done, _total, desc: report(index * per_model + done, total, f"{name} {desc}")

    return [for_model(i, name) for i, name in enumerate(models)]


def free_model_memory() -> None:
    """Let the finished model's tensors go before the next model of the study is built."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def check_models(names: list[str]) -> list[str]:
    """Validate preset names; order them smallest first (by d_model x layers)."""
    presets = [get_preset(n) for n in names]
    presets.sort(key=lambda p: (p.d_model * p.n_layer, p.family))
    return [p.name for p in presets]


def prepare_study_dir(out: Path, force: bool) -> None:
    """Create the study directory, refusing an existing study unless force (never others' files)."""
    if out.exists() and not out.is_dir():
        raise RunDirectoryError(f"--out {out} is a file, not a directory", "choose a new directory name")
    if out.is_dir() and any(out.iterdir()):
        if not (out / STUDY_FILE).exists() and not (out / MARKER).exists():
            raise RunDirectoryError(f"--out {out} exists and is not empty",
                                    "mambaprof never writes into a folder of other files; choose a new one")
        if not force:
            raise RunDirectoryError(f"--out {out} already holds a study", "pass --force to replace it")
    out.mkdir(parents=True, exist_ok=True)


def run_study(models: list[str], base: TraceConfig, out: Path, backend: str = "auto", force: bool = False,
              progress: Callable[[int, int, str], None] | None = None, debug: bool = False,
              hardware: HardwareOptions | None = None, decode: DecodeConfig | None = None) -> StudyOutcome:
    """Trace every model over the same grid into `<out>/<model>/`; one progress count across all.

    hardware: which hardware collectors each model's trace runs (None: none).
    decode: also run the decode phase of each model into `<out>/<model>-decode/` (None: no decode phase).
    """
    models = check_models(models)
    prepare_study_dir(out, force)
    per_model = len(base.points())
    outcome = StudyOutcome(out=out, started_at=utcnow().isoformat(),
                           config={"models": models, "config": json.loads(base.as_json()), "backend": backend})
    outcome.write()
    for name, model_progress in zip(models, per_model_progress(progress, models, per_model), strict=True):
        run_dir = out / name
        try:
            writer = RunWriter(run_dir, force=force)
            collectors = HardwareCollectors()
            if hardware is not None:
                collectors = build_hardware(hardware, base.device, run_dir, writer.run_id,
                                            {"model_file": None, "hf_dir": None, "preset": name, "backend": backend},
                                            str(base.dtype).replace("torch.", ""), base.mode, base.seed, base.warmup)
            result = trace(ModelSource(preset=name, backend=backend), base, run_dir, force=force,
                           progress=model_progress, debug=debug, writer=writer, extra_collectors=collectors.point,
                           run_collectors=collectors.run)
            res = result.result
            outcome.models.append(ModelOutcome(name, str(run_dir), res.status, res.reason, len(res.point_rows),
                                               res.counts.get("ok", 0)))
            if decode is not None and res.interrupted_by is None:
                dec = _decode_phase(name, result.loaded, result.structure, decode, out, force, debug)
                outcome.decode.append(dec)
                if dec.status == "interrupted":
                    break
            del result
            if res.interrupted_by is not None:
                break
        except MambaprofError as exc:
            if debug:
                raise
            outcome.models.append(ModelOutcome(name, str(run_dir) if run_dir.exists() else None, "failed",
                                               exc.one_line()))
        finally:
            free_model_memory()
            outcome.write()
        model_progress(per_model, per_model, "done")
    outcome.finished_at = utcnow().isoformat()
    outcome.write()
    return outcome


def _decode_phase(name: str, loaded: LoadedModel, structure: ModelStructure, config: DecodeConfig, out: Path,
                  force: bool,
                  debug: bool) -> ModelOutcome:
    """The decode sweep of one study model (already loaded) into `<out>/<name>-decode/`."""
    run_dir = out / f"{name}-decode"
    writer = RunWriter(run_dir, force=force)
    writer.prepare()
    res = run_decode_sweep(loaded, structure, config, writer, debug=debug)
    status = "interrupted" if res.interrupted_by is not None else res.status
    return ModelOutcome(name, str(run_dir), status, res.reason, len(res.point_rows), res.counts.get("ok", 0))


def known_models() -> str:
    """Comma-separated preset names, for help texts."""
    return ", ".join(PRESETS)
