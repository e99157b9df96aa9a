"""Compare a 1-rank sweep with an N-rank (torchrun) sweep of the same points: per-point numbers and wall time.

    python benchmarks/compare_ranks.py RUN_1RANK RUN_NRANK [--wall-1 S --wall-n S] [--json OUT.json]

Per point (matched on batch, seqlen): original/split forward medians, forward kernel time, and each
component's kernel time summed over layers, as N-rank / 1-rank ratios; then the sweep's wall time
both ways (the commands' own wall time when given, else the run records' start-to-finish) and the
span of the points (first point start to last point finish: the part sharding divides). The JSON carries
benchmarks/provenance.py's stamp ("provenance").
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from provenance import stamp

from mambaprof.storage.rundir import read_run_record, read_table

POINT_COLUMNS = ("original_ms_median", "split_ms_median", "forward_kernel_ms")


def load(run: str):
    points = read_table(run, "points").to_pandas()
    comps = read_table(run, "components").to_pandas()
    points = points[points.status == "ok"]
    per_comp = comps.groupby(["batch", "seqlen", "component"]).kernel_ms_median.sum()
    record = read_run_record(run)
    span = (points.finished_at.max() - points.started_at.min()).total_seconds() if len(points) else None
    total = (record["finished_at"] - record["started_at"]).total_seconds() if record.get("finished_at") else None
    return points.set_index(["batch", "seqlen"]), per_comp, record, span, total


def compare(one: str, many: str, wall_one: float | None, wall_many: float | None) -> dict:
    p1, c1, r1, span1, total1 = load(one)
    pn, cn, rn, spann, totaln = load(many)
    rows = []
    for key in sorted(set(p1.index) & set(pn.index)):
        row = {"batch": int(key[0]), "seqlen": int(key[1]), "rank": int(pn.loc[key, "rank"]),
               "device": str(pn.loc[key, "device"])}
        for col in POINT_COLUMNS:
            a, b = p1.loc[key, col], pn.loc[key, col]
            row[col] = [float(a), float(b), float(b / a) if a else None]
        comps = {}
        for comp in sorted(set(c1.loc[key].index) | set(cn.loc[key].index)):
            a, b = c1.loc[key].get(comp), cn.loc[key].get(comp)
            if a is not None and b is not None and a > 0.01:  # ratios of sub-10-us components are noise
                comps[comp] = [float(a), float(b), float(b / a)]
        row["components_kernel_ms"] = comps
        rows.append(row)
    ratios = [r["original_ms_median"][2] for r in rows if r["original_ms_median"][2]]
    kratios = [r["forward_kernel_ms"][2] for r in rows if r["forward_kernel_ms"][2]]
    return {
        "one_rank": one, "n_rank": many, "world_size": int(rn["world_size"]), "points_compared": len(rows),
        "points_1rank_ok": int(len(p1)), "points_nrank_ok": int(len(pn)), "status": [r1["status"], rn["status"]],
        "median_ratio_original_ms": statistics.median(ratios) if ratios else None,
        "median_ratio_forward_kernel_ms": statistics.median(kratios) if kratios else None,
        "wall_s": [wall_one or total1, wall_many or totaln],
        "wall_ratio": (wall_many or totaln) / (wall_one or total1) if (wall_one or total1) else None,
        "points_span_s": [span1, spann], "points_span_ratio": spann / span1 if span1 else None,
        "points": rows,
    }


def markdown(result: dict) -> str:
    lines = [f"1-rank `{result['one_rank']}` vs {result['world_size']}-rank `{result['n_rank']}`: "
             f"{result['points_compared']} points compared (status {result['status'][0]} / {result['status'][1]})",
             "", "| batch | seqlen | rank | device | original ms 1 / N (ratio) | kernel ms 1 / N (ratio) | "
             "worst component ratio |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["points"]:
        o, k = r["original_ms_median"], r["forward_kernel_ms"]
        worst = max(r["components_kernel_ms"].items(), key=lambda kv: abs(kv[1][2] - 1), default=None)
        worst_s = f"{worst[0]} {worst[1][2]:.3f}" if worst else "-"
        lines.append(f"| {r['batch']} | {r['seqlen']} | {r['rank']} | {r['device']} | {o[0]:.3f} / {o[1]:.3f} "
                     f"({o[2]:.3f}) | {k[0]:.3f} / {k[1]:.3f} ({k[2]:.3f}) | {worst_s} |")
    w, s = result["wall_s"], result["points_span_s"]
    lines += ["", f"median ratio N/1: original {result['median_ratio_original_ms']:.3f}, "
                  f"kernel {result['median_ratio_forward_kernel_ms']:.3f}",
              f"wall: {w[0]:.1f} s (1 rank) vs {w[1]:.1f} s ({result['world_size']} ranks): "
              f"ratio {result['wall_ratio']:.3f}",
              f"points span: {s[0]:.1f} s vs {s[1]:.1f} s: ratio {result['points_span_ratio']:.3f}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("one_rank")
    parser.add_argument("n_rank")
    parser.add_argument("--wall-1", type=float, default=None, help="wall seconds of the 1-rank command")
    parser.add_argument("--wall-n", type=float, default=None, help="wall seconds of the N-rank command")
    parser.add_argument("--json", default=None, help="also write the comparison as JSON here")
    args = parser.parse_args(argv)
    result = compare(args.one_rank, args.n_rank, args.wall_1, args.wall_n)
    print(markdown(result))
    if args.json:
        result = {"provenance": stamp(argv=None if argv is None else ["benchmarks/compare_ranks.py", *argv]),
                  **result}
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1, default=str)
    return 0 if result["points_compared"] else 1


if __name__ == "__main__":
    sys.exit(main())
