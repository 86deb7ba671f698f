"""LightningModules for text summarization: one for every seq2seq net (Transformer,
pointer-generator LSTM, Hugging Face models), and the extractive Lead-3 baseline. Both are judged
by ROUGE on generated text and log a table of samples at each validation."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning import LightningModule
from lightning.pytorch.loggers import WandbLogger
from torch import nn
from torchmetrics import MeanMetric

from src.metrics.rouge import ROUGE
from src.models.nets import decoding
from src.models.optim import build_optimizers
from src.utils.errors import CheckpointError, ConfigError

SAMPLE_COLUMNS = ["article", "reference", "generated"]
# A sentence ends at . ! ? (then closing quotes/brackets) before whitespace. In cased text the
# next sentence starts with a capital, digit or opening quote; in tokenized text (See et al.'s
# lowercased format) the terminator is a token of its own (" . ").
_BOUNDARY = re.compile(r"(?P<tok>\s)?[.!?]['\"’”)]*\s+(?=(?P<next>.))")
_ABBREVIATION = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|Gen|Gov|Sen|Rep|Lt|Col|Sgt|Capt|No|vs|Inc|Co|Corp)"
                           r"|\b[A-Z](?:\.[A-Z])*)\.$")


def split_sentences(text: str) -> list[str]:
    """Sentences of an article, by rule (nltk's punkt model cannot be downloaded offline):
    split after a terminator when the next sentence starts like one, except after common
    abbreviations and initials (``Mr.``, ``U.S.``)."""
    sentences, start = [], 0
    for m in _BOUNDARY.finditer(text):
        head = text[start: m.end()].rstrip()
        if m.group("tok") is None and not re.match(r"[A-Z0-9\"'“‘(]", m.group("next")):
            continue
        if m.group("tok") is None and _ABBREVIATION.search(head.rstrip("'\"’”)")):
            continue
        sentences.append(head)
        start = m.end()
    tail = text[start:].strip()
    return [s for s in [*sentences, tail] if s]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of the vocabulary (token -> id). The tokenizer is rebuilt from the data config rather
    than stored, and weights are meaningless under another vocabulary of the same size (say, a
    BPE trained on other pairs), so checkpoints carry this to be checked against."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return hashlib.sha1(json.dumps(vocab).encode()).hexdigest()[:16]


def clean_summary(text: str) -> str:
    """One sentence per line, no blank lines: the layout ROUGE-Lsum reads."""
    return "\n".join(line.strip() for line in text.split("\n") if line.strip())


class RougeEvaluation(LightningModule):
    """Validation/test/predict loops shared by every summarizer: ``summarize(batch, stage)`` gives
    texts, scored against the references with ROUGE-1/2/L/Lsum F1 (``stage/rouge1`` ...).

    At each validation the first ``num_samples`` (article excerpt, reference, generated) rows go
    to ``<run dir>/val_samples.jsonl`` (with epoch and step) and, under W&B, to a table.
    """

    #: eval.py refuses to run without ckpt_path when the model has trainable weights
    needs_checkpoint = True

    def __init__(self, num_samples: int = 8, excerpt_chars: int = 400) -> None:
        super().__init__()
        self.num_samples, self.excerpt_chars = num_samples, excerpt_chars
        self.val_rouge, self.test_rouge = ROUGE(), ROUGE()
        self.samples: list[list[str]] = []

    def summarize(self, batch: Mapping[str, Any], stage: str) -> list[str]:
        """A summary of each article of ``batch`` (sentences separated by newlines)."""
        raise NotImplementedError

    def _score(self, batch: Mapping[str, Any], stage: str) -> list[str]:
        preds = [clean_summary(p) for p in self.summarize(batch, stage)]
        getattr(self, f"{stage}_rouge").update(preds, batch["references"])
        for article, ref, pred in zip(batch["articles"], batch["references"], preds):
            if stage == "val" and len(self.samples) < self.num_samples:
                self.samples.append([article[: self.excerpt_chars], ref, pred])
        return preds

    def _log_rouge(self, stage: str) -> None:
        metric = getattr(self, f"{stage}_rouge")
        scores = metric.compute()  # synchronised across processes by torchmetrics
        metric.reset()
        for key, value in scores.items():
            self.log(f"{stage}/{key}", value, prog_bar=key == "rougeL")

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._score(batch, "val")

    def on_validation_epoch_start(self) -> None:
        self.samples = []

    def on_validation_epoch_end(self) -> None:
        self._log_rouge("val")
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        rows = [dict(zip(SAMPLE_COLUMNS, row), epoch=self.current_epoch, step=self.global_step) for row in self.samples]
        path = Path(self.trainer.default_root_dir) / "val_samples.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table(key="val/samples", columns=SAMPLE_COLUMNS, data=self.samples)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._score(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_rouge("test")

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        preds = [clean_summary(p) for p in self.summarize(batch, "test")]
        return [{"id": i, "reference": r, "prediction": p} for i, r, p in zip(batch["ids"], batch["references"], preds)]


class SummarizationModule(RougeEvaluation):
    """Teacher-forced NLL training (label smoothing, plus the net's auxiliary loss such as
    coverage) of any seq2seq net: the Transformer and LSTM written here decode with
    :mod:`src.models.nets.decoding`, Hugging Face nets with their own ``generate``.

    ``val_generation`` (greedy by default: cheap enough for every validation) and ``generation``
    (test and predict; beam search) take ``beam_size``, ``max_len``, ``min_len``,
    ``length_penalty``, ``no_repeat_ngram``. The tokenizer comes from the datamodule at setup.
    Only plain values go into ``hparams``: checkpoints load with ``weights_only=True``.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "step",
        monitor: str = "val/loss",
        label_smoothing: float = 0.1,
        generation: Mapping[str, Any] | None = None,
        val_generation: Mapping[str, Any] | None = None,
        num_samples: int = 8,
        compile: bool = False,
    ) -> None:
        super().__init__(num_samples=num_samples)
        self.save_hyperparameters(logger=False, ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.generation = {"val": dict(val_generation or {}), "test": dict(generation or {})}
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.tokenizer: Any | None = None
        self.fingerprint: str | None = None  # of self.tokenizer
        self.trained_fingerprint: str | None = None  # of the checkpoint's tokenizer, once one is loaded

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "tokenizer"):
            raise ConfigError("summarization models take their tokenizer from the datamodule; pass a "
                              "SummarizationDataModule (data=cnn_dailymail or cnn_dailymail_pg)")
        self.tokenizer = datamodule.tokenizer
        if len(self.tokenizer) > self.net.vocab_size:
            raise ConfigError(f"the tokenizer has {len(self.tokenizer)} tokens but the net's vocabulary {self.net.vocab_size}; "
                              "a pretrained model needs its own tokenizer (data.tokenizer.name=<the model's name>)")
        self.fingerprint = tokenizer_fingerprint(self.tokenizer)
        self._check_tokenizer()
        if self.hparams.compile and stage == "fit":
            self.net.compile()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.fingerprint is not None:
            checkpoint["tokenizer_fingerprint"] = self.fingerprint

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Called by Lightning when it restores a run (after ``setup``) and by eval.py (before)."""
        self.trained_fingerprint = checkpoint.get("tokenizer_fingerprint")
        self._check_tokenizer()

    def _check_tokenizer(self) -> None:
        if self.fingerprint and self.trained_fingerprint and self.fingerprint != self.trained_fingerprint:
            raise CheckpointError(
                f"the checkpoint was trained with another tokenizer (vocabulary {self.trained_fingerprint}, this data "
                f"gives {self.fingerprint}); use the data settings it was trained with (data=, data.tokenizer.*, "
                "data.max_examples.train: the BPE is trained on the training pairs)")

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> decoding.Seq2SeqOutput:
        return self.net(source, target)

    def _loss(self, batch: Mapping[str, Any], label_smoothing: float) -> torch.Tensor:
        out = self(batch["source"], batch["target"])
        # logits or normalised log-probs: cross_entropy's log_softmax leaves the latter unchanged
        loss = F.cross_entropy(out.logits.flatten(0, 1), batch["target"].flatten(), ignore_index=self.net.pad_id,
                               label_smoothing=label_smoothing)
        return loss if out.aux_loss is None else loss + out.aux_loss

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch, self.hparams.label_smoothing)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["ids"]))
        return loss

    def summarize(self, batch: Mapping[str, Any], stage: str) -> list[str]:
        settings = self.generation[stage]
        source = batch["source"]
        ids = self.net.generate(source, **settings) if hasattr(self.net, "generate") else decoding.generate(
            self.net, source, **settings)
        return self.tokenizer.batch_decode(ids, skip_special_tokens=True)

    def _evaluate(self, batch: Mapping[str, Any], stage: str) -> None:
        mean_loss = getattr(self, f"{stage}_loss")
        mean_loss.update(self._loss(batch, 0.0))
        self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=True)
        self._score(batch, stage)

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> Any:
        return build_optimizers(self, self.optimizer_factory, self.scheduler_factory,
                                self.hparams.scheduler_interval, self.hparams.monitor)


class Lead3Module(RougeEvaluation):
    """Extractive baseline: the first ``sentences`` sentences of the article, one per line. No
    weights, so ``python eval.py model=lead3 data=cnn_dailymail`` runs without a checkpoint."""

    needs_checkpoint = False

    def __init__(self, sentences: int = 3, num_samples: int = 8) -> None:
        super().__init__(num_samples=num_samples)
        self.save_hyperparameters(logger=False)

    def summarize(self, batch: Mapping[str, Any], stage: str) -> list[str]:
        return ["\n".join(split_sentences(a)[: self.hparams.sentences]) for a in batch["articles"]]

    def configure_optimizers(self) -> Any:
        raise ConfigError("model=lead3 has no weights to train; evaluate it with: python eval.py model=lead3 data=<data>")
