"""Shared fixtures (helpers themselves live in tests/support/): a tiny model of each family, the CLI runner."""

from __future__ import annotations

import os

import pytest
import torch
from support.cli import run_cli
from support.models import tiny_mamba, tiny_mamba2

os.environ.setdefault("KINETO_LOG_LEVEL", "5")


@pytest.fixture(params=["mamba1", "mamba2"])
def tiny_model(request: pytest.FixtureRequest) -> torch.nn.Module:
    return tiny_mamba() if request.param == "mamba1" else tiny_mamba2()


@pytest.fixture
def cli():
    return run_cli

