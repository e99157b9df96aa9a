"""Which statistic each figure of `mambaprof report` uses, and how to reproduce the component shares from the raw
tables with pandas or DuckDB alone (rendered into docs/SCHEMA.md; tests/test_reports_cli.py runs both snippets
against a real run and compares them with the report's numbers)."""

#: (report figure, statistic it uses, raw columns it is computed from)
FIGURES: tuple[tuple[str, str, str], ...] = (
    (
     'component time (`summary_components.time_ms`, the attribution tables)',
     "sum over the family's layers of the per-forward **mean** over repeats (means add up: the components'"
     " means sum to the forward's mean)",
     '`components.wall_ms_mean` on the `wall` basis (CPU default), `components.kernel_ms_mean` on the '
     '`kernel` basis (GPU default); the basis is `summary_run.time_basis`'),
    (
     'share of block time (`share_of_block_pct`, "SSM scan: 38% of Mamba-1 block wall time")',
     'component time / sum of the time of every block component of that family at that point x 100; '
     'missing values count as 0',
     'as above, families `mamba1` / `mamba2` only'),
    (
     'share of the forward (`share_of_forward_pct`)',
     'component time / sum over every component of the point, block and model-level x 100',
     'as above, every family'),
    (
     '"on medians it is ..." (noise clause of a share finding)',
     'the same share on the sum of per-layer **medians**',
     '`components.wall_ms_median` / `kernel_ms_median`'),
    (
     '"the forward\'s repeats spread N%" (`summary_points.original_spread_pct`)',
     '(slowest - fastest timed repeat) / median x 100 of the original forward',
     '`points.original_ms_min`, `original_ms_max`, `original_ms_median`'),
    (
     '"the markers cost N%"',
     'split forward with markers minus split forward without, vs the original',
     '`points.split_vs_original_pct - points.split_bare_vs_original_pct`'),
    (
     'loaded host (`summary_run.host_loaded`)',
     'the spread above 50% at half the points with two repeats, or above 200% at one',
     'as the spread'),
    (
     'point wall ms, tokens/s (`summary_points.wall_ms`, `tokens_per_s`)',
     "**median** of the original forward's repeats",
     '`points.original_ms_median`'),
    (
     'point kernel ms (`summary_points.kernel_ms`)',
     'median over profiled forwards of the summed kernel time',
     '`points.forward_kernel_ms`'),
    (
     'fidelity ("its cost vs the original forward")',
     'median of back-to-back pairs with its confidence interval (schema 5 on), else ratio of medians',
     '`points.split_bare_paired_pct`, `split_bare_ci_low_pct`, `split_bare_ci_high_pct`, '
     '`split_bare_vs_original_pct`'),
    (
     'scaling exponent (`summary_scaling.exponent`)',
     'least squares of log(component time) on log(seqlen); `exponent_theil_sen` the median of pairwise '
     'slopes; `fit_flag` why it is not stated',
     'component time as above'),
)


_INTRO = r"""
## How the report's figures are computed

Every figure of `mambaprof report` (terminal, HTML, `summary_*.parquet`) comes from the raw tables above by
one rule each; nothing is re-measured.
"""

_AFTER = r"""
On a busy host the medians of the same spans can give another share than the means (one busy 2-core run:
34.5% on medians against the report's 38.33%, and 89% on the kernel basis): the report states the share on
means and, in the finding's noise clause, the share on medians and on the kernel basis when they differ from
it by more than 5 points.

Reproduce the report's component shares of one run directory `RUN` (a single-process run) with pandas:

```python
import pandas as pd

RUN = "runs/m1"  # a run directory
BASIS = "wall_ms_mean"  # summary_run.time_basis `wall`; `kernel_ms_mean` for `kernel`
comps = pd.read_parquet(f"{RUN}/components")
block = comps[comps.family.isin(["mamba1", "mamba2"])]
per = block.groupby(["point_id", "family", "component"])[BASIS].sum(min_count=1)
shares = 100 * per / per.groupby(level=["point_id", "family"]).transform("sum")
print(shares.rename("share_of_block_pct").reset_index())
```

and with DuckDB:

```sql
WITH per AS (
    SELECT point_id, family, component, sum(wall_ms_mean) AS ms  -- kernel_ms_mean on the kernel basis
    FROM read_parquet('runs/m1/components/*.parquet')
    WHERE family IN ('mamba1', 'mamba2')
    GROUP BY point_id, family, component
)
SELECT point_id, family, component, 100 * ms / sum(ms) OVER (PARTITION BY point_id, family) AS share_of_block_pct
FROM per
ORDER BY point_id, family, component;
```
"""


REPORT_FIGURES = (_INTRO + "\n| report figure | statistic | raw columns |\n| --- | --- | --- |\n"
                  + "".join(f"| {a} | {b} | {c} |\n" for a, b, c in FIGURES) + _AFTER)
