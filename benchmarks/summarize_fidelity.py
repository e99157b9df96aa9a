"""Markdown tables of fidelity and attribution from trace run directories (raw numbers).

Per run: the record's device and versions, then per point the original and split forward medians (ms), the
split's cost in %, kernel ms per forward, the share attributed to a named component and the output check;
then kernel / wall ms per component. The first line is an HTML comment (invisible in the rendered page) with
benchmarks/provenance.py's stamp of this summary.

    python benchmarks/summarize_fidelity.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import sys

from provenance import line, stamp

from mambaprof.storage.rundir import read_run_record, read_table


def summarize(run_dir: str) -> str:
    """One section per run: the record's facts, then per point timings and per component shares."""
    run = read_run_record(run_dir)
    points = read_table(run_dir, "points").to_pandas().sort_values(["batch", "seqlen"])
    comps = read_table(run_dir, "components").to_pandas()
    lines = [f"### {run['model_ref']} ({run['model_family']}, {run['n_layers']} layers) — run `{run['run_id']}`", "",
             f"device {run['device_name']}, driver {run['driver_version']}, torch {run['torch_version']}, "
             f"mamba_ssm {run['mamba_ssm_version']}, dtype {run['dtype']}, repeats {run['repeats']}, "
             f"warm-up {run['warmup']}, profiled forwards {run['profile_repeats']}", "",
             f"command: `{run['command']}`", "",
             "| batch | seqlen | original ms (median) | split ms (median) | split vs original | split with markers "
             "vs original | kernel ms / forward | attributed to a named component | output check (rel err / tol) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for p in points.itertuples():
        if p.status != "ok":
            lines.append(f"| {p.batch} | {p.seqlen} | {p.status}: {p.error} | | | | | | |")
            continue
        bare_ms = getattr(p, "split_bare_ms_median", float("nan"))  # runs before schema 3 did not time it
        bare_pct = getattr(p, "split_bare_vs_original_pct", float("nan"))
        bare = "-" if bare_ms != bare_ms else f"{bare_ms:.3f}"
        bare_d = "-" if bare_pct != bare_pct else f"{bare_pct:+.2f}%"
        lines.append(f"| {p.batch} | {p.seqlen} | {p.original_ms_median:.3f} | {bare} | {bare_d} | "
                     f"{p.split_vs_original_pct:+.2f}% | {p.forward_kernel_ms:.3f} | {p.attributed_kernel_pct:.2f}% | "
                     f"{p.output_check} ({p.output_rel_err:.2e} / {p.output_tolerance:g}) |")
    lines += ["", "Per component, summed over layers (kernel ms median / wall ms median per forward):", ""]
    order = ["in_proj", "conv1d", "ssm_params", "ssm_scan", "gating", "out_proj", "norm", "residual", "embedding",
             "lm_head", "other"]
    present = [c for c in order if c in set(comps.component)]
    lines += ["| seqlen | " + " | ".join(present) + " |", "| ---: |" + " ---: |" * len(present)]
    for pid, grp in comps.groupby("point_id"):
        seqlen = int(points[points.point_id == pid].seqlen.iloc[0])
        g = grp.groupby("component")[["kernel_ms_median", "wall_ms_median"]].sum(min_count=1)
        cells = []
        for c in present:
            k, w = g.loc[c, "kernel_ms_median"], g.loc[c, "wall_ms_median"]
            if k != k:  # NaN: the component runs inside another kernel on this path
                cells.append("fused")
            else:
                cells.append(f"{k:.2f} / {w:.2f}" if w == w else f"{k:.2f} / –")
        lines.append(f"| {seqlen} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    """Print the tables of every run directory in `argv`; 2 with a usage line when none is given."""
    if not argv or argv[0].startswith("-"):
        print("usage: python benchmarks/summarize_fidelity.py RUN_DIR [RUN_DIR ...]", file=sys.stderr)
        return 2
    print(f"<!-- provenance: {line(stamp())} -->\n")
    print("\n".join(summarize(d) for d in argv))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
