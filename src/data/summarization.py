"""Text summarization data: (article, highlights) pairs from local JSON Lines or the Hugging Face
hub, tokenized on the fly with a BPE trained on the training split (or any HF tokenizer, or the one
a checkpoint carries), padded per batch and grouped by length; and the base class the other
text-to-text data (denoising pre-training) shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from src.core.errors import ConfigError, DataError, describe
from src.data.common import loader, per_device_batch_size
from src.data.inputs import text_field
from src.data.samplers import LengthGroupedSampler
from src.data.sources import text_pairs
from src.data.sources.text_pairs import Pairs, local_split_file, read_jsonl
from src.data.tokenizers import (
    CHECKPOINT_KEY,
    cached_bpe,
    fingerprint,
    pretrained_tokenizer,
    tokenizer_from_dict,
)
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

STAGES = ("train", "validation", "test")
# Articles are cut to max_source_len * CHARS_PER_TOKEN characters before tokenizing (and BPE
# training): a generous bound on characters per token, so truncation is still done in tokens,
# but the tail that would be thrown away is never tokenized.
CHARS_PER_TOKEN = 8


class SummarizationDataset(Dataset):
    def __init__(self, pairs: Pairs) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[str, str, str]:
        return self.pairs.ids[i], self.pairs.articles[i], self.pairs.highlights[i]


def pad(seqs: list[list[int]], pad_id: int) -> torch.Tensor:
    """Token id lists as one (B, longest) tensor padded with ``pad_id`` (dynamic padding)."""
    out = torch.full((len(seqs), max(map(len, seqs))), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


class Seq2SeqCollator:
    """Tokenizes a batch on the fly and pads it to its own longest sequence (dynamic padding).

    ``source`` (B, S) and ``target`` (B, T) are token ids padded with ``pad_id``; each target ends
    with ``eos_id``. The texts travel along (``ids``, ``articles``, ``references``) for ROUGE against
    the original highlights and for extractive baselines; without a tokenizer only they are served.
    ``source_prefix`` is prepended to every article (T5's task prefix, ``"summarize: "``).
    """

    def __init__(self, tokenizer: Any | None, max_source_len: int, max_target_len: int, source_prefix: str = "") -> None:
        self.tokenizer, self.max_source_len, self.max_target_len = tokenizer, max_source_len, max_target_len
        self.source_prefix = source_prefix

    def __call__(self, items: list[tuple[str, str, str]]) -> dict[str, Any]:
        ids, articles, references = map(list, zip(*items))
        batch: dict[str, Any] = {"ids": ids, "articles": articles, "references": references}
        if self.tokenizer is None:
            return batch
        tok, cut = self.tokenizer, self.max_source_len * CHARS_PER_TOKEN
        source = tok([self.source_prefix + a[:cut] for a in articles], truncation=True, max_length=self.max_source_len)["input_ids"]
        target = tok(references, add_special_tokens=False, truncation=True, max_length=self.max_target_len - 1)["input_ids"]
        batch["source"] = pad(source, tok.pad_token_id)
        batch["target"] = pad([t + [tok.eos_token_id] for t in target], tok.pad_token_id)
        return batch


class Seq2SeqDataModule(LightningDataModule, ABC):
    """What the text-to-text DataModules share: (id, source text, reference) examples per stage
    (``self.data``, filled by the subclass's ``load``), a tokenizer built on first use (on the first
    process of each node under DDP) or adopted from a checkpoint, checked against ``provides``, and
    length-grouped, dynamically padded loaders. Subclasses implement ``load``, ``_build_tokenizer``
    and ``_collator``, and pass on the settings read here from their own constructors (whose
    signatures Hydra fills). ``batch_size`` is global: divided across devices.
    """

    def __init__(self, name: str, provides: Mapping[str, Any], tokenizer: Mapping[str, Any], max_source_len: int,
                 batch_size: int, group_by_length: bool, num_workers: int, pin_memory: bool, seed: int | None) -> None:
        super().__init__()
        self.name, self.provides, self.tokenizer_settings = name, dict(provides), dict(tokenizer)
        self.max_source_len, self.batch_size, self.group_by_length = max_source_len, batch_size, group_by_length
        self.num_workers, self.pin_memory, self.seed = num_workers, pin_memory, seed
        self.batch_size_per_device = batch_size
        self.data: dict[str, Pairs] = {}
        self._tokenizer: Any | None = None

    @abstractmethod
    def load(self, stage: str) -> Pairs:
        """The examples of a stage (``train``, ``validation``, ``test``), read once into ``self.data``."""

    @abstractmethod
    def _build_tokenizer(self) -> Any:
        """The tokenizer of this data (``data.tokenizer``), when no checkpoint brought one."""

    @abstractmethod
    def _collator(self, stage: str) -> Callable[[list[tuple[str, str, str]]], dict[str, Any]]:
        """What turns a stage's examples into a batch (``self._tokenizer`` is None for models without tokens)."""

    # ------------------------------------------------------------ tokenizer
    @property
    def tokenizer(self) -> Any:
        """The tokenizer, built on first use and checked against ``provides``."""
        if self._tokenizer is None:
            trainer = self.trainer
            if trainer is not None and trainer.world_size > 1 and not self.tokenizer_settings.get("name"):
                # DDP: the first process of each node trains (or loads) the BPE and caches it;
                # the others wait, then load the cache instead of each training its own
                error: Exception | None = None
                if trainer.local_rank == 0:
                    try:
                        self._tokenizer = self._build_tokenizer()
                    except Exception as e:  # every process must reach the barrier, then all stop
                        error = e
                trainer.strategy.barrier("archlab_tokenizer")
                if trainer.strategy.reduce_boolean_decision(error is not None, all=False):
                    raise error or DataError("the first process of this node could not build the tokenizer; its "
                                             "error is above")
            if self._tokenizer is None:
                self._tokenizer = self._build_tokenizer()
            self._check_provides(self._tokenizer)
        return self._tokenizer

    def adopt_checkpoint(self, ckpt: Mapping[str, Any]) -> None:
        """Use the tokenizer ``ckpt`` carries (its weights mean nothing under another vocabulary):
        nothing is trained or downloaded, so no training split is read. It replaces the BPE this
        data would train; a ``data.tokenizer.name`` naming another tokenizer is refused (one line),
        as neither choice can silently win. A checkpoint without one (older format) changes nothing."""
        state = ckpt.get(CHECKPOINT_KEY)
        if state is None:
            return
        named, stored = self.tokenizer_settings.get("name"), state["name_or_path"] or None
        if named and named != stored:
            raise ConfigError(f"data.tokenizer.name={named} but the checkpoint's weights were trained with "
                              f"{stored or 'a BPE trained by archlab'}, stored in it; drop data.tokenizer.name (the "
                              "stored tokenizer is used)")
        tok = tokenizer_from_dict(state)
        self._check_provides(tok)
        self._tokenizer = tok
        log.info(f"Tokenizer: the checkpoint's ({stored or 'BPE'}, {len(tok)} tokens, vocabulary {fingerprint(tok)}); "
                 "none trained or loaded for this data")

    def _check_provides(self, tok: Any) -> None:
        declared = {k: self.provides.get(k) for k in ("vocab_size", "pad_id", "bos_id", "eos_id")}
        actual = {"pad_id": tok.pad_token_id, "eos_id": tok.eos_token_id, "bos_id": tok.bos_token_id}
        wrong = {k: v for k, v in actual.items() if v is not None and declared[k] is not None and v != declared[k]}
        if len(tok) > declared["vocab_size"]:
            wrong["vocab_size"] = len(tok)
        if wrong:
            fix = " ".join(f"data.provides.{k}={v}" for k, v in wrong.items())
            raise DataError(f"data={self.name} declares {declared} but its tokenizer has "
                            f"{ {k: actual.get(k, len(tok)) for k in wrong} }; set {fix}")

    # ---------------------------------------------------------- lightning
    def setup(self, stage: str | None = None) -> None:
        self.batch_size_per_device = per_device_batch_size(self.batch_size, self.trainer)
        needed = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",), "predict": ("test",)}
        for split in needed.get(stage, STAGES) if stage else STAGES:
            self.load(split)

    def _loader(self, stage: str) -> DataLoader:
        if stage not in self.data:
            raise RuntimeError("call setup() before asking for a dataloader")
        pairs = self.data[stage]
        sampler = None
        if stage == "train" and self.group_by_length:
            cut = self.max_source_len * CHARS_PER_TOKEN
            world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
            sampler = LengthGroupedSampler([min(len(a), cut) for a in pairs.articles], self.batch_size_per_device,
                                           self.seed or 0, num_replicas=world, rank=rank)
        return loader(SummarizationDataset(pairs), self.batch_size_per_device, self.trainer, stage == "train",
                      self._collator(stage), self.num_workers, self.pin_memory, sampler=sampler)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")


class SummarizationDataModule(Seq2SeqDataModule):
    """(article, highlights) pairs from ``{data_dir}/{split}.jsonl[.gz]`` when present, otherwise
    from the HF hub (``hf_dataset``, ``hf_config``) when one is named.

    ``splits`` maps each stage to the split it reads (a dataset whose validation split is named
    ``dev``: ``data.splits.validation=dev``); each stage reads its own split, since a model must
    never be selected or scored on the pairs it trained on. The tokenizer is the checkpoint's
    (:meth:`adopt_checkpoint`) or built the first time it is asked for (a byte-level BPE trained on
    the training split, cached under ``tokenizer.cache_dir``, or ``tokenizer.name``, any HF
    tokenizer); a model that needs no tokens (Lead-3) never asks: neither needs a training split.
    predict.py: a user's articles, served as test examples without references.
    """

    input_kind = "text"

    def __init__(
        self,
        name: str,
        data_dir: str,
        provides: Mapping[str, Any],
        tokenizer: Mapping[str, Any],
        splits: Mapping[str, str] | None = None,
        max_examples: Mapping[str, int | None] | None = None,
        hf_dataset: str | None = None,
        hf_config: str | None = None,
        max_source_len: int = 400,
        max_target_len: int = 100,
        source_prefix: str = "",
        offline_hint: str = "",
        batch_size: int = 32,
        group_by_length: bool = True,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int | None = 0,
    ) -> None:
        super().__init__(name, provides, tokenizer, max_source_len, batch_size, group_by_length, num_workers, pin_memory,
                         seed)
        self.save_hyperparameters(logger=False)
        self.splits = {stage: (splits or {}).get(stage, stage) for stage in STAGES}
        shared = {split for split in self.splits.values() if list(self.splits.values()).count(split) > 1}
        if shared:
            stages = [stage for stage, split in self.splits.items() if split in shared]
            raise ConfigError(f"data.splits reads split '{shared.pop()}' for {' and '.join(stages)}: checkpoints would be "
                              "selected, or the model scored, on pairs it trained on; give each stage its own split "
                              "(e.g. data.splits.validation=<another split> to evaluate a checkpoint trained that way)")
        self.max_examples = {stage: (max_examples or {}).get(stage) for stage in STAGES}

    # ---------------------------------------------------------------- files
    def load(self, stage: str) -> Pairs:
        """The pairs of a stage (``train``, ``validation``, ``test``), read once."""
        if stage in self.data:
            return self.data[stage]
        hp, split = self.hparams, self.splits[stage]
        folder = Path(hp.data_dir)
        path = local_split_file(folder, split)
        if path is not None:
            pairs = read_jsonl(path)
        else:
            pairs = self._download(split, stage, folder)
        self.data[stage] = pairs.head(self.max_examples[stage])
        log.info(f"{hp.name} {stage}: {len(self.data[stage])} pairs from split '{split}'")
        return self.data[stage]

    def _download(self, split: str, stage: str, folder: Path) -> Pairs:
        hp = self.hparams
        found = sorted({p.name.split(".")[0] for p in folder.glob("*.jsonl*")}) if folder.is_dir() else []
        fix = (f"put {split}.jsonl[.gz] there or set DATA_DIR to a folder that has it"
               + (f" (found: {', '.join(found)}; a split named otherwise: data.splits.{stage}=<name>)" if found else "")
               + (f", or {hp.offline_hint}" if hp.offline_hint else ""))
        where = f"data={hp.name} has no '{split}' split: no {folder}/{split}.jsonl[.gz] or {split}.csv[.gz]"
        if not hp.hf_dataset:
            raise DataError(f"{where}; {fix}")
        try:
            return text_pairs.download_split(hp.hf_dataset, hp.hf_config, split)
        except Exception as e:  # datasets raises ConnectionError/FileNotFoundError/ValueError... offline
            raise DataError(f"{where}, and {hp.hf_dataset} could not be loaded from the HF hub ({describe(e, 120)}); "
                            f"{fix}") from e

    # ------------------------------------------------------------ tokenizer
    def _build_tokenizer(self) -> Any:
        cfg = self.hparams.tokenizer
        if cfg.get("name"):
            return pretrained_tokenizer(cfg["name"], "data.tokenizer.name", "data.tokenizer.name=null to train a BPE here")
        train = self.load("train")
        cut = self.hparams.max_source_len * CHARS_PER_TOKEN
        texts = [a[:cut] for a in train.articles] + train.highlights
        return cached_bpe(texts, cfg["vocab_size"], cfg.get("min_frequency", 2), cfg.get("cache_dir"), self.hparams.name,
                          text_settings=(CHARS_PER_TOKEN,))

    def _collator(self, stage: str) -> Seq2SeqCollator:
        hp = self.hparams
        return Seq2SeqCollator(self._tokenizer, hp.max_source_len, hp.max_target_len, hp.source_prefix)

    # -- predict.py: a user's articles ----------------------------------------------------------
    def prepare_inputs(self) -> None:
        """The tokenizer is the checkpoint's (adopted) or built when the module asks for it."""

    def encode(self, row: Mapping[str, Any]) -> tuple[str, str, str]:
        """An article as a test example without a reference."""
        return str(row.get("id", "")), text_field(row, "article"), ""

    def input_collate(self) -> Seq2SeqCollator:
        return self._collator("test")
