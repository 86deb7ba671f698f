"""Denoising pre-training data for the seq2seq nets: unlabeled text corrupted on the fly by T5's
span corruption (Raffel et al. 2020, sec. 3.1.4): about ``noise_density`` of each text's tokens, in
spans of mean length ``mean_span``, are cut out; the source keeps the rest with one sentinel token
in place of each span, and the target lists the spans, each after its sentinel
(``objective=span_corruption``) or is the whole text (``objective=text_infilling``, BART's
objective, Lewis et al. 2020, with a sentinel per span as its mask): longer targets, but the
decoder learns to copy its source, which summarization of news leans on.

The data declares ``provides.task: summarization``: the pairs are text to text like
(article, summary), so ``model=transformer`` (or ``lstm``) and the SummarizationModule train on
them unchanged (teacher-forced NLL; ROUGE of the generated spans against the cut-out text), and a
pre-trained run is an ordinary train.py run with its logging, checkpoints and DDP. Its checkpoint
carries the BPE trained here, sentinels included, which fine-tuning on CNN/DailyMail then adopts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from src.core.errors import ConfigError, DataError
from src.data.sources.text_pairs import Pairs, local_split_file, read_jsonl
from src.data.summarization import CHARS_PER_TOKEN, STAGES, Seq2SeqDataModule, pad
from src.data.tokenizers import cached_bpe, pretrained_tokenizer, sentinel_tokens
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


def noise_counts(length: int, noise_density: float, mean_span: float, max_spans: int) -> tuple[int, int]:
    """(noised tokens, spans) for a text of ``length`` >= 2 tokens, as T5 counts them: at least one
    token noised and one kept, at most ``max_spans`` spans, each span and each gap non-empty."""
    noised = min(max(round(length * noise_density), 1), length - 1)
    spans = min(max(round(noised / mean_span), 1), max_spans, noised, length - noised)
    return noised, spans


def _parts(total: int, k: int, rng: random.Random) -> list[int]:
    """``total`` cut into ``k`` non-empty parts, uniformly over all such cuts."""
    cuts = sorted(rng.sample(range(1, total), k - 1))
    return [b - a for a, b in zip([0, *cuts], [*cuts, total])]


def span_corruption(tokens: Sequence[int], sentinels: Sequence[int], noise_density: float, mean_span: float,
                    rng: random.Random) -> tuple[list[int], list[int]]:
    """T5's span corruption of ``tokens`` (at least 2): (source, target). The i-th noised span
    becomes ``sentinels[i]`` in the source and ``sentinels[i]`` + the span in the target, so the
    target rebuilds the text with the source. Span lengths are drawn as T5 draws them; unlike T5,
    whose last span always ends the text (a short text's one span would always be its end), the
    kept text before the first span and after the last may be empty, so spans fall anywhere."""
    noised, spans = noise_counts(len(tokens), noise_density, mean_span, len(sentinels))
    cut = _parts(noised, spans, rng)
    kept = _parts(len(tokens) - noised + 2, spans + 1, rng)
    kept[0], kept[-1] = kept[0] - 1, kept[-1] - 1  # the two ends may be empty, the gaps between spans not
    source: list[int] = []
    target: list[int] = []
    start = 0
    for sentinel, before, span in zip(sentinels, kept, cut):
        source += [*tokens[start: start + before], sentinel]
        target += [sentinel, *tokens[start + before: start + before + span]]
        start += before + span
    return source + list(tokens[start:]), target


OBJECTIVES = ("span_corruption", "text_infilling")


class DenoisingCollator:
    """Tokenizes a batch of texts, corrupts each (:func:`span_corruption`) and pads it: ``source``,
    ``target`` (the spans, or the whole text for ``text_infilling``; ending with eos), ``ids``,
    ``articles`` (the clean texts) and ``references`` (the target's text, sentinels dropped: what
    generated text is scored against). Without a tokenizer (a model without tokens) the texts are
    served and the reference is the whole text.

    Training noise is new at every batch: a seed drawn from the global torch RNG (set by
    ``seed_everything``, saved in checkpoints by the RNG-state callback, seeded per loader worker by
    Lightning), combined with the process's ``rank`` so DDP processes draw different noise.
    Evaluation noise (``fixed=True``) depends only on ``seed`` and each example's id: every
    validation scores the same corrupted texts, under any number of processes.
    """

    def __init__(self, tokenizer: Any | None, sentinels: Sequence[int], noise_density: float, mean_span: float,
                 max_source_len: int, fixed: bool, seed: int, rank: int, objective: str = "span_corruption") -> None:
        self.tokenizer, self.sentinels, self.noise_density, self.mean_span = tokenizer, sentinels, noise_density, mean_span
        self.max_source_len, self.fixed, self.seed, self.rank = max_source_len, fixed, seed, rank
        self.whole_text = objective == "text_infilling"

    def __call__(self, items: list[tuple[str, str, str]]) -> dict[str, Any]:
        ids, texts, _ = map(list, zip(*items))
        batch: dict[str, Any] = {"ids": ids, "articles": texts, "references": texts}
        if self.tokenizer is None:
            return batch
        tok, cut = self.tokenizer, self.max_source_len * CHARS_PER_TOKEN
        tokens = tok([t[:cut] for t in texts], add_special_tokens=False, truncation=True,
                     max_length=self.max_source_len)["input_ids"]
        batch_rng = None if self.fixed else random.Random(f"{int(torch.randint(2**62, ()))}:{self.rank}")
        pairs = [span_corruption(t, self.sentinels, self.noise_density, self.mean_span,
                                 batch_rng or random.Random(f"{self.seed}:{i}")) for i, t in zip(ids, tokens)]
        targets = tokens if self.whole_text else [t for _, t in pairs]
        batch["source"] = pad([s for s, _ in pairs], tok.pad_token_id)
        batch["target"] = pad([t + [tok.eos_token_id] for t in targets], tok.pad_token_id)
        batch["references"] = tok.batch_decode(targets, skip_special_tokens=True)
        return batch


def _articles(folder: Path, name: str) -> tuple[list[str], list[str]]:
    """(ids, articles) of the training pairs in ``folder`` (``train.jsonl[.gz]``): their summaries
    and the validation and test pairs are never read."""
    path = local_split_file(folder, "train")
    if path is None:
        raise DataError(f"corpus '{name}': no {folder}/train.jsonl[.gz]; put the training pairs there, set DATA_DIR to a "
                        f"folder that has them, or drop the corpus (~data.corpora.{name})")
    pairs = read_jsonl(path)
    return pairs.ids, pairs.articles


_WIKITEXT_MARKS = {" @-@ ": "-", " @,@ ": ",", " @.@ ": "."}  # WikiText splits "1,000" and "well-known" this way


def _wikitext(folder: Path, name: str) -> tuple[list[str], list[str]]:
    """(ids, paragraphs) of raw WikiText's training file ``folder/train.txt``: one text per
    paragraph line, headings (`` = Title = ``) and empty lines dropped, number and hyphen marks
    undone."""
    path = folder / "train.txt"
    if not path.is_file():
        raise DataError(f"corpus '{name}': no {path}; copy wikitext-2-raw into DATA_DIR (see ../shared/data/README.md), "
                        f"or drop the corpus (~data.corpora.{name})")
    ids, texts = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        line = line.strip()
        if line and not line.startswith("="):
            for mark, char in _WIKITEXT_MARKS.items():
                line = line.replace(mark, char)
            ids.append(f"{path.parent.name}:{n}")
            texts.append(line)
    return ids, texts


READERS = {"articles": _articles, "wikitext": _wikitext}


class DenoisingDataModule(Seq2SeqDataModule):
    """Span-corrupted text from ``corpora`` (name -> ``{format, path}``; formats: ``articles``, the
    articles of the training pairs in a folder of ``train.jsonl[.gz]``; ``wikitext``, the paragraphs
    of a raw WikiText folder's ``train.txt``). Only training files are read, so text of a fine-tuning
    task's validation and test sets is never seen. Validation and test are held out from each
    corpus: its last ``heldout`` fraction for test, the same before it for validation (at least
    one text each). Texts are cut to ``max_source_len`` tokens; ``lowercase`` matches pre-training
    text to lowercased fine-tuning data (pg_tokenized CNN/DailyMail).

    ``objective``: ``span_corruption`` (T5) or ``text_infilling`` (BART), see the module's docstring.
    The tokenizer is a byte-level BPE trained on the training texts with ``tokenizer.sentinels``
    sentinel tokens (T5's ``<extra_id_N>``) as special tokens, or a named HF tokenizer that has them
    (T5's), or the one a checkpoint carries. ``max_target_len`` must hold the longest target the
    noise settings give (checked).
    """

    def __init__(
        self,
        name: str,
        corpora: Mapping[str, Mapping[str, str] | None],
        provides: Mapping[str, Any],
        tokenizer: Mapping[str, Any],
        objective: str = "span_corruption",
        noise_density: float = 0.15,
        mean_span: float = 3.0,
        heldout: float = 0.01,
        lowercase: bool = True,
        max_examples: Mapping[str, int | None] | None = None,
        max_source_len: int = 400,
        max_target_len: int = 100,
        batch_size: int = 32,
        group_by_length: bool = True,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int | None = 0,
    ) -> None:
        super().__init__(name, provides, tokenizer, max_source_len, batch_size, group_by_length, num_workers, pin_memory,
                         seed)
        self.save_hyperparameters(logger=False)
        self.corpora = {k: dict(v) for k, v in corpora.items() if v}
        unknown = {k: v.get("format") for k, v in self.corpora.items() if v.get("format") not in READERS}
        if not self.corpora or unknown:
            raise ConfigError(f"data.corpora {unknown or 'is empty'}: each corpus needs a format among "
                              f"{', '.join(READERS)} and a path")
        if objective not in OBJECTIVES:
            raise ConfigError(f"data.objective={objective!r} is not one of {', '.join(OBJECTIVES)}")
        if not 0 < noise_density < 1 or mean_span < 1 or not 0 < heldout < 0.5 or max_source_len < 2:
            raise ConfigError(f"data.noise_density={noise_density} must be in (0, 1), data.mean_span={mean_span} >= 1, "
                              f"data.heldout={heldout} in (0, 0.5), data.max_source_len={max_source_len} >= 2")
        noised, spans = noise_counts(max_source_len, noise_density, mean_span, tokenizer["sentinels"])
        longest = max_source_len + 1 if objective == "text_infilling" else noised + spans + 1
        if longest > max_target_len:
            raise ConfigError(f"data.max_target_len={max_target_len} cannot hold the {objective} targets of "
                              f"{max_source_len}-token texts (and eos); set data.max_target_len={longest}")
        self.max_examples = {stage: (max_examples or {}).get(stage) for stage in STAGES}

    # ---------------------------------------------------------------- files
    def _read(self) -> dict[str, Pairs]:
        """Every corpus read and split into stages, the texts cut to what is ever tokenized."""
        hp, cut = self.hparams, self.hparams.max_source_len * CHARS_PER_TOKEN
        stages: dict[str, Pairs] = {stage: Pairs([], [], []) for stage in STAGES}
        for name, corpus in self.corpora.items():
            ids, texts = READERS[corpus["format"]](Path(corpus["path"]), name)
            keep = [i for i, t in enumerate(texts) if len(t.split()) >= 2]  # a kept and a noised token at least
            ids, texts = [ids[i] for i in keep], [texts[i].lower() if hp.lowercase else texts[i] for i in keep]
            texts = [t[:cut] for t in texts]
            held = max(1, math.ceil(hp.heldout * len(texts)))
            if len(texts) <= 2 * held:
                raise DataError(f"corpus '{name}' ({corpus['path']}) has {len(texts)} texts: too few to hold out "
                                f"{held} for validation and {held} for test (data.heldout={hp.heldout})")
            bounds = {"train": (0, len(texts) - 2 * held), "validation": (len(texts) - 2 * held, len(texts) - held),
                      "test": (len(texts) - held, len(texts))}
            for stage, (a, b) in bounds.items():
                part = stages[stage]
                stages[stage] = Pairs(part.ids + ids[a:b], part.articles + texts[a:b], part.highlights + texts[a:b])
            log.info(f"{hp.name}: corpus '{name}', {len(texts)} texts ({held} held out for validation and for test)")
        return stages

    def load(self, stage: str) -> Pairs:
        """The texts of a stage as :class:`Pairs` whose articles and highlights are both the text."""
        if stage not in self.data:
            self.data.update({s: pairs.head(self.max_examples[s]) for s, pairs in self._read().items() if s not in self.data})
        return self.data[stage]

    # ------------------------------------------------------------ tokenizer
    def _build_tokenizer(self) -> Any:
        cfg = self.hparams.tokenizer
        if cfg.get("name"):
            return pretrained_tokenizer(cfg["name"], "data.tokenizer.name", "data.tokenizer.name=null to train a BPE here")
        return cached_bpe(self.load("train").articles, cfg["vocab_size"], cfg.get("min_frequency", 2), cfg.get("cache_dir"),
                          self.hparams.name, text_settings=(CHARS_PER_TOKEN,), extra_special=sentinel_tokens(cfg["sentinels"]))

    def sentinel_ids(self, tokenizer: Any) -> list[int]:
        """The ids of the ``tokenizer.sentinels`` sentinel tokens, which ``tokenizer`` must have."""
        names = sentinel_tokens(self.hparams.tokenizer["sentinels"])
        ids = tokenizer.convert_tokens_to_ids(names)
        if any(i is None or i == tokenizer.unk_token_id for i in ids):
            raise DataError(f"the tokenizer has no sentinel tokens {names[0]}..{names[-1]} for span corruption; use "
                            "data.tokenizer.name=null (a BPE trained with them) or a T5 tokenizer")
        return ids

    def _collator(self, stage: str) -> DenoisingCollator:
        hp, tok = self.hparams, self._tokenizer
        rank = self.trainer.global_rank if self.trainer is not None else 0
        return DenoisingCollator(tok, self.sentinel_ids(tok) if tok is not None else [], hp.noise_density, hp.mean_span,
                                 hp.max_source_len, fixed=stage != "train", seed=hp.seed or 0, rank=rank,
                                 objective=hp.objective)
