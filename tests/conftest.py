"""Shared fixtures: tiny transformers Mamba/Mamba2 models and a subprocess CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"

os.environ.setdefault("KINETO_LOG_LEVEL", "5")


def tiny_mamba(layers: int = 2, d_model: int = 64, vocab: int = 256, seed: int = 0) -> torch.nn.Module:
    """A transformers MambaForCausalLM small enough for CPU tests."""
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(seed)
    cfg = MambaConfig(vocab_size=vocab, hidden_size=d_model, state_size=8, num_hidden_layers=layers, expand=2,
                      use_cache=False)
    return MambaForCausalLM(cfg).eval()


def tiny_mamba2(layers: int = 2, d_model: int = 64, vocab: int = 256, seed: int = 0) -> torch.nn.Module:
    """A transformers Mamba2ForCausalLM small enough for CPU tests."""
    from transformers import Mamba2Config, Mamba2ForCausalLM

    torch.manual_seed(seed)
    cfg = Mamba2Config(vocab_size=vocab, hidden_size=d_model, state_size=16, num_hidden_layers=layers, expand=2,
                       head_dim=16, num_heads=8, n_groups=1, chunk_size=16, use_cache=False)
    return Mamba2ForCausalLM(cfg).eval()


@pytest.fixture(params=["mamba1", "mamba2"])
def tiny_model(request: pytest.FixtureRequest) -> torch.nn.Module:
    return tiny_mamba() if request.param == "mamba1" else tiny_mamba2()


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict[str, str] | None = None) -> CliResult:
    """Run `python -m mambaprof ARGS` in a fresh process (as a user would)."""
    full_env = {**os.environ, "KINETO_LOG_LEVEL": "5", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "mambaprof", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli():
    return run_cli


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
