"""Bad input: each case is one clear `error: ...` line and a non-zero exit, never a traceback."""

from __future__ import annotations

import pytest
from support.models import tiny_mamba
from support.reliability import FAST, TINY_HF, assert_one_line_error, write

pytestmark = pytest.mark.reliability("bad-input")

MODEL_FILES = {
    "missing": (None, "does not exist"),
    "not-python": ("x = 1\n", "is not a Python file (.py)"),
    "directory": ("DIR", "is a directory, not a model file"),
    "no-model": ("x = 1\n", "defines neither build_model() nor a module-level `model`"),
    "syntax": ("def build_model(:\n    pass\n", "model.py:1: syntax error"),
    "import-raises": ("import json\nraise RuntimeError('no GPU here')\n",
                      "importing model.py raised RuntimeError: no GPU here (at model.py:2)"),
    "import-missing-module": ("import not_a_real_module_xyz\n",
                              "raised ModuleNotFoundError: No module named 'not_a_real_module_xyz'"),
    "build-raises": ("def build_model():\n    return 1 / 0\n",
                     "build_model() in model.py raised ZeroDivisionError: division by zero (at model.py:2)"),
    "build-returns-int": ("def build_model():\n    return 3\n", "gave int, not a torch.nn.Module"),
    "model-is-string": ("model = 'mamba'\n", "`model` in model.py gave str, not a torch.nn.Module"),
    "no-mamba": ("import torch\ndef build_model():\n    return torch.nn.Linear(4, 4)\n",
                 "no supported Mamba mixer (supported mixer classes:"),
}


@pytest.mark.parametrize("case", sorted(MODEL_FILES))
def test_bad_model_file(tmp_path, cli, case):
    body, expect = MODEL_FILES[case]
    path = tmp_path / ("model.txt" if case == "not-python" else "model.py")
    if body == "DIR":
        path.mkdir()
    elif body is not None:
        path.write_text(body)
    res = cli("trace", str(path), "--out", str(tmp_path / "run"), "--seqlens", "16", "--quiet")
    assert_one_line_error(res, expect)
    assert not (tmp_path / "run").exists()  # nothing written for a model that never loaded


MAKE_INPUTS = {
    "wrong-shape": ("return torch.randint(0, 128, (batch, seqlen + 1), device=device)",
                    "returned int64 (1, 17); no tensor starts with batch 1 x seqlen 16"),
    "float-ids": ("return torch.rand(batch, seqlen, device=device) * 100",
                  "starts with an embedding (vocabulary 128), which takes integer token ids of shape (1, 16)"),
    "extra-dim": ("return torch.randint(0, 128, (batch, seqlen, 3), device=device)",
                  "returned int64 (1, 16, 3); the model starts with an embedding"),
    "wrong-dtype": ("return {'inputs_embeds': torch.randn(batch, seqlen, 32, dtype=torch.float64)}",
                    "returned a float64 tensor, but --dtype is float32"),
    "not-a-tensor": ("return 'tokens'", "make_inputs returned str; expected a tensor, tuple or dict"),
    "raises": ("raise ValueError('bad seqlen')", "make_inputs(1, 16, ...) raised ValueError: bad seqlen"),
    "no-tensor": ("return {'input_ids': [1, 2, 3]}", "make_inputs returned no tensor"),
}


@pytest.mark.parametrize("case", sorted(MAKE_INPUTS))
def test_bad_make_inputs(tmp_path, cli, case):
    body, expect = MAKE_INPUTS[case]
    path = write(tmp_path, TINY_HF + f"""
    import torch

    def make_inputs(batch, seqlen, device, dtype):
        {body}
    """)
    res = cli("trace", str(path), "--out", str(tmp_path / "run"), "--seqlens", "16", *FAST)
    assert_one_line_error(res, expect)


@pytest.mark.parametrize("option,value,expect", [
    ("--seqlens", "", "--seqlens is empty"),
    ("--seqlens", "64,abc", "'abc' is not a whole number"),
    ("--seqlens", "-64", "must be at least 1"),
    ("--seqlens", "0", "must be at least 1"),
    ("--seqlens", "99999999999", "absurdly large"),
    ("--seqlens", "64,,128", "empty item"),
    ("--seqlens", "512..64", "is empty (start > end)"),
    ("--batch", "", "--batch is empty"),
    ("--batch", "two", "'two' is not a whole number"),
    ("--batch", "-1", "must be at least 1"),
    ("--batch", "1000000", "absurdly large"),
    ("--repeats", "-3", "--repeats -3 must be between 0 and"),
    ("--dtype", "fp16", "--dtype fp16 is not supported on the CPU path"),
    ("--dtype", "int8", "--dtype 'int8' is not supported"),
    ("--device", "cuda", "no CUDA GPU is available"),
    ("--device", "tpu", "is not a device"),
    ("--mode", "fast", "--mode 'fast' is not split or as-is"),
    ("--preset", "mamba-7b", "unknown preset 'mamba-7b'"),
    ("--backend", "jax", "--backend 'jax' is not one of auto, hf, mamba_ssm"),
])
def test_bad_options(tmp_path, cli, option, value, expect):
    extra = ["--preset", "mamba-tiny"] if option == "--backend" else []
    # the --device cases run with the GPUs hidden, so a GPU host checks the same error as a CPU-only one
    env = {"CUDA_VISIBLE_DEVICES": ""} if option == "--device" else None
    res = cli("trace", *extra, option, value, "--out", str(tmp_path / "run"), "--quiet", env=env)
    assert_one_line_error(res, expect, code=2)
    assert not (tmp_path / "run").exists()  # a rejected option writes nothing


def test_two_model_sources(tmp_path, cli):
    path = write(tmp_path, TINY_HF)
    res = cli("trace", str(path), "--preset", "mamba-tiny", "--out", str(tmp_path / "run"), "--quiet")
    assert_one_line_error(res, "give only one model source, not MODEL_FILE and --preset", code=2)


def test_out_is_existing_run_file_or_unwritable(tmp_path, cli):
    out = tmp_path / "run"
    assert cli("trace", "--out", str(out), "--seqlens", "16", *FAST).returncode == 0
    (out / "notes.txt").write_text("mine")
    res = cli("trace", "--out", str(out), "--seqlens", "16", *FAST)
    assert_one_line_error(res, "already holds a run (pass --force to replace it")
    forced = cli("trace", "--out", str(out), "--seqlens", "32", "--force", *FAST)
    assert forced.returncode == 0 and (out / "notes.txt").read_text() == "mine"
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_one_line_error(cli("trace", "--out", str(afile), "--seqlens", "16", *FAST), "is a file, not a directory")
    other = tmp_path / "thesis"
    other.mkdir()
    (other / "ch1.tex").write_text("x")
    assert_one_line_error(cli("trace", "--out", str(other), "--force", "--seqlens", "16", *FAST),
                          "exists and is not empty")
    assert (other / "ch1.tex").exists()
    assert_one_line_error(cli("trace", "--out", str(afile / "sub"), "--seqlens", "16", *FAST), "cannot write to --out")
    assert_one_line_error(cli("trace", "--out", "/proc/mambaprof-run", "--seqlens", "16", *FAST),
                          "cannot write to --out")


def _save_checkpoint(path):
    tiny_mamba(layers=1, d_model=32, vocab=64).save_pretrained(path)


@pytest.mark.parametrize("case,expect", [
    ("missing-dir", "checkpoint directory"),
    ("no-config", "has no config.json"),
    ("no-weights", "has config.json but no weights"),
    ("bad-config", "config.json in"),
    ("mismatched-config", "the weights' shapes do not match config.json"),
])
def test_bad_checkpoint_dir(tmp_path, cli, case, expect):
    ckpt = tmp_path / "ckpt"
    if case != "missing-dir":
        _save_checkpoint(ckpt)
    if case == "no-config":
        (ckpt / "config.json").unlink()
    elif case == "no-weights":
        for f in ckpt.glob("*.safetensors"):
            f.unlink()
    elif case == "bad-config":
        (ckpt / "config.json").write_text("{not json")
    elif case == "mismatched-config":
        text = (ckpt / "config.json").read_text().replace('"hidden_size": 32', '"hidden_size": 48')
        assert '"hidden_size": 48' in text
        (ckpt / "config.json").write_text(text)
    res = cli("trace", "--hf", str(ckpt), "--out", str(tmp_path / "run"), "--seqlens", "16", *FAST)
    assert_one_line_error(res, expect)


def test_good_checkpoint_dir_traces(tmp_path, cli):
    ckpt = tmp_path / "ckpt"
    _save_checkpoint(ckpt)
    res = cli("trace", "--hf", str(ckpt), "--out", str(tmp_path / "run"), "--seqlens", "16", *FAST)
    assert res.returncode == 0, res.stderr


def test_debug_shows_the_traceback(tmp_path, cli):
    path = write(tmp_path, "def build_model():\n    return 1 / 0\n")
    res = cli("trace", str(path), "--out", str(tmp_path / "run"), "--seqlens", "16", "--quiet", "--debug")
    assert res.returncode != 0 and "Traceback" in res.stderr and "ZeroDivisionError" in res.stderr


@pytest.mark.parametrize("ratios,expect", [
    ("", "--ratios is empty"),
    ("-0.1", "--ratios value -0.1 is negative"),
    ("1.5", "--ratios value 1.5 would remove every state"),
    ("abc", "'abc' is not a number"),
    ("0.5,,0.25", "has an empty item"),
])
def test_bad_pruning_ratios(tmp_path, cli, ratios, expect):
    res = cli("prune", "--preset", "mamba-tiny", f"--ratios={ratios}", "--out", str(tmp_path / "run"), "--quiet")
    assert_one_line_error(res, expect, code=2)
    assert not (tmp_path / "run").exists()
