"""How can a CUDA-graph decode step be attributed to its components? (device diagnostic)

For a preset's decode step (mambaprof's component-split step after a prompt), measured in one run per batch:
- the whole step as one plain graph, replayed back to back (the reference);
- inside-graph events (collectors.graphs.time_within_graph): the whole step captured with external timing
  events around components, at most `per_graph` components per capture (0: all in one capture), for each:
  the sum of the component intervals against the plain graph, before and after subtracting the measured
  per-event latency, and each capture's replay against the plain one (what the event nodes cost);
- isolated graphs: every component its own graph, replayed in order (the sum against the plain graph).
Needs a GPU and mamba_ssm. Writes JSON (--out) with benchmarks/provenance.py's stamp.

    python benchmarks/graph_attribution.py --preset mamba-1.4b --batch 1,64,256 --out graph_attribution.json
"""

import argparse
import json
import statistics

import torch
from provenance import stamp

from mambaprof.collectors import graphs
from mambaprof.model.decode import decode_step_for
from mambaprof.model.loading import load_preset
from mambaprof.model.structure import discover


def _pct(a, b):
    return 100.0 * (a / b - 1.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mamba-1.4b")
    ap.add_argument("--batch", default="1,64,256")
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--per-graph", default="0,64,16,4", help="events per capture; 0: all in one graph")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        ap.exit(2, "error: needs a CUDA GPU\n")
    dev = torch.device("cuda:0")
    loaded = load_preset(a.preset, dev, torch.bfloat16, backend="mamba_ssm")
    structure = discover(loaded.model)
    result = {"provenance": stamp(), "preset": a.preset, "prompt_len": a.prompt_len, "steps": a.steps,
              "batches": {}}
    for batch in [int(b) for b in a.batch.split(",")]:
        stepper = decode_step_for(loaded.model, structure, batch, a.prompt_len + 4096)
        with torch.inference_mode():
            ids = torch.randint(0, structure.vocab_size or 2, (batch, a.prompt_len), device=dev)
            stepper.token.copy_(stepper.prefill(ids).argmax(-1, keepdim=True))
            segs = stepper.segments()
            fns = [s.run for s in segs]
            whole = graphs.capture(stepper.split_step, warmup=3)
            plain = [graphs.time_loop(whole.replay, a.steps, dev, 3) for _ in range(5)]
            rec = {"segments": len(segs), "plain_replay_ms": plain, "in_graph": {}}
            for per in [int(p) for p in a.per_graph.split(",")]:
                groups = [list(range(len(fns)))] if per == 0 else graphs.spread_groups(len(fns), per)
                t = graphs.time_within_graph(fns, groups, a.steps, dev, warmup=3)
                total = sum(x for x in t.piece_ms if x is not None)
                raw = sum(x for x in t.raw_piece_ms if x is not None)
                ref = t.plain_ms
                rec["in_graph"][str(per)] = {
                    "groups": len(groups), "sum_ms": total, "sum_vs_plain_pct": _pct(total, ref),
                    "plain_ms": t.plain_ms, "raw_sum_ms": raw, "raw_sum_vs_plain_pct": _pct(raw, ref),
                    "event_ms": t.event_ms,
                    "graph_ms": t.graph_ms, "graph_vs_plain_pct": [_pct(g, ref) for g in t.graph_ms],
                    "piece_ms": t.piece_ms}
                print(f"b={batch} per_graph={per}: groups={len(groups)} sum={total:.4f} ms "
                      f"({_pct(total, ref):+.1f}% vs plain {ref:.4f}; before the event correction "
                      f"{_pct(raw, ref):+.1f}%, event {1000 * t.event_ms:.2f} us); event graphs "
                      f"{min(t.graph_ms):.4f}..{max(t.graph_ms):.4f} ms", flush=True)
            parts = graphs.capture_sequence(fns, warmup=3)
            iso = graphs.time_sequence(parts, a.steps, dev, 3)
            del parts, whole
            rec["isolated_sum_ms"] = sum(iso)
            rec["isolated_vs_plain_pct"] = _pct(sum(iso), statistics.median(plain))
            print(f"b={batch}: plain {statistics.median(plain):.4f} ms (runs {min(plain):.4f}..{max(plain):.4f});"
                  f" isolated sum {sum(iso):.4f} ({rec['isolated_vs_plain_pct']:+.1f}%)", flush=True)
            result["batches"][str(batch)] = rec
        stepper.release()
        torch.cuda.empty_cache()
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
