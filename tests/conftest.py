"""Shared fixtures (the helpers themselves live in tests/support/): a tiny model of each family, the CLI runners.

`cli` runs `mambaprof ARGS` in a fresh process forked from a warm one (support.forked_cli: same exit code, same
stdout/stderr, without re-importing torch for each call); `real_cli` is a true `python -m mambaprof` subprocess,
which every command keeps at least one test through.
"""

from __future__ import annotations

import os

import pytest
import torch
from support.cli import run_cli
from support.forked_cli import ForkedCli
from support.models import tiny_mamba, tiny_mamba2

os.environ.setdefault("KINETO_LOG_LEVEL", "5")
# One intra-op thread per process unless the caller says otherwise: the suite runs two test processes on two cores
# (`pytest -n 2`), each starting CLI processes of its own, and torch's default of a thread per core oversubscribes
# the machine (idle threads spin: measured 15-40% more CPU for the same trace). Children inherit the variable; this
# process's own pool is set here too (torch is already imported). No test's result depends on the thread count.
if "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(params=["mamba1", "mamba2"])
def tiny_model(request: pytest.FixtureRequest) -> torch.nn.Module:
    return tiny_mamba() if request.param == "mamba1" else tiny_mamba2()


@pytest.fixture(scope="session")
def forked_cli():
    runner = ForkedCli()
    yield runner
    runner.close()


@pytest.fixture
def cli(forked_cli):
    return forked_cli


@pytest.fixture
def real_cli():
    return run_cli



def pytest_configure(config: pytest.Config) -> None:
    # `--dist loadfile` (pytest-xdist) hands out files in the collection order below, not most-tests-first: a file of
    # two slow tests handed out last kept one worker busy long after the other had finished
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files that hold a test marked `slow` run first (each file's tests keep their order), so that the workers of
    `pytest -n 2 --dist loadfile` end with the quick files and finish together."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: item.path not in slow_files)
