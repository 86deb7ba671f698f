"""ROUGE F1 as a torchmetrics ``Metric``, scored by Google's ``rouge-score`` package.

torchmetrics' own ``ROUGEScore`` splits sentences for ROUGE-Lsum with nltk's punkt model, which
is downloaded at run time (impossible offline), and stems with nltk rather than rouge-score's
Porter stemmer. Here every pair is scored by ``rouge_score.RougeScorer`` itself, so the numbers
are those of the reference implementation; summaries carry one sentence per line, the format its
ROUGE-Lsum expects (CNN/DailyMail highlights already do).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from rouge_score.rouge_scorer import RougeScorer
from torchmetrics import Metric

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


class ROUGE(Metric):
    """Mean F1 of each ROUGE variant over all (prediction, reference) pairs seen.

    State is a per-key sum of F1 plus a pair count, both summed across processes, so the result
    under DDP equals the single-process one on the same pairs.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, keys: Sequence[str] = ROUGE_KEYS, use_stemmer: bool = True) -> None:
        super().__init__()
        self.keys = tuple(keys)
        self.scorer = RougeScorer(list(self.keys), use_stemmer=use_stemmer)
        self.add_state("f1_sum", default=torch.zeros(len(self.keys), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pairs", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Sequence[str], targets: Sequence[str]) -> None:
        if len(preds) != len(targets):
            raise ValueError(f"{len(preds)} predictions for {len(targets)} references")
        for pred, target in zip(preds, targets):
            scores = self.scorer.score(target, pred)  # rouge-score's order: (target, prediction)
            self.f1_sum += torch.tensor([scores[k].fmeasure for k in self.keys], dtype=torch.float64,
                                        device=self.f1_sum.device)
        self.pairs += len(preds)

    def compute(self) -> dict[str, torch.Tensor]:
        mean = self.f1_sum / self.pairs.clamp(min=1)
        return {k: mean[i].float() for i, k in enumerate(self.keys)}
