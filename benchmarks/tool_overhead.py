"""What tracing costs a forward: plain vs NVML sampler vs CUDA events + NVML vs torch.profiler (device benchmark).

One process, one model, the same (random-token) inputs. Each round runs a block of forwards in every
mode, the modes in a shuffled order (seeded; a rotation would give each mode the same predecessor, and on a
GPU near its power limit what ran just before sets the clocks); every block starts with the same pause and
one untimed forward of its mode:

- `plain`        the original forward, nothing of mambaprof running (the reference);
- `nvml`         the original forward with the NVML sampler thread running at the trace's interval;
- `split`        the component-split forward with no listener at all (what the split itself costs,
                 apart from any timer);
- `events_nvml`  the component-split forward with a CUDA event at every component boundary (what
                 `mambaprof trace`'s timed passes run) and the sampler running; the events are read
                 back after the timer stops, as the trace does;
- `profiler`     the component-split forward with record_function ranges inside an active
                 torch.profiler session (CPU + CUDA activities); the session's start and its trace
                 processing are not in the per-forward time (reported separately as a mode of its own).

Every forward is timed with CUDA events around it (GPU ms) and on the host including the final
synchronisation (host ms, what a user waits). Overheads are ratios to `plain` taken within each round
(paired), then the median over rounds; the medians of all forwards per mode are given too, with every
raw time. Budget checked: events_nvml <= 2% (paired median, GPU ms). In every split mode the hooks are
installed before the timer starts and removed after it stops (`mambaprof trace` does the same).

With `--kernels`, one more pass profiles 3 forwards of `plain` and of `split` under torch.profiler
(CUPTI) and compares them kernel by kernel: kernels per forward, summed kernel time, the span from
the first kernel's start to the last one's end, and the GPU idle time inside that span, plus the
kernel names whose summed time differs most. That says whether a split costs kernel time (a
different or slower kernel) or idle time (the GPU waiting for the host).

The JSON carries benchmarks/provenance.py's stamp ("provenance").

    python benchmarks/tool_overhead.py --preset mamba-1.4b --backend mamba_ssm --batch 8 --seqlen 4096 \
        --out tool_overhead.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from provenance import stamp

from mambaprof.collectors.gpu_device import open_device
from mambaprof.collectors.markers import Probe, RangeListener
from mambaprof.collectors.nvml import NvmlSampler
from mambaprof.collectors.timing import ForwardTimer, WindowTimer
from mambaprof.model.inputs import make_call
from mambaprof.model.loading import load_preset, resolve_device, resolve_dtype
from mambaprof.model.structure import discover
from mambaprof.run.instrument import Instrumenter

MODES = ("plain", "nvml", "split", "events_nvml", "profiler")
BUDGET_PCT = {"nvml": 1.0, "events_nvml": 2.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mamba-1.4b")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seqlen", type=int, default=4096)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--per-round", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--interval-ms", type=float, default=10.0)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--seed", type=int, default=0, help="seed of the per-round order of the modes")
    ap.add_argument("--kernels", action="store_true", help="also compare plain and split kernel by kernel")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    modes = [m for m in a.modes.split(",") if m]
    if "plain" not in modes:
        ap.error("--modes must include plain (the reference)")

    dev = resolve_device(a.device)
    dtype = resolve_dtype(a.dtype, dev)
    loaded = load_preset(a.preset, dev, dtype, backend=a.backend)
    structure = discover(loaded.model)
    call = make_call(loaded.model, structure, a.batch, a.seqlen, dev, dtype, None)
    inst = Instrumenter(structure, split=True)
    windows = WindowTimer(dev)
    timer = ForwardTimer(dev)
    gpu = open_device(dev)
    sampler = NvmlSampler(gpu, a.interval_ms)

    def original() -> Any:
        with torch.inference_mode():
            return call()

    # what each mode's block of forwards runs inside: the hooks go in before the timed forwards and come
    # out after them (as `mambaprof trace` installs them around its timed forward, not inside it)
    listeners: dict[str, list[Any]] = {"split": [], "events_nvml": [windows], "profiler": [RangeListener()]}

    @contextmanager
    def installed(mode: str) -> Iterator[None]:
        if mode not in listeners:
            yield
            return
        with inst.installed(Probe(listeners[mode])):
            yield

    def after(mode: str) -> None:
        """Outside the timed forward: read the events back (the trace does it after its timer stops)."""
        if mode == "events_nvml":
            windows.spans()
            windows.reset()

    def split_bare() -> Any:
        with installed("split"):
            return original()

    for _ in range(a.warmup):
        for mode in modes:
            with installed(mode):
                timer.time(original)
            after(mode)

    raw: dict[str, dict[str, list[float]]] = {m: {"gpu_ms": [], "host_ms": []} for m in modes}
    paired: dict[str, list[float]] = {m: [] for m in modes if m != "plain"}
    samples = 0
    profiler_session_s: list[float] = []
    shuffle = random.Random(a.seed)
    orders: list[list[str]] = []
    for r in range(a.rounds):
        order = list(modes)
        shuffle.shuffle(order)  # a fixed rotation would give each mode the same predecessor every round
        orders.append(order)
        block: dict[str, float] = {}
        for mode in order:
            prof = None
            if mode in ("nvml", "events_nvml"):
                sampler.start()
            # every block starts alike: the same pause (the sampler settles into its schedule), then one untimed
            # forward of the block's mode, so the GPU's clocks and power state do not depend on what ran before
            time.sleep(3 * sampler.interval_ms / 1e3)
            with installed(mode):
                timer.time(original)
            after(mode)
            if mode == "profiler":
                acts = [torch.profiler.ProfilerActivity.CPU]
                if dev.type == "cuda":
                    acts.append(torch.profiler.ProfilerActivity.CUDA)
                t0 = time.perf_counter()
                prof = torch.profiler.profile(activities=acts)
                prof.__enter__()
            times = []
            for _ in range(a.per_round):
                with installed(mode):
                    g, h, out = timer.time(original)
                del out
                after(mode)
                times.append(g)
                raw[mode]["gpu_ms"].append(g)
                raw[mode]["host_ms"].append(h)
            if prof is not None:
                prof.__exit__(None, None, None)
                prof.key_averages()  # trace processing, as the trace's attribution pass pays it
                profiler_session_s.append(time.perf_counter() - t0)
            if mode in ("nvml", "events_nvml"):
                sampler.stop()
                samples += len(sampler.drain())
            block[mode] = statistics.median(times)
        for mode in paired:
            paired[mode].append(100.0 * (block[mode] / block["plain"] - 1.0))
        print(f"round {r + 1}/{a.rounds}: " + ", ".join(f"{m} {block[m]:.3f} ms" for m in modes), flush=True)

    med = {m: {k: statistics.median(v) for k, v in d.items()} for m, d in raw.items()}
    overhead = {}
    for mode, rounds in paired.items():
        spread = statistics.pstdev(raw["plain"]["gpu_ms"]) / med["plain"]["gpu_ms"] * 100.0
        overhead[mode] = {
            "paired_median_gpu_pct": statistics.median(rounds),
            "paired_rounds_gpu_pct": rounds,
            "median_gpu_pct": 100.0 * (med[mode]["gpu_ms"] / med["plain"]["gpu_ms"] - 1.0),
            "median_host_pct": 100.0 * (med[mode]["host_ms"] / med["plain"]["host_ms"] - 1.0),
            "plain_spread_pct": spread,  # stdev of the reference: overheads below it are noise
            "budget_pct": BUDGET_PCT.get(mode),
            "within_budget": (statistics.median(rounds) <= BUDGET_PCT[mode]) if mode in BUDGET_PCT else None,
        }
    kernels = None
    if a.kernels:
        try:
            kernels = kernel_comparison({"plain": original, "split": split_bare}, dev)
        except Exception as exc:  # noqa: BLE001 - the timings above must still be written
            kernels = {"error": f"{type(exc).__name__}: {exc}"}
    prov = stamp(str(dev))
    result = {
        "config": vars(a), "provenance": prov, "device": str(dev), "device_name": prov["device_name"],
        "torch": torch.__version__, "n_mixers": len(structure.mixers),
        "sampler_state": sampler.state, "sampler_reason": sampler.reason, "samples_taken": samples,
        "median": med, "overhead": overhead, "orders": orders,
        "profiler_session_s": profiler_session_s, "kernels": kernels, "raw": raw,
    }
    gpu.close()
    print(json.dumps({k: v for k, v in result.items() if k != "raw"}, indent=1))
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(json.dumps(result, indent=1))


def kernel_comparison(fns: dict[str, Callable[[], Any]], dev: torch.device, forwards: int = 3) -> dict[str, Any]:
    """Per mode: kernels per forward, summed kernel ms, first-start-to-last-end span ms and idle ms
    inside it (medians over `forwards` profiled forwards); the kernel names whose summed time per
    forward differs most between the modes (ms, second mode minus first)."""
    from mambaprof.collectors.profiler import record

    out: dict[str, Any] = {}
    by_name: dict[str, dict[str, float]] = {}
    for mode, fn in fns.items():
        per_forward: list[dict[str, float]] = []
        names: dict[str, float] = {}

        def one(fn: Callable[[], Any] = fn) -> Any:
            return fn()

        for _ in range(forwards):
            rec = record(one, dev, 1, None, f"overhead_{mode}")
            evs = sorted(rec.device_events, key=lambda e: e.start_us)
            if not evs:
                continue
            busy = 0.0
            cur_s, cur_e = evs[0].start_us, evs[0].start_us + evs[0].duration_us
            for e in evs[1:]:
                s, t = e.start_us, e.start_us + e.duration_us
                if s > cur_e:
                    busy += cur_e - cur_s
                    cur_s, cur_e = s, t
                else:
                    cur_e = max(cur_e, t)
            busy += cur_e - cur_s
            span = evs[-1].start_us + evs[-1].duration_us - evs[0].start_us
            per_forward.append({"kernels": len(evs), "kernel_ms": sum(e.duration_us for e in evs) / 1e3,
                                "span_ms": span / 1e3, "idle_ms": (span - busy) / 1e3})
            for e in evs:
                names[e.name] = names.get(e.name, 0.0) + e.duration_us / 1e3 / forwards
        out[mode] = {k: statistics.median(f[k] for f in per_forward) for k in per_forward[0]} if per_forward else {}
        by_name[mode] = names
    if len(by_name) == 2:
        (ma, a), (mb, b) = by_name.items()
        diff = {n: b.get(n, 0.0) - a.get(n, 0.0) for n in set(a) | set(b)}
        top = sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:12]
        out["largest_differences_ms"] = [{"kernel": n[:160], f"{ma}_ms": a.get(n, 0.0), f"{mb}_ms": b.get(n, 0.0),
                                          "diff_ms": d} for n, d in top]
    return out


if __name__ == "__main__":
    main()
