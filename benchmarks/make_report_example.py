"""Turn one or two run directories into the committed report example (docs/examples/).

    python benchmarks/make_report_example.py RUN_A [RUN_B] --out docs/examples [--peaks FILE]

Writes, under --out:
  report.html, report.png      the HTML report of RUN_A and a full-page headless-Chromium screenshot
  compare.html, compare.png    RUN_A vs RUN_B (with RUN_B), the headline Mamba-1 vs Mamba-2 view
  summary/<label>/             the summary Parquet tables of each run (+ README.md of their columns)
  raw/<label>/                 the raw tables the summary is computed from (runs, points, components, and
                               kernels when under --max-kernels-mb), for tests/test_report_example.py
  manifest.json, README.md     what was generated from what, and how to regenerate it (the manifest's
                               "provenance" is benchmarks/provenance.py's stamp of this machine and code)

Fails (exit 1) when the browser reports a console error, an exception or a fetch, or when no Chromium
is found (pass --no-screenshot to skip the screenshots knowingly). Reads runs only; never re-runs a model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from provenance import stamp

from mambaprof.reports.render_html import render_comparison, render_report, write_html
from mambaprof.reports.run_analysis import RunAnalysis, RunComparison
from mambaprof.reports.summary_parquet import write_summary
from mambaprof.storage.rundir import MARKER

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.browser import find_chromium, render_page  # noqa: E402  (test tooling, not the package)

RAW_TABLES = ("runs", "points", "components")


def folder_mb(path: Path) -> float:
    """Size of the files under `path` in MiB."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def copy_raw(run: Path, dest: Path, max_kernels_mb: float) -> list[str]:
    """Copy the raw tables a recomputation needs; kernels only when small enough. Returns the tables copied."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / MARKER).write_text((run / MARKER).read_text() if (run / MARKER).exists() else "mambaprof run\n")
    copied = []
    for table in (*RAW_TABLES, "kernels"):
        src = run / table
        if not src.is_dir() or (table == "kernels" and folder_mb(src) > max_kernels_mb):
            continue
        shutil.copytree(src, dest / table, ignore=shutil.ignore_patterns(".*", "_*"))
        copied.append(table)
    return copied


def shrink_png(path: Path) -> None:
    """Re-encode a screenshot with a 256-colour palette (plots and text survive; the file gets ~3x smaller)."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as im:
        im.convert("RGB").quantize(colors=256).save(path, optimize=True)


def screenshot(page: Path, png: Path) -> list[str]:
    """Render `page` in Chromium, save the PNG; returns the problems the browser saw."""
    report = render_page(page, screenshot=png)
    shrink_png(png)
    problems = report.errors + [f"fetched {u}" for u in report.external_requests]
    if len(report.plots) < 4 or any(p["width"] < 100 for p in report.plots):
        problems.append(f"plots missing or empty: {report.plots}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path, nargs="?")
    parser.add_argument("--out", type=Path, default=Path("docs/examples"))
    parser.add_argument("--peaks", type=Path, default=None, help="peaks JSON (e.g. from `mambaprof calibrate --out`)")
    parser.add_argument("--max-kernels-mb", type=float, default=4.0)
    parser.add_argument("--no-screenshot", action="store_true")
    args = parser.parse_args(argv)
    if not args.no_screenshot and find_chromium() is None:
        print("error: no Chromium for the screenshots (apt-get install chromium, or --no-screenshot)", file=sys.stderr)
        return 1
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    runs = [args.run_a] + ([args.run_b] if args.run_b else [])
    analyses = [RunAnalysis(r, peaks_file=args.peaks, use_calibration=False) for r in runs]
    labels = [a.label for a in analyses]
    if len(set(labels)) != len(labels):
        labels = [f"{a.label}-{a.run_dir.name}" for a in analyses]
    command = " ".join(["python", "benchmarks/make_report_example.py", *map(str, argv or sys.argv[1:])])
    prov = stamp("cpu", argv=["benchmarks/make_report_example.py", *map(str, argv or sys.argv[1:])])
    manifest: dict = {"generated_at": prov["date_utc"], "command": command, "provenance": prov, "runs": [],
                      "files": []}
    problems: list[str] = []
    for analysis, label in zip(analyses, labels, strict=True):
        write_summary(analysis, out / "summary" / label)
        tables = copy_raw(analysis.run_dir, out / "raw" / label, args.max_kernels_mb)
        rec = analysis.record
        manifest["runs"].append({"label": label, "run_id": analysis.data.run_id, "source": str(analysis.run_dir),
                                 "model_ref": rec.get("model_ref"), "device": rec.get("device"),
                                 "device_name": analysis.device_name, "dtype": analysis.dtype,
                                 "time_basis": analysis.basis, "peaks": analysis.peaks_source,
                                 "raw_tables": tables, "command": rec.get("command")})
    pages = [("report", render_report(analyses[0]))]
    if len(analyses) == 2:
        comparison = RunComparison(runs[0], runs[1], peaks_file=args.peaks, use_calibration=False)
        pages.append(("compare", render_comparison(comparison)))
    for name, text in pages:
        page = write_html(text, out / f"{name}.html")
        manifest["files"].append(page.name)
        if not args.no_screenshot:
            problems += [f"{name}.html: {p}" for p in screenshot(page, out / f"{name}.png")]
            manifest["files"].append(f"{name}.png")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "README.md").write_text(readme(manifest, analyses, pages))
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    print(f"wrote {out}: {', '.join(manifest['files'])}, summary/ and raw/ for {', '.join(labels)}")
    return 1 if problems else 0


def readme(manifest: dict, analyses: list[RunAnalysis], pages: list[tuple[str, str]]) -> str:
    """README.md of the example: sources, files, headline findings, how to regenerate."""
    lines = ["# Report example", "",
             "Generated by `benchmarks/make_report_example.py` from the runs below; "
             "`tests/test_report_example.py` recomputes numbers of `summary/` from `raw/`.", ""]
    if any(not str(r["device"] or "").startswith("cuda") for r in manifest["runs"]):
        lines += ["**This example comes from a CPU run** (tiny models on a 2-core CI-class machine: timings are "
                  "noisy and the CPU has no datasheet peaks). It stands in until a GPU run replaces it.", ""]
    lines += ["| run | model | device | dtype | time basis | peaks |", "| --- | --- | --- | --- | --- | --- |"]
    for r in manifest["runs"]:
        lines.append(f"| {r['label']} | {r['model_ref']} | {r['device_name']} ({r['device']}) | {r['dtype']} | "
                     f"{r['time_basis']} | {r['peaks']} |")
    lines += ["", "How each run was traced (its run record):", ""]
    for analysis in analyses:
        rec = analysis.record
        lines.append(f"- {analysis.label}: `{rec.get('command')}` on {analysis.device_name}, started "
                     f"{rec.get('started_at')}, mambaprof schema {rec.get('schema_version')}")
    lines += ["", "Files: " + ", ".join(f"[{f}]({f})" for f in manifest["files"]) + ", `summary/<run>/` "
              "(Parquet, columns in its README.md), `raw/<run>/` (the run's own tables).", "",
              "## Findings (as the report states them)", ""]
    for analysis in analyses:
        lines += [f"**{analysis.label}**", ""] + [f"- {s}" for s in analysis.sentences()] + [""]
    lines += ["## Regenerate", "", "```bash", manifest["command"], "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
