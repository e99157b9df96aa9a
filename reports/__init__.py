"""Reports: readers of run directories (never re-running a model) and their renderers.

The facade is `mambaprof.reports.run_analysis` (`RunAnalysis` for one run, `RunComparison` for two):
renderers (`render_terminal`, `render_html`, `summary_parquet`), the CLI and `study` use only it. The
analyses behind it are one module each: `attribution`, `regime`, `scaling`, `roofline` (with `peaks`
and `calibration`), `comparison`, `hardware`, `findings`; `validate` checks a run directory first.

May import: storage, the top level and `evaluation.chance`; never torch, a model, the run layer or collectors.
"""
