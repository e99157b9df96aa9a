"""One call from "what the user named" to a finished run directory (used by trace, study, demo)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mambaprof.collectors.context import PointCollector, RunCollector
from mambaprof.errors import BadArgumentError
from mambaprof.model.inputs import make_call
from mambaprof.model.loading import (
    LoadedModel,
    check_model_file,
    load_default,
    load_hf_checkpoint,
    load_model_file,
    load_preset,
)
from mambaprof.model.structure import ModelStructure, discover
from mambaprof.run.sweep import ProgressFn, SweepResult, TraceConfig, run_sweep
from mambaprof.storage.rundir import RunWriter


@dataclass
class ModelSource:
    """Exactly one of: a model.py path, a checkpoint directory, a preset name, or nothing (default)."""

    model_file: Path | None = None
    hf_dir: Path | None = None
    preset: str | None = None
    backend: str = "auto"

    def check(self) -> None:
        """Refuse more than one source."""
        given = [n for n, v in (("MODEL_FILE", self.model_file), ("--hf", self.hf_dir), ("--preset", self.preset))
                 if v is not None]
        if len(given) > 1:
            raise BadArgumentError(f"give only one model source, not {' and '.join(given)}")
        if self.model_file is not None:
            check_model_file(self.model_file)

    def load(self, device: torch.device, dtype: torch.dtype) -> LoadedModel:
        """Load the model onto `device` in `dtype`."""
        self.check()
        if self.model_file is not None:
            return load_model_file(self.model_file, device, dtype)
        if self.hf_dir is not None:
            return load_hf_checkpoint(self.hf_dir, device, dtype)
        if self.preset is not None:
            return load_preset(self.preset, device, dtype, backend=self.backend)
        return load_default(device, dtype)


@dataclass
class TraceOutcome:
    """A finished trace: where it is, what was traced, how it ended."""

    run_dir: Path
    run_id: str
    loaded: LoadedModel
    structure: ModelStructure
    result: SweepResult


def trace(source: ModelSource, config: TraceConfig, out: Path, force: bool = False,
          extra_collectors: Sequence[PointCollector] = (), progress: ProgressFn | None = None,
          debug: bool = False, writer: RunWriter | None = None, identity: dict[str, Any] | None = None,
          points: Sequence[tuple[int, int, int]] | None = None,
          run_collectors: Sequence[RunCollector] = ()) -> TraceOutcome:
    """Load, discover mixers, prepare the run directory, sweep. Errors before the sweep raise; `out` is
    checked before the model loads (a refused --out costs no load) and its lock released at the end."""
    writer = writer or RunWriter(out, force=force)
    writer.check()
    loaded = source.load(config.device, config.dtype)
    structure = discover(loaded.model)
    if loaded.make_inputs is not None:  # fail fast, before any directory is made, on inputs that cannot work
        batch, seqlen = config.points()[0]
        make_call(loaded.model, structure, batch, seqlen, config.device, config.dtype, loaded.make_inputs)
    writer.prepare()
    try:
        result = run_sweep(loaded, structure, config, writer, extra_collectors=extra_collectors, progress=progress,
                           debug=debug, identity=identity, points=points, run_collectors=run_collectors)
    finally:
        writer.release()
    return TraceOutcome(run_dir=writer.out, run_id=writer.run_id, loaded=loaded, structure=structure,
                        result=result)
