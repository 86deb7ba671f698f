"""Text summarization data: CNN/DailyMail (local JSONL or the Hugging Face hub), a byte-level BPE
tokenizer trained on the training split (cached) or any pretrained HF tokenizer, dynamic padding
and length-grouped batches."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler

from src.data.common import per_device_batch_size
from src.utils.errors import DataError, describe
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

STAGES = ("train", "validation", "test")
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0..3 of every BPE trained here
# Articles are cut to max_source_len * CHARS_PER_TOKEN characters before tokenizing (and BPE
# training): a generous bound on characters per token, so truncation is still done in tokens,
# but the tail that would be thrown away is never tokenized.
CHARS_PER_TOKEN = 8


@dataclass(frozen=True)
class Pairs:
    """One split as parallel lists: ``ids``, ``articles``, ``highlights`` (one sentence a line)."""

    ids: list[str]
    articles: list[str]
    highlights: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def head(self, n: int | None) -> Pairs:
        return self if n is None else Pairs(self.ids[:n], self.articles[:n], self.highlights[:n])


def _valid(row: Any) -> bool:
    return (isinstance(row, dict) and isinstance(row.get("article"), str) and isinstance(row.get("highlights"), str)
            and bool(row["article"].strip()) and bool(row["highlights"].strip()))


def read_jsonl(path: Path) -> Pairs:
    """Rows ``{id, article, highlights}`` of a ``.jsonl`` or ``.jsonl.gz`` file. Empty or malformed
    rows are skipped and counted in one warning: one bad line should not stop a run."""
    ids, articles, highlights, skipped = [], [], [], 0
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    row = None
                if not _valid(row):
                    skipped += 1
                    continue
                ids.append(str(row.get("id", f"{path.name}:{n}")))
                articles.append(row["article"].strip())
                highlights.append(row["highlights"].strip())
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"{path} could not be read ({describe(e)}); replace the file (JSON Lines with id, article, "
                        "highlights)") from e
    if skipped:
        log.warning(f"{path}: skipped {skipped} empty or malformed rows of {skipped + len(ids)}")
    if not ids:
        raise DataError(f"{path} holds no usable rows (each line: JSON with non-empty 'article' and 'highlights')")
    return Pairs(ids, articles, highlights)


def local_split_file(folder: Path, split: str) -> Path | None:
    for name in (f"{split}.jsonl", f"{split}.jsonl.gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def download_split(hf_dataset: str, hf_config: str | None, split: str) -> Pairs:
    """A split from the Hugging Face hub (online users); raises on any failure."""
    from datasets import load_dataset

    ds = load_dataset(hf_dataset, hf_config, split=split)
    rows = [r for r in ds if _valid(r)]
    if len(rows) < len(ds):
        log.warning(f"{hf_dataset}/{split}: skipped {len(ds) - len(rows)} empty or malformed rows of {len(ds)}")
    return Pairs([str(r.get("id", i)) for i, r in enumerate(rows)], [r["article"].strip() for r in rows],
                 [r["highlights"].strip() for r in rows])


def train_bpe(texts: Sequence[str], vocab_size: int, min_frequency: int) -> Any:
    """A byte-level BPE (GPT-2 style: no unknown bytes, newlines kept, so sentence breaks survive
    a round trip) trained with HF ``tokenizers``, wrapped as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return wrap_tokenizer(tok)


def wrap_tokenizer(tok: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    pad, bos, eos, unk = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, bos_token=bos, eos_token=eos, unk_token=unk)


class SummarizationDataset(Dataset):
    def __init__(self, pairs: Pairs) -> None:
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[str, str, str]:
        return self.pairs.ids[i], self.pairs.articles[i], self.pairs.highlights[i]


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

    def _pad(self, seqs: list[list[int]]) -> torch.Tensor:
        out = torch.full((len(seqs), max(map(len, seqs))), self.tokenizer.pad_token_id, dtype=torch.long)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        return out

    def __call__(self, items: list[tuple[str, str, str]]) -> dict[str, Any]:
        ids, articles, references = map(list, zip(*items))
        batch: dict[str, Any] = {"ids": ids, "articles": articles, "references": references}
        if self.tokenizer is None:
            return batch
        tok, cut = self.tokenizer, self.max_source_len * CHARS_PER_TOKEN
        source = tok([self.source_prefix + a[:cut] for a in articles], truncation=True, max_length=self.max_source_len)["input_ids"]
        target = tok(references, add_special_tokens=False, truncation=True, max_length=self.max_target_len - 1)["input_ids"]
        batch["source"] = self._pad(source)
        batch["target"] = self._pad([t + [tok.eos_token_id] for t in target])
        return batch


class LengthGroupedSampler(Sampler[int]):
    """Random order in which every run of ``batch_size`` indices has similar lengths, so dynamic
    padding wastes little: shuffle, cut into chunks of ``50 * batch_size``, sort each chunk by
    length, then shuffle the batches. Seeded by ``seed + epoch`` (Lightning calls ``set_epoch``),
    so a resumed run sees the same batches. (transformers has one too, but importing its trainer
    utilities costs ~5 s at start-up.)"""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, chunk_batches: int = 50) -> None:
        self.lengths, self.batch_size, self.seed, self.chunk_batches = torch.as_tensor(lengths), batch_size, seed, chunk_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g)
        chunk = self.batch_size * self.chunk_batches
        batches = []
        for start in range(0, len(order), chunk):
            part = order[start: start + chunk]
            part = part[self.lengths[part].argsort(descending=True, stable=True)]
            batches.extend(part.split(self.batch_size))
        for b in torch.randperm(len(batches), generator=g).tolist():
            yield from batches[b].tolist()


class SummarizationDataModule(LightningDataModule):
    """(article, highlights) pairs from ``{data_dir}/{split}.jsonl[.gz]`` when present, otherwise
    from the HF hub (``hf_dataset``, ``hf_config``) when one is named.

    ``splits`` maps each stage to the split it reads, so a split that is missing locally can be
    replaced (``data.splits.train=validation``). The tokenizer is built the first time it is asked
    for (a byte-level BPE trained on the training split, cached under ``tokenizer.cache_dir``, or
    ``tokenizer.name``, any HF tokenizer); a model that needs no tokens (Lead-3) never asks, so it
    runs without a training split. ``batch_size`` is global: divided across devices.
    """

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
        batch_size: int = 32,
        group_by_length: bool = True,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        self.provides = dict(provides)
        self.splits = {stage: (splits or {}).get(stage, stage) for stage in STAGES}
        self.max_examples = {stage: (max_examples or {}).get(stage) for stage in STAGES}
        self.batch_size_per_device = batch_size
        self.data: dict[str, Pairs] = {}
        self._tokenizer: Any | None = None

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
        # never suggest training on the test split when another one exists
        substitute = next((s for s in ("validation", "train", "test") if s in found), found[0] if found else "")
        fix = (f"name a split that exists in its place, e.g. data.splits.{stage}={substitute} (found in {folder}: "
               f"{', '.join(found)})" if found else f"put {split}.jsonl[.gz] in {folder} or set DATA_DIR")
        where = f"data={hp.name} has no '{split}' split: no {folder}/{split}.jsonl[.gz]"
        if not hp.hf_dataset:
            raise DataError(f"{where}; {fix}")
        try:
            return download_split(hp.hf_dataset, hp.hf_config, split)
        except Exception as e:  # datasets raises ConnectionError/FileNotFoundError/ValueError... offline
            raise DataError(f"{where}, and {hp.hf_dataset} could not be loaded from the HF hub ({describe(e, 120)}); "
                            f"{fix}") from e

    # ------------------------------------------------------------ tokenizer
    @property
    def tokenizer(self) -> Any:
        """The tokenizer, built on first use and checked against ``provides``."""
        if self._tokenizer is None:
            self._tokenizer = self._build_tokenizer()
            self._check_provides(self._tokenizer)
        return self._tokenizer

    def _build_tokenizer(self) -> Any:
        cfg = self.hparams.tokenizer
        if cfg.get("name"):
            from transformers import AutoTokenizer

            try:
                return AutoTokenizer.from_pretrained(cfg["name"])
            except Exception as e:  # OSError offline / unknown name, ValueError for a bad folder
                raise DataError(f"tokenizer '{cfg['name']}' could not be loaded ({describe(e, 160)}); give a local "
                                "folder saved with save_pretrained, or data.tokenizer.name=null to train a BPE here") from e
        return self._cached_bpe(cfg["vocab_size"], cfg.get("min_frequency", 2), cfg.get("cache_dir"))

    def _cached_bpe(self, vocab_size: int, min_frequency: int, cache_dir: str | None) -> Any:
        """Train the BPE on the training split, or load it from the cache file whose name hashes
        the training text and the settings (any change to either trains a new one)."""
        from tokenizers import Tokenizer

        train = self.load("train")
        cut = self.hparams.max_source_len * CHARS_PER_TOKEN
        texts = [a[:cut] for a in train.articles] + train.highlights
        digest = hashlib.sha1(json.dumps([vocab_size, min_frequency, CHARS_PER_TOKEN, SPECIAL_TOKENS]).encode())
        for t in texts:
            digest.update(t.encode())
            digest.update(b"\0")
        path = Path(cache_dir or ".") / f"{self.hparams.name}-bpe{vocab_size}-{digest.hexdigest()[:16]}.json"
        if cache_dir and path.is_file():
            log.info(f"Loading the cached tokenizer {path}")
            return wrap_tokenizer(Tokenizer.from_file(str(path)))
        log.info(f"Training a byte-level BPE (vocab {vocab_size}) on {len(train)} training pairs")
        tokenizer = train_bpe(texts, vocab_size, min_frequency)
        if cache_dir:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                # write then rename: a process reading the cache (another DDP rank) never sees half a file
                partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
                tokenizer.backend_tokenizer.save(str(partial))
                os.replace(partial, path)
                log.info(f"Tokenizer cached at {path}")
            except OSError as e:
                log.warning(f"tokenizer not cached ({describe(e)}); set data.tokenizer.cache_dir to a writable folder")
        return tokenizer

    def _check_provides(self, tok: Any) -> None:
        declared = {k: self.provides.get(k) for k in ("vocab_size", "pad_id", "bos_id", "eos_id")}
        actual = {"pad_id": tok.pad_token_id, "eos_id": tok.eos_token_id, "bos_id": tok.bos_token_id}
        wrong = {k: v for k, v in actual.items() if v is not None and declared[k] is not None and v != declared[k]}
        if len(tok) > declared["vocab_size"]:
            wrong["vocab_size"] = len(tok)
        if wrong:
            fix = " ".join(f"data.provides.{k}={v}" for k, v in wrong.items())
            raise DataError(f"data={self.hparams.name} declares {declared} but its tokenizer has "
                            f"{ {k: actual.get(k, len(tok)) for k in wrong} }; set {fix}")

    # ---------------------------------------------------------- lightning
    def setup(self, stage: str | None = None) -> None:
        self.batch_size_per_device = per_device_batch_size(self.hparams.batch_size, self.trainer)
        needed = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",), "predict": ("test",)}
        for split in needed.get(stage, STAGES) if stage else STAGES:
            self.load(split)

    def _loader(self, stage: str) -> DataLoader:
        if stage not in self.data:
            raise RuntimeError("call setup() before asking for a dataloader")
        pairs, hp = self.data[stage], self.hparams
        sampler = None
        if stage == "train":
            cut = hp.max_source_len * CHARS_PER_TOKEN
            sampler = (LengthGroupedSampler([min(len(a), cut) for a in pairs.articles], self.batch_size_per_device, hp.seed or 0)
                       if hp.group_by_length else torch.utils.data.RandomSampler(pairs.ids))
        return DataLoader(
            SummarizationDataset(pairs),
            batch_size=self.batch_size_per_device,
            sampler=sampler,
            collate_fn=Seq2SeqCollator(self._tokenizer, hp.max_source_len, hp.max_target_len, hp.source_prefix),
            num_workers=hp.num_workers,
            pin_memory=hp.pin_memory,
            persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
