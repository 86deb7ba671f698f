"""LightningModule for text summarization: teacher-forced training of any seq2seq net, and ROUGE of
generated summaries at validation and test. Extractive nets without weights (Lead-3) run through
the same evaluation."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import WandbLogger
from torch import nn
from torchmetrics import MeanMetric

from src.core.errors import CheckpointError, ConfigError
from src.data.tokenizers import CHECKPOINT_KEY, fingerprint, tokenizer_to_dict
from src.metrics.rouge import ROUGE
from src.models.base import OptimizerFactory, SchedulerFactory, TaskModule
from src.models.nets import decoding
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)
SAMPLE_COLUMNS = ["article", "reference", "generated"]


def clean_summary(text: str) -> str:
    """One sentence per line, no blank lines: the layout ROUGE-Lsum reads."""
    return "\n".join(line.strip() for line in text.split("\n") if line.strip())


class SummarizationModule(TaskModule):
    """Teacher-forced NLL training (label smoothing, plus the net's auxiliary loss such as
    coverage) of any seq2seq net: the Transformer and LSTM written here decode with
    :mod:`src.models.nets.decoding`, Hugging Face nets with their own ``generate``, and an
    ``extractive`` net (Lead-3) summarizes the article texts directly.

    Summaries are scored against the references with ROUGE-1/2/L/Lsum F1 (``stage/rouge1`` ...).
    ``val_generation`` (greedy by default: cheap enough for every validation) and ``generation``
    (test and predict; beam search) take ``beam_size``, ``max_len``, ``min_len``,
    ``length_penalty``, ``no_repeat_ngram``. At each validation the first ``num_samples``
    (article excerpt, reference, generated) rows go to ``<run dir>/val_samples.jsonl`` and, under
    W&B, to a table.

    ``lr_scales`` gives modules of the net their own learning rates (``{encoder: 0.1}``).

    The tokenizer comes from the datamodule at setup; checkpoints carry it (``checkpoint["tokenizer"]``,
    plain strings, which the datamodule's ``adopt_checkpoint`` reads back: evaluation and fine-tuning
    need neither the training split nor the hub) and its fingerprint, checked on load. Only plain
    values go into ``hparams``: checkpoints load with ``weights_only=True``.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "step",
        scheduler_monitor: str = "val/loss",
        label_smoothing: float = 0.1,
        generation: Mapping[str, Any] | None = None,
        val_generation: Mapping[str, Any] | None = None,
        num_samples: int = 8,
        excerpt_chars: int = 400,
        compile: bool = False,
        lr_scales: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(net, optimizer, scheduler, scheduler_interval=scheduler_interval,
                         scheduler_monitor=scheduler_monitor, lr_scales=lr_scales, compile=compile)
        self.save_hyperparameters(logger=False, ignore=self.IGNORED)
        self.generation = {"val": dict(val_generation or {}), "test": dict(generation or {})}
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.val_rouge, self.test_rouge = ROUGE(), ROUGE()
        self.samples: list[list[str]] = []
        self.tokenizer: Any | None = None
        self.fingerprint: str | None = None  # of self.tokenizer
        self.trained_fingerprint: str | None = None  # of the checkpoint's tokenizer, once one is loaded

    @property
    def extractive(self) -> bool:
        return getattr(self.net, "extractive", False)

    # -- tokenizer ------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None or self.tokenizer is None:  # predict.py's loop runs without a datamodule
            self.take_tokenizer(datamodule)

    def take_tokenizer(self, datamodule: Any) -> None:
        """Encode and decode with the datamodule's tokenizer (predict.py and serve.py hand the
        datamodule over themselves), refused when it is not the one the weights were trained with."""
        if self.extractive:
            return
        if datamodule is None or not hasattr(datamodule, "tokenizer"):
            raise ConfigError("summarization models take their tokenizer from the datamodule; pass a "
                              "SummarizationDataModule (data=cnn_dailymail or cnn_dailymail_pg)")
        tokenizer = datamodule.tokenizer
        if len(tokenizer) > self.net.vocab_size:
            raise ConfigError(f"the tokenizer has {len(tokenizer)} tokens but the net's vocabulary {self.net.vocab_size}; "
                              "a pretrained model needs its own tokenizer (data.tokenizer.name=<the model's name>)")
        self.tokenizer = tokenizer
        self.fingerprint = fingerprint(tokenizer)
        self._check_tokenizer()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is None:
            return
        checkpoint["tokenizer_fingerprint"] = self.fingerprint
        state = tokenizer_to_dict(self.tokenizer)
        if state is None:
            log.warning("this tokenizer has no fast (Rust) version, so it cannot be stored in the checkpoint; "
                        "evaluating the checkpoint will need it by name again")
        else:
            checkpoint[CHECKPOINT_KEY] = state

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Called by Lightning when it restores a run (after ``setup``) and by eval.py (before)."""
        super().on_load_checkpoint(checkpoint)
        self.trained_fingerprint = checkpoint.get("tokenizer_fingerprint")
        self._check_tokenizer()

    def _check_tokenizer(self) -> None:
        if self.fingerprint and self.trained_fingerprint and self.fingerprint != self.trained_fingerprint:
            raise CheckpointError(
                f"the checkpoint was trained with another tokenizer (vocabulary {self.trained_fingerprint}, this data "
                f"gives {self.fingerprint}); use the data settings it was trained with (data=, data.tokenizer.*, "
                "data.max_examples.train: the BPE is trained on the training pairs)")

    # -- training ---------------------------------------------------------------------------------
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

    # -- evaluation -------------------------------------------------------------------------------
    def summarize(self, batch: Mapping[str, Any], stage: str) -> list[str]:
        """A summary of each article of ``batch``, one sentence per line."""
        if self.extractive:
            texts = self.net.summarize(batch["articles"])
        else:
            settings, source = self.generation[stage], batch["source"]
            ids = (self.net.generate(source, **settings) if hasattr(self.net, "generate")
                   else decoding.generate(self.net, source, **settings))
            texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        return [clean_summary(t) for t in texts]

    def _evaluate(self, batch: Mapping[str, Any], stage: str) -> list[str]:
        if not self.extractive:
            mean_loss = getattr(self, f"{stage}_loss")
            mean_loss.update(self._loss(batch, 0.0))
            self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=True)
        preds = self.summarize(batch, stage)
        getattr(self, f"{stage}_rouge").update(preds, batch["references"])
        if stage == "val":
            room = max(0, self.hparams.num_samples - len(self.samples))
            self.samples += [[a[: self.hparams.excerpt_chars], r, p]
                             for a, r, p in zip(batch["articles"][:room], batch["references"][:room], preds[:room])]
        return preds

    def _log_rouge(self, stage: str) -> None:
        metric = getattr(self, f"{stage}_rouge")
        scores = metric.compute()  # synchronised across processes by torchmetrics
        metric.reset()
        for key, value in scores.items():
            self.log(f"{stage}/{key}", value, prog_bar=key == "rougeL")

    def on_validation_epoch_start(self) -> None:
        self.samples = []

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

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
        generated = self._evaluate(batch, "test")
        if self.test_predictions is not None:  # eval.py asked for them; train.py's test does not pay for them
            self.test_predictions += self._prediction_rows(batch, generated)

    def on_test_epoch_end(self) -> None:
        self._log_rouge("test")

    def predict_step(self, batch: Mapping[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """predict.py: a summary of each article (``generation`` settings: beam, lengths)."""
        return [{"summary": summary} for summary in self.summarize(batch, "test")]

    @staticmethod
    def _prediction_rows(batch: Mapping[str, Any], preds: list[str]) -> list[dict[str, Any]]:
        return [{"id": i, "reference": r, "prediction": p} for i, r, p in zip(batch["ids"], batch["references"], preds)]
