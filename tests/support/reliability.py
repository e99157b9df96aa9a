"""Shared helpers of the reliability suite."""

from __future__ import annotations

import textwrap
from pathlib import Path

from support.cli import CliResult

FAST = ["--repeats", "1", "--warmup", "0", "--profile-repeats", "1", "--quiet", "--no-tb"]

TINY_HF = """
    from transformers import MambaConfig, MambaForCausalLM

    def build_model():
        return MambaForCausalLM(MambaConfig(vocab_size=128, hidden_size=32, state_size=4,
                                            num_hidden_layers=2, use_cache=False))
"""


def write(tmp_path: Path, body: str, name: str = "model.py") -> Path:
    """Write a dedented file and return its path."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def assert_one_line_error(res: CliResult, expect: str, code: int | None = None) -> str:
    """A failed command printed exactly one `error: ...` line containing `expect`, and no traceback."""
    assert res.returncode != 0, res.stdout
    if code is not None:
        assert res.returncode == code, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert expect in lines[0], lines[0]
    return lines[0]
