"""Turn what the user named (model.py, checkpoint directory, preset, nothing) into a ready model.

model.py contract: the file defines `build_model()` returning an nn.Module (it may accept
`device` and `dtype` keyword arguments), or a module-level `model`; optionally
`make_inputs(batch, seqlen, device, dtype)` returning a tensor, a tuple of positional arguments or
a dict of keyword arguments for the model. Without it, token ids of the model's vocabulary are
drawn (or hidden states of width d_model when the model has no embedding). The file is executed
as Python, exactly as `python model.py` would be.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mambaprof.errors import BadArgumentError, ModelLoadError
from mambaprof.model.presets import DEFAULT_PRESET, build_hf, build_mamba_ssm, get_preset

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32, "float32": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16,
}
MakeInputs = Callable[[int, int, torch.device, torch.dtype], Any]


@dataclass
class LoadedModel:
    """A model ready to trace, and where it came from."""

    model: nn.Module
    source: str  # default | preset | hf | file
    ref: str
    make_inputs: MakeInputs | None = None
    config: dict[str, Any] = field(default_factory=dict)


def quiet_transformers() -> None:
    """Keep transformers' warnings (e.g. "falling back to the reference implementation", which is
    the expected CPU path) off the terminal; the run record says which kernels were there."""
    try:
        from transformers.utils import logging as hf_logging
    except Exception:  # noqa: BLE001 - transformers missing or broken: nothing to quiet
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda:0 when a GPU is there, else cpu; otherwise the named device, checked."""
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise BadArgumentError(f"--device {name!r} is not a device", "use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadArgumentError("--device cuda asked for, but no CUDA GPU is available", "use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise BadArgumentError(f"--device {name!r} is not supported", "use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda:0")
    return dev


def resolve_dtype(name: str | None, device: torch.device) -> torch.dtype:
    """Parse --dtype (default: bf16 on GPU, fp32 on CPU) and check the device supports it."""
    if name is None or name == "auto":
        name = "bf16" if device.type == "cuda" else "fp32"
    dtype = DTYPES.get(name.lower())
    if dtype is None:
        raise BadArgumentError(f"--dtype {name!r} is not supported", "use fp32, bf16 or fp16")
    if device.type == "cpu" and dtype == torch.float16:
        raise BadArgumentError("--dtype fp16 is not supported on the CPU path", "use fp32 or bf16 on CPU")
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise BadArgumentError(f"--dtype bf16 is not supported by {torch.cuda.get_device_name(device)}",
                               "use fp16 or fp32 on this GPU")
    return dtype


def _where(exc: BaseException, path: Path) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    return f" (at {path.name}:{frames[-1].lineno})" if frames else ""


def _exc_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def check_model_file(path: Path) -> None:
    """ModelLoadError (one line) when `path` cannot be opened at all: missing, a symlink loop, no permission."""
    path = Path(path)
    try:
        path.stat()
    except FileNotFoundError:
        raise ModelLoadError(f"model file {path} does not exist", "check the path") from None
    except OSError as exc:  # a symlink loop (ELOOP), a name too long, no permission to look
        raise ModelLoadError(f"model file {path} cannot be opened: {exc.strerror or exc}",
                             "check the path (a symbolic link that points to itself?)") from None


def import_model_file(path: Path) -> Any:
    """Execute model.py and return its module object (user code runs here)."""
    path = Path(path)
    check_model_file(path)
    if not path.exists():
        raise ModelLoadError(f"model file {path} does not exist", "check the path")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a directory, not a model file",
                             "for a transformers checkpoint directory use --hf DIR")
    if path.suffix != ".py":
        raise ModelLoadError(f"{path} is not a Python file (.py)", "pass a model.py that defines build_model()")
    path = path.resolve()
    name = f"mambaprof_user_model_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import {path}", "is it a readable Python file?")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        where = f"{path.name}:{exc.lineno}" if exc.lineno is not None else path.name
        raise ModelLoadError(f"{where}: syntax error: {exc.msg}", "fix the file") from exc
    except ValueError as exc:  # compile() refuses source with null bytes before any line is parsed
        if "null bytes" not in str(exc):
            raise ModelLoadError(f"importing {path.name} raised {_exc_line(exc)}{_where(exc, path)}",
                                 "fix the file; run with --debug for the traceback") from exc
        raise ModelLoadError(f"{path.name} is not Python source: it contains null bytes",
                             "pass a model.py text file that defines build_model()") from exc
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        hint = ("mamba_ssm/causal_conv1d need a CUDA machine: pip install 'mambaprof[cuda]' there, or use a "
                "transformers model (examples/hf_mamba.py) on the CPU"
                if missing.split(".")[0] in ("mamba_ssm", "causal_conv1d", "selective_scan_cuda")
                else "install the module the file imports, or fix the import")
        raise ModelLoadError(f"importing {path.name} raised {_exc_line(exc)}{_where(exc, path)}", hint) from exc
    except SystemExit as exc:  # sys.exit()/exit() at import: the file stopped instead of defining a model
        raise ModelLoadError(f"importing {path.name} called sys.exit({exc.code!r}){_where(exc, path)}",
                             "a model file must not exit; remove the call") from None
    except Exception as exc:  # noqa: BLE001 - user code can raise anything
        raise ModelLoadError(f"importing {path.name} raised {_exc_line(exc)}{_where(exc, path)}",
                             "fix the file; run with --debug for the traceback") from exc
    finally:
        try:
            sys.path.remove(str(path.parent))
        except ValueError:
            pass
    return module


def load_model_file(path: Path, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """model.py -> LoadedModel (see the module docstring for the contract)."""
    path = Path(path)
    quiet_transformers()
    module = import_model_file(path)
    build = getattr(module, "build_model", None)
    if build is not None:
        if not callable(build):
            raise ModelLoadError(f"build_model in {path.name} is not a function")
        params = inspect.signature(build).parameters
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if k in params}
        try:
            model = build(**kwargs)
        except SystemExit as exc:  # sys.exit(0) must not pass for a clean exit with nothing done
            where = _where(exc, path.resolve())
            raise ModelLoadError(f"build_model() in {path.name} called sys.exit({exc.code!r}){where}",
                                 "build_model must return the model; remove the call") from None
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"build_model() in {path.name} raised {_exc_line(exc)}{_where(exc, path.resolve())}",
                                 "run with --debug for the traceback") from exc
        what = "build_model()"
    elif hasattr(module, "model"):
        model, what, kwargs = module.model, "`model`", {}
    else:
        raise ModelLoadError(f"{path.name} defines neither build_model() nor a module-level `model`",
                             "add `def build_model(): return MyModel()`")
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{what} in {path.name} gave {type(model).__name__}, not a torch.nn.Module",
                             "return the model itself")
    make_inputs = getattr(module, "make_inputs", None)
    if make_inputs is not None and not callable(make_inputs):
        raise ModelLoadError(f"make_inputs in {path.name} is not a function")
    model = _place(model, device, None if "dtype" in kwargs else dtype)
    return LoadedModel(model=model, source="file", ref=str(path), make_inputs=make_inputs)


def load_hf_checkpoint(directory: Path, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """A transformers `save_pretrained` directory (local files only, never the hub)."""
    directory = Path(directory)
    quiet_transformers()
    if not directory.is_dir():
        raise ModelLoadError(f"checkpoint directory {directory} does not exist", "check the --hf path")
    if not (directory / "config.json").is_file():
        raise ModelLoadError(f"{directory} has no config.json", "is it a save_pretrained() directory?")
    weights = list(directory.glob("*.safetensors")) + list(directory.glob("*.bin"))
    if not weights:
        raise ModelLoadError(f"{directory} has config.json but no weights (*.safetensors or *.bin)",
                             "save the model with save_pretrained()")
    try:
        from transformers import AutoConfig, AutoModelForCausalLM

        config = AutoConfig.from_pretrained(directory, local_files_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"config.json in {directory} could not be read: {_exc_line(exc)}",
                             "is it a transformers config?") from exc
    try:
        model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, dtype=dtype)
    except Exception as exc:  # noqa: BLE001
        if "mismatched_sizes" in str(exc) or "size mismatch" in str(exc):
            raise ModelLoadError(f"loading the checkpoint in {directory} failed: the weights' shapes do not match "
                                 "config.json", "was config.json edited, or saved from another model?") from exc
        raise ModelLoadError(f"loading the checkpoint in {directory} failed: {_exc_line(exc)}",
                             "do the weights match config.json?") from exc
    return LoadedModel(model=_place(model, device, dtype), source="hf", ref=str(directory),
                       config=config.to_dict())


def load_preset(name: str, device: torch.device, dtype: torch.dtype, backend: str = "auto",
                source: str = "preset") -> LoadedModel:
    """A preset (random weights). backend: `hf` (transformers), `mamba_ssm`, or `auto`
    (mamba_ssm on a GPU where it imports, transformers otherwise)."""
    from mambaprof.env import mamba_ssm_available

    preset = get_preset(name)
    quiet_transformers()
    if backend == "auto":
        backend = "mamba_ssm" if device.type == "cuda" and mamba_ssm_available() and not preset.hf_family else "hf"
    if backend == "mamba_ssm" and preset.hf_family:
        raise BadArgumentError(f"preset {name} is a transformers {preset.hf_family} model",
                               "use --backend hf (it calls the mamba_ssm kernels where they are installed)")
    torch.manual_seed(0)
    if backend == "mamba_ssm":
        if device.type != "cuda" or not mamba_ssm_available():
            raise BadArgumentError("--backend mamba_ssm needs a CUDA GPU with mamba_ssm installed",
                                   "install mambaprof[cuda] on a GPU machine, or use --backend hf")
        model = build_mamba_ssm(preset, device, dtype)
    elif backend == "hf":
        model = _place(build_hf(preset, device, dtype) if preset.hf_family else build_hf(preset), device, dtype)
    else:
        raise BadArgumentError(f"--backend {backend!r} is not one of auto, hf, mamba_ssm")
    return LoadedModel(model=model, source=source, ref=name, config={**preset.as_dict(), "backend": backend})


def load_default(device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """The embedded default: the `mamba-tiny` preset through transformers (CPU friendly)."""
    return load_preset(DEFAULT_PRESET, device, dtype, backend="hf", source="default")


def _place(model: nn.Module, device: torch.device, dtype: torch.dtype | None) -> nn.Module:
    meta = next((name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta), None)
    if meta is not None:
        raise ModelLoadError(f"the model's {meta} is on the meta device (a shape without data)",
                             "build the model with real weights (not under torch.device('meta') or init_empty_weights)")
    model = model.to(device=device) if dtype is None else model.to(device=device, dtype=dtype)
    return model.eval()
