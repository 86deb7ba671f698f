"""Tokenizers, all built with Hugging Face ``tokenizers``/``transformers``: a word-level vocabulary
(easy-VQA questions), a byte-level BPE trained on a training split and cached on disk
(summarization, denoising pre-training), any pretrained tokenizer by name or folder, a vocabulary
fingerprint, and the plain dict a tokenizer travels as inside checkpoints."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from src.core.errors import DataError, describe
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0..3 of every BPE trained here
WORD_PAD, WORD_UNK = "[PAD]", "[UNK]"
CHECKPOINT_KEY = "tokenizer"  # checkpoint[CHECKPOINT_KEY]: tokenizer_to_dict() of the tokenizer the weights go with


def word_level_tokenizer(texts: Sequence[str]) -> Any:
    """Word-level tokenizer over lowercased words and punctuation, its vocabulary built from
    ``texts``; id 0 is padding, unseen words map to ``[UNK]``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token=WORD_UNK))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=[WORD_PAD, WORD_UNK]))
    return tokenizer


def pretrained_tokenizer(name: str, option: str, fallback: str) -> Any:
    """``AutoTokenizer.from_pretrained(name)``; a failure (offline hub, unknown name, bad folder)
    is one line naming the ``option`` to change and the ``fallback`` that needs no download."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except Exception as e:  # OSError offline / unknown name, ValueError for a bad folder
        raise DataError(f"tokenizer {name!r} ({option}) could not be loaded ({describe(e, 160)}); give a local folder "
                        f"saved with save_pretrained, go online, or use {fallback}") from e


def sentinel_tokens(n: int) -> list[str]:
    """T5's names for the ``n`` sentinels of span corruption, so a T5 tokenizer's own are found too."""
    return [f"<extra_id_{i}>" for i in range(n)]


def train_bpe(texts: Sequence[str], vocab_size: int, min_frequency: int, extra_special: Sequence[str] = ()) -> Any:
    """A byte-level BPE (GPT-2 style: no unknown bytes, newlines kept, so sentence breaks survive
    a round trip), wrapped as a ``PreTrainedTokenizerFast``. ``extra_special`` (sentinels) get the
    ids after :data:`SPECIAL_TOKENS` and are never merged into other tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=[*SPECIAL_TOKENS, *extra_special],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return wrap_bpe(tok)


def wrap_bpe(tok: Any) -> Any:
    """A BPE trained here as a ``PreTrainedTokenizerFast``; its special tokens beyond
    :data:`SPECIAL_TOKENS` (sentinels) are declared too, so decoding can skip them."""
    from transformers import PreTrainedTokenizerFast

    pad, bos, eos, unk = SPECIAL_TOKENS
    added = [t for _, t in sorted(tok.get_added_tokens_decoder().items())]
    extra = [t.content for t in added if t.special and t.content not in SPECIAL_TOKENS]
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, bos_token=bos, eos_token=eos, unk_token=unk,
                                   extra_special_tokens=extra)


def cached_bpe(texts: Sequence[str], vocab_size: int, min_frequency: int, cache_dir: str | None, name: str,
               text_settings: Sequence[int] = (), extra_special: Sequence[str] = ()) -> Any:
    """:func:`train_bpe` on ``texts``, or the cached file whose name hashes the texts and the
    settings, ``text_settings`` (what shaped the texts) included: any change trains a new one. Writes are atomic (write, then rename), so
    a process reading the cache (another DDP rank) never sees half a file."""
    from tokenizers import Tokenizer

    digest = hashlib.sha1(json.dumps([vocab_size, min_frequency, *text_settings, SPECIAL_TOKENS, *extra_special]).encode())
    for t in texts:
        digest.update(t.encode())
        digest.update(b"\0")
    path = Path(cache_dir or ".") / f"{name}-bpe{vocab_size}-{digest.hexdigest()[:16]}.json"
    if cache_dir and path.is_file():
        log.info(f"Loading the cached tokenizer {path}")
        return wrap_bpe(Tokenizer.from_file(str(path)))
    log.info(f"Training a byte-level BPE (vocab {vocab_size}) on {len(texts)} texts")
    tokenizer = train_bpe(texts, vocab_size, min_frequency, extra_special)
    if cache_dir:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
            tokenizer.backend_tokenizer.save(str(partial))
            os.replace(partial, path)
            log.info(f"Tokenizer cached at {path}")
        except OSError as e:
            log.warning(f"tokenizer not cached ({describe(e)}); set data.tokenizer.cache_dir to a writable folder")
    return tokenizer


def fingerprint(tokenizer: Any) -> str:
    """A hash of the vocabulary (token -> id): weights are meaningless under another vocabulary of
    the same size (say, a BPE trained on other pairs), so checkpoints carry this to be checked."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return hashlib.sha1(json.dumps(vocab).encode()).hexdigest()[:16]


def tokenizer_to_dict(tokenizer: Any) -> dict[str, Any] | None:
    """A fast tokenizer as plain values (``weights_only=True`` loads them): the backend's JSON
    (without the truncation and padding of its last call), the special tokens and the name or
    folder it was loaded from (``""`` for a BPE trained here).
    None for a tokenizer without a Rust backend (a slow-only HF tokenizer), which cannot travel."""
    from tokenizers import Tokenizer

    if getattr(tokenizer, "backend_tokenizer", None) is None:
        return None
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()  # the settings of the last call, not the tokenizer's
    backend.no_padding()
    special = {key: str(value) for key, value in tokenizer.special_tokens_map.items()}
    return {"json": backend.to_str(), "special_tokens": special,
            "extra_special_tokens": [str(t) for t in getattr(tokenizer, "extra_special_tokens", [])],
            "name_or_path": tokenizer.name_or_path or ""}


def tokenizer_from_dict(state: dict[str, Any]) -> Any:
    """The ``PreTrainedTokenizerFast`` that :func:`tokenizer_to_dict` stored: the same ids for the same
    text, the same special tokens."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(state["json"]), name_or_path=state["name_or_path"],
                                   extra_special_tokens=state["extra_special_tokens"], **state["special_tokens"])
