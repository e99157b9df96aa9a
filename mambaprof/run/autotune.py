"""Triton autotuner state of the loaded kernels: find the autotuners, reset them, say what they chose; and
the trace's policy for the shape at which they tune.

`@triton.autotune(configs=[...], key=[...])` benchmarks its configs the first time a kernel runs with a new
key and keeps the winner in `Autotuner.cache` (a dict: key tuple -> `triton.Config`) for the rest of the
process. mamba_ssm's SSD and layer-norm kernels have keys without batch or sequence length, so the first
shape a process runs picks the config every later shape uses. The policy (`TraceConfig.autotune`):
`largest` tunes once at the sweep's largest point before the first point is measured, `first` leaves it to
the first point (the old behaviour), `per-point` makes every point tune at its own shape.

Nothing here imports triton (absent on CPU machines): autotuners are found by duck typing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mambaprof.storage.schema.base import json_cell

#: Module-name prefixes (packages) searched for autotuned kernels.
DEFAULT_PREFIXES: tuple[str, ...] = ("mamba_ssm", "causal_conv1d", "flash_attn", "fla", "transformers")
#: Values of `--autotune` / `TraceConfig.autotune`.
POLICIES: tuple[str, ...] = ("largest", "first", "per-point")
#: Tuning forwards `largest` tries (the largest point, then the next largest...) before giving up on OOM.
MAX_TUNE_ATTEMPTS = 3
#: How deep a chain of wrappers (`triton.heuristics` around `triton.autotune`) is followed through `.fn`.
_MAX_WRAPPERS = 4


@dataclass(frozen=True)
class Tuner:
    """One Triton autotuner found in a loaded module: a readable name (`module.kernel`) and the object."""

    name: str
    obj: Any


def is_autotuner(obj: Any) -> bool:
    """True for an object that looks like `triton.runtime.autotuner.Autotuner`: class named `Autotuner` with a
    dict `cache` and a list `configs`."""
    return (type(obj).__name__ == "Autotuner" and isinstance(getattr(obj, "cache", None), dict)
            and isinstance(getattr(obj, "configs", None), list))


def _unwrap(obj: Any) -> Any | None:
    """The autotuner behind a module global: itself, or one under `triton.heuristics` wrappers; else None."""
    for _ in range(_MAX_WRAPPERS):
        if is_autotuner(obj):
            return obj
        if type(obj).__name__ != "Heuristics":  # only triton's own wrappers are followed (no arbitrary getattr)
            return None
        obj = getattr(obj, "fn", None)
    return None


def _kernel_name(tuner: Any, fallback: str) -> str:
    """The kernel's Python function name (`base_fn` in Triton 3.x, else through `.fn`), else `fallback`."""
    fn = getattr(tuner, "base_fn", None) or getattr(tuner, "fn", None)
    for _ in range(_MAX_WRAPPERS):
        name = getattr(fn, "__name__", None)
        if isinstance(name, str) and name:
            return name
        fn = getattr(fn, "fn", None)
        if fn is None:
            break
    return fallback


def _in_packages(module_name: str, prefixes: Sequence[str]) -> bool:
    return any(module_name == p or module_name.startswith(p + ".") for p in prefixes)


def triton_loaded() -> bool:
    """Whether triton has been imported in this process (no autotuned kernel exists before)."""
    return "triton" in sys.modules


def find_autotuners(prefixes: Sequence[str] = DEFAULT_PREFIXES) -> list[Tuner]:
    """Every Triton autotuner that is a global of a loaded module of the given packages, once each (by id),
    sorted by name. Empty where triton kernels are not loaded (CPU, Mamba-1 without mamba_ssm), at once when
    triton itself is not imported."""
    if not triton_loaded():  # no Triton kernel can exist: skip the scan (a sweep's first point waits on it)
        return []
    found: dict[int, Tuner] = {}
    for module_name, module in list(sys.modules.items()):
        if module is None or not _in_packages(module_name, prefixes):
            continue
        try:
            items = list(vars(module).items())
        except TypeError:  # an object without __dict__ put in sys.modules
            continue
        for global_name, value in items:
            tuner = _unwrap(value)
            if tuner is not None and id(tuner) not in found:
                found[id(tuner)] = Tuner(f"{module_name}.{_kernel_name(tuner, global_name)}", tuner)
    return sorted(found.values(), key=lambda t: t.name)


def reset(tuners: Sequence[Tuner]) -> int:
    """Forget every tuner's chosen configs (its `cache`), so each kernel autotunes again at the next shape it
    runs; returns how many cached configs were dropped.

    Only `cache` decides whether Triton benchmarks: `best_config` (the config of the last launch, which
    mamba_ssm's backward reads) and `configs_timings`/`bench_time` (the last benchmark's results) are
    rewritten by the next launch or benchmark and stay as they are.
    """
    dropped = 0
    for tuner in tuners:
        dropped += len(tuner.obj.cache)
        tuner.obj.cache.clear()
    return dropped


def chosen(tuners: Sequence[Tuner]) -> list[dict[str, str]]:
    """The config each tuner holds for each key it has seen: `{"kernel", "key", "config"}` (strings)."""
    rows: list[dict[str, str]] = []
    for tuner in tuners:
        for key, config in list(tuner.obj.cache.items()):
            rows.append({"kernel": tuner.name, "key": str(key), "config": str(config)})
    return rows


def disk_cached(tuners: Sequence[Tuner]) -> list[Tuner]:
    """Tuners with Triton's autotune disk cache on (`cache_results`, TRITON_CACHE_AUTOTUNING=1, Triton >= 3.4):
    after a reset they read the config stored on disk for their key, whatever shape tuned it then."""
    return [t for t in tuners if getattr(t.obj, "cache_results", False) is True]


def largest_first(points: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """(batch, seqlen) points by decreasing tokens (batch x seqlen); ties: the larger batch first."""
    return sorted(set(points), key=lambda p: (-p[0] * p[1], -p[0], -p[1]))


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _shape(point: tuple[int, int]) -> str:
    return f"batch {point[0]} x {point[1]}"


@dataclass
class AutotunePolicy:
    """When the Triton kernels of a trace autotune (see the module doc), and what they chose.

    A sweep calls `before_sweep` once (inside its interrupt guard) and `before_point` before each point's
    warm-up; `as_json()` is the run record's `autotune_json`.
    """

    policy: str = "largest"
    prefixes: tuple[str, ...] = DEFAULT_PREFIXES
    #: (batch, seqlen) the listed configs were tuned at: the tuning forward's point (`largest`), or the last
    #: point (`per-point`); None otherwise or when tuning failed.
    tuned_at: tuple[int, int] | None = None
    #: why `largest` did not tune at the largest point (out of memory, an error), else None
    reason: str | None = None
    #: whether any autotuner was seen by this policy
    found: bool = False
    #: (batch, seqlen) of every tuning forward tried, in order
    attempts: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"autotune policy {self.policy!r} is not one of {', '.join(POLICIES)}")

    def before_sweep(self, points: Sequence[tuple[int, int]], forward: Callable[[int, int], None],
                     is_oom: Callable[[BaseException], bool], release: Callable[[], None],
                     progress: Callable[[str], None] = lambda desc: None,
                     agree: Callable[[float], float] | None = None) -> bool:
        """`largest`: reset the autotuners and run one untimed `forward(batch, seqlen)` at the largest of
        `points` (tokens; ties: larger batch), so every point runs with the configs picked there. An OOM
        (`is_oom`) frees memory (`release`) and tries the next largest, up to MAX_TUNE_ATTEMPTS; after that
        or another exception, tuning is given up (reason kept) and the kernels tune at the first point as
        before. Nothing happens for the other policies or without autotuners. Returns True when a tuning
        forward was attempted. Interrupts (BaseException) propagate. `agree` (under ranks running the same
        points: the MAX of a number over them) makes every rank see a failure when any rank failed, so all
        run the same tuning forwards."""
        if self.policy != "largest" or not points:
            return False
        tuners = find_autotuners(self.prefixes)
        if not tuners:
            return False
        self.found = True
        out_of_memory: list[tuple[int, int]] = []
        for point in largest_first(points)[:MAX_TUNE_ATTEMPTS]:
            reset(tuners)
            self.attempts.append(point)
            progress(f"autotune at b={point[0]} L={point[1]}")
            failure: tuple[bool, str] | None = None  # (out of memory, one line)
            try:
                forward(*point)
            except Exception as exc:  # noqa: BLE001 - a failed tuning forward never fails the run
                failure = (is_oom(exc), _line(exc))
            if agree is not None:  # 0 ok, 1 failed, 2 out of memory: the worst over the ranks
                worst = agree(0.0 if failure is None else (2.0 if failure[0] else 1.0))
                if worst > 0 and failure is None:
                    failure = (worst >= 2, "failed on another rank")
                elif worst >= 2 and failure is not None:
                    failure = (True, failure[1])
            if failure is None:
                self.tuned_at = point
                if out_of_memory:
                    self.reason = (f"out of memory at {', '.join(map(_shape, out_of_memory))}; tuned at the next "
                                   "largest")
                return True
            release()  # outside the except clause: the exception's frames, and the tensors they hold, are gone
            if failure[0]:
                out_of_memory.append(point)
                continue
            self.reason = f"tuning forward at {_shape(point)} failed: {failure[1]}"
            reset(tuners)  # nothing half-tuned: the points tune as with `first`
            return True
        self.reason = (f"out of memory at {', '.join(map(_shape, out_of_memory))}; gave up tuning, each kernel "
                       "tuned at the first shape it ran")
        reset(tuners)
        return True

    def before_point(self, batch: int, seqlen: int) -> None:
        """`per-point`: reset the autotuners so that this point's first forward tunes at its own shape."""
        if self.policy != "per-point":
            return
        tuners = find_autotuners(self.prefixes)
        if tuners:
            self.found = True
            reset(tuners)
            self.tuned_at = (batch, seqlen)

    def as_json(self) -> str | None:
        """`{"policy", "tuned_at": {"batch", "seqlen"} | null, "reason", "configs": [chosen]}` as JSON, with the
        configs the autotuners hold now; None when no autotuner was found."""
        tuners = find_autotuners(self.prefixes)
        if not tuners and not self.found:
            return None
        reason = self.reason
        disk = disk_cached(tuners)
        if disk:
            note = (f"Triton's autotune disk cache is on for {len(disk)} kernel(s) (TRITON_CACHE_AUTOTUNING): they "
                    "take the config stored on disk for their key, whatever shape tuned it")
            reason = f"{reason}; {note}" if reason else note
        tuned = {"batch": self.tuned_at[0], "seqlen": self.tuned_at[1]} if self.tuned_at else None
        return json_cell({"policy": self.policy, "tuned_at": tuned, "reason": reason, "configs": chosen(tuners)})
