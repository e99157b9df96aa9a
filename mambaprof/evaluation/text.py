"""Text corpora as byte tokens: a user's file, or the Python standard library's own source.

Every machine with Python has the standard library's source, so it is the default corpus (no
network). Files are split by a hash of their relative path into three disjoint parts: `train`
(~90%), `calib` (~5%) and `eval` (~5%), so calibration, recovery and evaluation never see the
text a model was trained on. Tokens are bytes (ids 0..255): no tokenizer to download.
"""

from __future__ import annotations

import sysconfig
import zlib
from pathlib import Path

import torch

from mambaprof.errors import BadArgumentError

SPLITS = ("train", "calib", "eval")
BYTE_VOCAB = 256
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


def stdlib_root() -> Path:
    """Directory of the running interpreter's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def split_of(relative: str) -> str:
    """`train`, `calib` or `eval` for a file, from the CRC-32 of its relative path."""
    bucket = zlib.crc32(relative.encode()) % 20
    return "eval" if bucket == 0 else "calib" if bucket == 1 else "train"


def stdlib_files(split: str) -> list[Path]:
    """The standard library's .py files (tests and site-packages excluded) in one split.

    Ordered by a hash of the path, so any prefix of the list mixes many packages.
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {SPLITS}")
    root = stdlib_root()
    files = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if _SKIP_DIRS.intersection(rel.parts[:-1]) or split_of(str(rel)) != split:
            continue
        files.append(path)
    return sorted(files, key=lambda p: (zlib.crc32(str(p.relative_to(root)).encode()[::-1]), str(p)))


def stdlib_text(split: str, max_bytes: int | None = None) -> bytes:
    """Concatenated source of one split (files joined by a blank line), cut at max_bytes."""
    parts: list[bytes] = []
    size = 0
    for path in stdlib_files(split):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        parts.append(data + b"\n\n")
        size += len(data) + 2
        if max_bytes is not None and size >= max_bytes:
            break
    text = b"".join(parts)
    return text[:max_bytes] if max_bytes is not None else text


def read_text_file(path: Path, option: str) -> bytes:
    """The bytes of a user's text file, or a one-line error naming the option."""
    path = Path(path)
    if not path.exists():
        raise BadArgumentError(f"{option} {path} does not exist", "give a text file, or omit it for the stdlib text")
    if path.is_dir():
        raise BadArgumentError(f"{option} {path} is a directory", "give a text file")
    data = path.read_bytes()
    if not data:
        raise BadArgumentError(f"{option} {path} is empty", "give a file with text in it")
    return data


def byte_tokens(data: bytes) -> torch.Tensor:
    """bytes -> 1-D int64 tensor of byte values (0..255)."""
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).to(torch.long)


def corpus_tokens(path: Path | None, split: str, max_tokens: int, option: str) -> torch.Tensor:
    """Tokens of the user's file (first max_tokens bytes) or of the stdlib split."""
    data = read_text_file(path, option)[:max_tokens] if path is not None else stdlib_text(split, max_tokens)
    return byte_tokens(data)


def windows(tokens: torch.Tensor, length: int, count: int | None = None) -> torch.Tensor:
    """Non-overlapping windows of `length` tokens, (n, length); the tail that does not fill one is dropped."""
    n = tokens.numel() // length
    if count is not None:
        n = min(n, count)
    return tokens[: n * length].reshape(n, length)
