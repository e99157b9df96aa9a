"""Train a small byte-level Mamba-1 / Mamba-2 language model locally, so pruning what-ifs run on a
model that has learned something (random weights never support an accuracy claim).

Data: the Python standard library's own source (the `train` split of mambaprof.evaluation.text;
every machine has it, no network) mixed with packed synthetic selective-copying and
associative-recall episodes (`--task-frac` of the rows), byte tokens (vocab 256).

    python examples/train_small_lm.py --out runs/lm                      # tiny, CPU, a few minutes
    python examples/train_small_lm.py --family mamba2 --out runs/lm2
    python examples/train_small_lm.py --backend mamba_ssm --d-model 768 --layers 12 --seqlen 1024 \
        --batch 16 --seconds 150 --out runs/lm_gpu                         # GPU, fused kernels

Writes OUT/<family>/: a transformers `save_pretrained` directory (backend hf) or mamba_ssm's
`save_pretrained` layout (backend mamba_ssm), plus train_log.json with the held-out perplexity and
task accuracy. Then: `mambaprof prune --hf OUT/<family> ...`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

from mambaprof.evaluation.lm import perplexity
from mambaprof.evaluation.tasks import TASKS, make_task, packed_tasks, task_accuracy
from mambaprof.evaluation.text import BYTE_VOCAB, byte_tokens, stdlib_text
from mambaprof.model.loading import resolve_device
from mambaprof.model.structure import discover
from mambaprof.pruning.mixers import mixer_views, to_serving_dtype
from mambaprof.pruning.recovery import BatchFn, fine_tune


def build(args: argparse.Namespace, family: str, device: torch.device) -> nn.Module:
    """A fresh byte-level LM (fp32 weights) of the requested family and backend."""
    d_state = args.d_state or (16 if family == "mamba1" else 64)
    if args.backend == "mamba_ssm":
        from mamba_ssm.models.config_mamba import MambaConfig
        from mamba_ssm.models.mixer_seq_simple import MambaLMHeadModel

        ssm_cfg = {"layer": "Mamba1" if family == "mamba1" else "Mamba2", "d_state": d_state}
        if family == "mamba2":
            ssm_cfg.update(headdim=args.headdim, ngroups=1, chunk_size=args.chunk_size)
        cfg = MambaConfig(d_model=args.d_model, n_layer=args.layers, vocab_size=BYTE_VOCAB, ssm_cfg=ssm_cfg,
                          rms_norm=True, residual_in_fp32=True, fused_add_norm=True, pad_vocab_size_multiple=8)
        return MambaLMHeadModel(cfg, device=device, dtype=torch.float32)
    if family == "mamba1":
        from transformers import MambaConfig, MambaForCausalLM

        cfg = MambaConfig(vocab_size=BYTE_VOCAB, hidden_size=args.d_model, state_size=d_state,
                          num_hidden_layers=args.layers, expand=2, use_cache=False)
        return MambaForCausalLM(cfg).to(device)
    from transformers import Mamba2Config, Mamba2ForCausalLM

    d_inner = 2 * args.d_model
    cfg = Mamba2Config(vocab_size=BYTE_VOCAB, hidden_size=args.d_model, state_size=d_state,
                       num_hidden_layers=args.layers, expand=2, head_dim=args.headdim,
                       num_heads=d_inner // args.headdim, n_groups=1, chunk_size=args.chunk_size, use_cache=False)
    return Mamba2ForCausalLM(cfg).to(device)


def mixed_batches(tokens: torch.Tensor, seqlen: int, batch: int, task_frac: float, seed: int) -> BatchFn:
    """Rows of stdlib text (every next byte scored) and packed task episodes (answers scored)."""
    gen = torch.Generator().manual_seed(seed)
    n_task = int(round(batch * task_frac))
    limit = tokens.numel() - seqlen - 1

    def next_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, limit, (batch - n_task,), generator=gen).tolist()
        text = torch.stack([tokens[s:s + seqlen + 1] for s in starts]) if starts else \
            torch.empty(0, seqlen + 1, dtype=torch.long)
        ids, labels = [text[:, :-1]], [text[:, 1:]]
        if n_task:
            task = packed_tasks(n_task, seqlen, gen)
            ids.append(task.ids)
            labels.append(task.labels)
        return torch.cat(ids), torch.cat(labels)

    return next_batch


def train_one(args: argparse.Namespace, family: str, device: torch.device) -> dict:
    """Train one family, save it, evaluate it; returns the log written next to the checkpoint."""
    torch.manual_seed(args.seed)
    model = build(args, family, device)
    n_params = sum(p.numel() for p in model.parameters())
    tokens = byte_tokens(stdlib_text("train"))
    amp = torch.bfloat16 if device.type == "cuda" else None
    print(f"[{family}/{args.backend}] {n_params / 1e6:.2f}M parameters, {tokens.numel() / 1e6:.1f}M train tokens, "
          f"budget {args.steps or args.seconds} {'steps' if args.steps else 's'}", flush=True)
    last = [time.perf_counter()]

    def on_step(step: int, loss: float) -> None:
        if time.perf_counter() - last[0] >= args.log_every:
            last[0] = time.perf_counter()
            print(f"  step {step}  loss {loss:.4f}", flush=True)

    result = fine_tune(model, mixed_batches(tokens, args.seqlen, args.batch, args.task_frac, args.seed), args.lr,
                       device, steps=args.steps or None, seconds=None if args.steps else args.seconds, amp_dtype=amp,
                       weight_decay=0.1, on_step=on_step)
    out = Path(args.out) / family
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    eval_tokens = byte_tokens(stdlib_text("eval", args.eval_tokens))
    serve = to_serving_dtype(model, mixer_views(discover(model)), torch.bfloat16) if device.type == "cuda" else model
    ppl = perplexity(serve, eval_tokens, args.seqlen, 8, device)
    log = {"family": family, "backend": args.backend, "params": n_params, "steps": result.steps,
           "seconds": result.seconds, "train_tokens_seen": result.steps * args.batch * args.seqlen,
           "final_loss": result.final_loss(), "eval_nll": ppl.nll, "eval_perplexity": ppl.perplexity,
           "eval_tokens": ppl.tokens, "config": {k: v for k, v in vars(args).items() if k != "family"}}
    for task in TASKS:
        log[f"{task}_acc_pct"] = task_accuracy(serve, make_task(task, 256, seed=args.seed + 1), device)
    (out / "train_log.json").write_text(json.dumps(log, indent=2) + "\n")
    print(f"[{family}] {result.steps} steps in {result.seconds:.0f}s; held-out perplexity {ppl.perplexity:.3f}; "
          + ", ".join(f"{t} {log[f'{t}_acc_pct']:.1f}%" for t in TASKS) + f"; saved {out}", flush=True)
    return log


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", choices=["mamba1", "mamba2", "both"], default="both")
    ap.add_argument("--backend", choices=["auto", "hf", "mamba_ssm"], default="auto",
                    help="hf: transformers (CPU or GPU); mamba_ssm: fused kernels (GPU). auto: mamba_ssm on GPU.")
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--d-state", type=int, default=0, help="default 16 (Mamba-1), 64 (Mamba-2)")
    ap.add_argument("--headdim", type=int, default=16)
    ap.add_argument("--chunk-size", type=int, default=64)
    ap.add_argument("--seqlen", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seconds", type=float, default=120.0, help="wall-clock budget per family")
    ap.add_argument("--steps", type=int, default=0, help="train this many steps instead of --seconds")
    ap.add_argument("--task-frac", type=float, default=0.25, help="share of rows that are synthetic task episodes")
    ap.add_argument("--eval-tokens", type=int, default=1 << 15)
    ap.add_argument("--log-every", type=float, default=10.0, help="seconds between progress lines")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    device = resolve_device(args.device)
    if args.backend == "auto":
        from mambaprof.env import mamba_ssm_available

        args.backend = "mamba_ssm" if device.type == "cuda" and mamba_ssm_available() else "hf"
    families = ["mamba1", "mamba2"] if args.family == "both" else [args.family]
    for family in families:
        train_one(args, family, device)


if __name__ == "__main__":
    main()
