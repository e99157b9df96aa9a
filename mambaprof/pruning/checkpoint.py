"""Saving and loading pruned models: the checkpoint half of the bridging layer.

What keeps a pruned block a drop-in (see also `physical`): its input and output shapes are
unchanged (only B, C and A lose state indices), the model's config states the new d_state, and the
decode cache is allocated from it. On disk:

- transformers models: a `save_pretrained` directory whose config states N' under the family's own key
  (`state_size` for Mamba/Mamba-2, `mamba_d_state` for Bamba, Zamba2, Falcon-H1 and Granite-4.0-H,
  `ssm_state_size` for Nemotron-H; `STATE_KEYS`). Plain `AutoModelForCausalLM.from_pretrained(dir)` loads it
  (Falcon-H1's mup_vector is rebuilt from the config at load, with the pruned length).
- mamba_ssm `MambaLMHeadModel`: its `save_pretrained` layout (config.json with `ssm_cfg.d_state` = N',
  pytorch_model.bin); `MambaLMHeadModel(MambaConfig(**config))` + `load_state_dict` loads it.
- When layers keep different N' (`--per-layer adaptive`), a config can hold only one d_state: layers
  below the largest N' are padded with inert states (zero B and C weights: they stay 0 and add 0, so
  the outputs are exactly those of the pruned model) and `mambaprof_pruning.json` beside the config
  records every layer's N'. `load_checkpoint` reads it and removes the padding again, so mambaprof
  (and anyone calling it) gets the compact per-layer sizes; stock loaders get the padded, exact model.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mambaprof import __version__
from mambaprof.errors import BadArgumentError, ModelLoadError
from mambaprof.model.loading import LoadedModel, load_hf_checkpoint, quiet_transformers
from mambaprof.model.structure import discover
from mambaprof.pruning.mixers import MixerView, mixer_views
from mambaprof.pruning.physical import select_states
from mambaprof.pruning.plan import PruningPlan

SIDECAR = "mambaprof_pruning.json"
MAMBA_SSM_WEIGHTS = "pytorch_model.bin"


#: config keys holding d_state, by transformers family (first one the config has wins)
STATE_KEYS = ("state_size", "mamba_d_state", "ssm_state_size")


def state_key(config: Any) -> str | None:
    """The config attribute holding the SSM state size in this transformers config, or None."""
    return next((k for k in STATE_KEYS if isinstance(getattr(config, k, None), int)), None)


def model_backend(model: nn.Module) -> str:
    """`transformers` (a PreTrainedModel whose config has a state-size key), `mamba_ssm` (MambaLMHeadModel)
    or `other`."""
    config = getattr(model, "config", None)
    if config is not None and state_key(config) is not None and hasattr(model, "save_pretrained"):
        return "transformers"
    if type(model).__name__ == "MambaLMHeadModel" and isinstance(getattr(config, "ssm_cfg", None), dict):
        return "mamba_ssm"
    return "other"


def set_config_state_size(model: nn.Module, d_state: int) -> None:
    """Write d_state into the model's config (the transformers family's key, mamba_ssm `ssm_cfg.d_state`)."""
    backend = model_backend(model)
    if backend == "transformers":
        setattr(model.config, state_key(model.config), d_state)
    elif backend == "mamba_ssm":
        model.config.ssm_cfg = {**model.config.ssm_cfg, "d_state": d_state}


def _inert_padding(view: MixerView, size: int) -> torch.Tensor:
    """Index keeping the first N' states of every group and adding inert ones up to `size`."""
    n = view.d_state
    row = torch.cat([torch.arange(n), torch.full((size - n,), -1, dtype=torch.long)])
    return row.unsqueeze(0).repeat(view.groups, 1)


def save_pruned(model: nn.Module, directory: Path, plan: PruningPlan, extra: dict[str, Any] | None = None) -> Path:
    """Save a pruned model so that its framework's loader loads it (padding uneven layers, see module doc).

    Returns the directory. Raises BadArgumentError for models neither transformers nor mamba_ssm can load.
    """
    backend = model_backend(model)
    if backend == "other":
        raise BadArgumentError(f"--save cannot save a {type(model).__name__}",
                               "it saves transformers PreTrainedModel and mamba_ssm MambaLMHeadModel models")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise BadArgumentError(f"--save {directory} is a file", "give a directory")
    views = mixer_views(discover(model))
    sizes = [v.d_state for v in views]
    largest = max(sizes)
    target = model
    if any(s != largest for s in sizes):
        target = copy.deepcopy(model)
        for view in mixer_views(discover(target)):
            if view.d_state < largest:
                select_states(view, _inert_padding(view, largest))
    set_config_state_size(target, largest)
    directory.mkdir(parents=True, exist_ok=True)
    target.save_pretrained(str(directory))
    sidecar = {"format": 1, "mambaprof_version": __version__, "backend": backend, "padded_to": largest,
               "layer_state_sizes": sizes, **plan.as_json(), **(extra or {})}
    (directory / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n")
    return directory


def is_mamba_ssm_dir(directory: Path) -> bool:
    """True when config.json is a mamba_ssm MambaConfig (has d_model and ssm_cfg)."""
    try:
        config = json.loads((Path(directory) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "ssm_cfg" in config and "d_model" in config


def _require_mamba_ssm(directory: Path, device: torch.device) -> None:
    from mambaprof.env import mamba_ssm_available

    if device.type != "cuda" or not mamba_ssm_available():
        raise ModelLoadError(f"{directory} is a mamba_ssm checkpoint", "load it on a CUDA GPU with mamba_ssm installed")


def _load_mamba_ssm(directory: Path, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    from mamba_ssm.models.config_mamba import MambaConfig
    from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

    config = json.loads((directory / "config.json").read_text())
    weights = directory / MAMBA_SSM_WEIGHTS
    if not weights.is_file():
        raise ModelLoadError(f"{directory} has no {MAMBA_SSM_WEIGHTS}", "save it with MambaLMHeadModel.save_pretrained")
    model = MambaLMHeadModel(MambaConfig(**config), device=device, dtype=dtype)
    state = torch.load(weights, map_location=device, weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelLoadError(f"weights in {directory} do not match config.json: {str(exc).splitlines()[0]}") from exc
    return LoadedModel(model=model.eval(), source="hf", ref=str(directory), config={**config, "backend": "mamba_ssm"})


def load_checkpoint(directory: Path, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """Load a transformers or mamba_ssm checkpoint directory, undoing inert padding per the sidecar."""
    directory = Path(directory)
    quiet_transformers()
    if not directory.is_dir():
        raise ModelLoadError(f"checkpoint directory {directory} does not exist", "check the --hf path")
    if is_mamba_ssm_dir(directory):
        _require_mamba_ssm(directory, device)
        loaded = _load_mamba_ssm(directory, device, dtype)
    else:
        loaded = load_hf_checkpoint(directory, device, dtype)
    sidecar = directory / SIDECAR
    if sidecar.is_file():
        info = json.loads(sidecar.read_text())
        sizes = info.get("layer_state_sizes") or []
        views = mixer_views(discover(loaded.model))
        if len(sizes) != len(views):
            raise ModelLoadError(f"{SIDECAR} in {directory} lists {len(sizes)} layers, the model has {len(views)}")
        for view, size in zip(views, sizes, strict=True):
            if size < view.d_state:
                select_states(view, torch.arange(size).unsqueeze(0).repeat(view.groups, 1))
        loaded.config = {**loaded.config, "mambaprof_pruning": info}
    return loaded
