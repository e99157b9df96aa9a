"""Has the model learned anything? Chance levels of the what-if's accuracy measures, and the caveat
that says when accuracy deltas measure nothing (pure Python: the reports import it without torch).

Thresholds (documented in README.md, "Pruning what-if"):
- Perplexity: the held-out text is bytes, so a uniform guess scores CHANCE_PERPLEXITY = 256 per byte
  (ln 256 = 5.55 nats). A model whose ln-perplexity is within LEARNED_MARGIN_NATS (ln 2) of that, i.e.
  perplexity >= 128, has not even learned the byte frequencies of source text (a unigram model already
  scores about 25 on the stdlib text): its perplexity deltas measure nothing.
- Tasks: an accuracy counts as chance when it is not above the task's chance level by more than
  TASK_CHANCE_SIGMAS binomial standard errors of the scored answers (3 sigma: at 256 episodes that
  is 6.25% + 1.6 pp for selective copying, 10% + 2.8 pp for associative recall).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

#: perplexity (per byte token) of a uniform guess over the 256 byte values
CHANCE_PERPLEXITY = 256.0
#: ln-perplexity within this many nats of ln(CHANCE_PERPLEXITY) counts as not learned (ln 2: ppl >= 128)
LEARNED_MARGIN_NATS = math.log(2.0)
#: chance accuracy (%) of each synthetic task: 1/16 symbols to copy, 1/10 values to recall
CHANCE_PCT = {"selective_copy": 100.0 / 16, "assoc_recall": 100.0 / 10}
#: scored answers per episode (the generators' defaults in mambaprof.evaluation.tasks)
ANSWERS_PER_EPISODE = {"selective_copy": 8, "assoc_recall": 4}
#: an accuracy within this many binomial standard errors of chance counts as chance
TASK_CHANCE_SIGMAS = 3.0
TASK_NAMES = {"selective_copy": "selective copying", "assoc_recall": "associative recall"}
ADVICE_RANDOM = "To measure accuracy, train a model (examples/train_small_lm.py) and pass it with --hf."
ADVICE_TRAIN = "Train it longer (e.g. more examples/train_small_lm.py --steps) before reading those deltas."


def perplexity_at_chance(perplexity: float) -> bool:
    """True when a per-byte perplexity is at or near chance: ln(ppl) >= ln(256) - ln 2 (ppl >= 128)."""
    return math.log(perplexity) >= math.log(CHANCE_PERPLEXITY) - LEARNED_MARGIN_NATS


def perplexity_words(perplexity: float) -> str:
    """The unpruned perplexity (per byte) against chance, worded from the number: worse than a uniform guess over
    the 256 byte values when above CHANCE_PERPLEXITY, that of one when equal to 3 significant digits, else near it."""
    learned = f"a model that learned scores below {CHANCE_PERPLEXITY / math.exp(LEARNED_MARGIN_NATS):.0f}"
    guess = f"a uniform guess over the {CHANCE_PERPLEXITY:.0f} byte values"
    if f"{perplexity:.3g}" == f"{CHANCE_PERPLEXITY:.3g}":
        return f"its perplexity {perplexity:.4g} per byte is that of {guess} ({learned})"
    if perplexity > CHANCE_PERPLEXITY:
        return (f"its perplexity {perplexity:.4g} per byte is worse than {guess} (which scores "
                f"{CHANCE_PERPLEXITY:.0f}; {learned})")
    return f"its perplexity {perplexity:.4g} per byte is near that of {guess} ({CHANCE_PERPLEXITY:.0f}; {learned})"


def task_chance_limit_pct(task: str, answers: int) -> float:
    """Highest accuracy (%) that still counts as chance for `answers` scored answers."""
    p = CHANCE_PCT[task] / 100.0
    return 100.0 * (p + TASK_CHANCE_SIGMAS * math.sqrt(p * (1.0 - p) / max(answers, 1)))


def accuracy_caveat(perplexity: float | None, accuracy_pct: Mapping[str, float | None],
                    answers: Mapping[str, int], random_weights: bool = False) -> str | None:
    """Why the unpruned model's accuracy deltas measure nothing, in words; None when it has learned.

    perplexity: held-out perplexity per byte; accuracy_pct: task -> accuracy (%); answers: task -> scored
    answers; random_weights: the model was built from a preset or default config (never trained).
    """
    ppl_chance = perplexity is not None and perplexity_at_chance(perplexity)
    scored = {t: a for t, a in accuracy_pct.items() if a is not None and t in CHANCE_PCT}
    at_chance = {t: a for t, a in scored.items() if a <= task_chance_limit_pct(t, answers.get(t, 0))}
    if not (random_weights or ppl_chance or at_chance):
        return None
    reasons = ["it has random weights (a preset or default config, never trained)"] if random_weights else []
    if ppl_chance:
        reasons.append(perplexity_words(perplexity))
    if at_chance:
        reasons.append("its task accuracy is at chance: " + ", ".join(
            f"{TASK_NAMES.get(t, t)} {a:.1f}% (chance {CHANCE_PCT[t]:.3g}%)" for t, a in at_chance.items()))
    all_tasks = len(at_chance) == len(scored)
    if random_weights or (ppl_chance and all_tasks):
        which, stands = "accuracy deltas (perplexity and task accuracy)", ""
    elif ppl_chance:
        which, stands = "perplexity deltas", "; task accuracy deltas of the tasks above chance stand"
    else:
        which = "task accuracy deltas" if all_tasks else "the deltas of " + ", ".join(
            TASK_NAMES.get(t, t) for t in at_chance)
        stands = "; perplexity deltas stand"
    return (f"the unpruned model has not learned enough for {which} to mean anything: {'; '.join(reasons)}"
            f"{stands}. {ADVICE_RANDOM if random_weights else ADVICE_TRAIN}")
