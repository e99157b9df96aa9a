"""Δ-guided structured SSM-state pruning (PerfMamba, arXiv 2511.22849) and its what-if measurement.

Modules, each with one job: `ratios` (parse ratios, kept states per layer), `mixers` (where each
mixer class keeps B, C and A; Δ, B, C, x recomputed), `scores` (per-state importance), `calibration`
(scores from calibration text), `plan` (which states each layer keeps), `physical` (rebuild the
mixer with N' states; masking reference), `checkpoint` (save/load the pruned model: the bridging
layer), `recovery` (short fine-tune), `timing` and `whatif` (the measurement).

May import: run, collectors, evaluation, model, storage and the top level; never cli, distributed or reports.
"""
