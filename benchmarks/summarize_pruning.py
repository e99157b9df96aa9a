"""Summarise a pruning what-if device run (benchmarks/device_pruning_whatif.sh): read every run directory's
`pruning` table (and the training logs) under its work folder and print one JSON document with the numbers
the write-up needs, stamped with benchmarks/provenance.py ("provenance").

Nothing is re-measured: rows are copied from the tables, and the pruning targets are evaluated on
them as stated (>= 1.2x end-to-end prefill at seqlen >= 4096, >= 25% smaller decode state, perplexity
within 2% of the unpruned model processed the same way). "Decode state" is taken conservatively as the
whole measured decode cache (SSM states and conv states); the SSM-state-only change is in the rows too.

    python benchmarks/summarize_pruning.py /tmp/pruning_whatif > summary.json
"""

import json
import sys
from pathlib import Path

from provenance import stamp

from mambaprof.reports.pruning import read_pruning, score_winners
from mambaprof.storage.rundir import read_run_record

COLUMNS = ["variant", "score", "ratio", "per_layer", "recover_steps", "d_state_kept_mean", "seqlen", "batch",
           "prefill_ms_median", "prefill_tokens_per_s", "prefill_speedup", "decode_ms_per_token", "decode_speedup",
           "cache_bytes", "cache_bytes_delta_pct", "ssm_state_bytes_delta_pct", "peak_memory_bytes",
           "peak_memory_delta_pct", "ssm_scan_ms", "in_proj_ms", "out_proj_ms", "conv1d_ms", "ssm_params_ms",
           "gating_ms", "perplexity", "perplexity_delta_pct", "selective_copy_acc_pct", "assoc_recall_acc_pct",
           "recover_loss", "note"]


def clean(value):
    if isinstance(value, float) and value != value:
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def summarise(run_dir: Path) -> dict:
    df = read_pruning(run_dir)
    record = read_run_record(run_dir)
    rows = [{c: clean(r[c]) for c in COLUMNS if c in df.columns} for _, r in df.iterrows()]
    meets = df[(df.variant_id > 0) & (df.seqlen >= 4096) & (df.prefill_speedup >= 1.2)
               & (df.cache_bytes_delta_pct <= -25.0) & (df.perplexity_delta_pct.abs() <= 2.0)]
    winners = score_winners(df)
    return {
        "status": record["status"], "status_reason": record["status_reason"], "device": record["device_name"],
        "model_ref": record["model_ref"], "family": record["model_family"], "n_params": record["n_params"],
        "config": json.loads(record["config_json"]), "rows": rows,
        "score_winners": {f"{ratio:g}": clean(w) for ratio, w in winners["winner"].items()} if len(winners) else {},
        "variants_meeting_targets": sorted(set(meets.variant)),
    }


def main():
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        print("usage: python benchmarks/summarize_pruning.py WORK_DIR  (the what-if's work folder, with runs/)",
              file=sys.stderr)
        return 2
    work = Path(sys.argv[1])
    if not (work / "runs").is_dir():
        print(f"error: {work} has no runs/ folder (not a pruning what-if work folder)", file=sys.stderr)
        return 2
    out = {"provenance": stamp(), "train_logs": {}, "runs": {}}
    for log in sorted(work.glob("lm*/*/train_log.json")):
        out["train_logs"][log.parent.name] = json.loads(log.read_text())
    for run in sorted((work / "runs").glob("*")):
        if (run / "pruning").is_dir():
            try:
                out["runs"][run.name] = summarise(run)
            except Exception as exc:  # noqa: BLE001 - one unreadable run must not hide the others
                out["runs"][run.name] = {"error": f"{type(exc).__name__}: {exc}"}
    json.dump(out, sys.stdout, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
