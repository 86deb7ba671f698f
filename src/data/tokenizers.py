"""Tokenizers, all built with Hugging Face ``tokenizers``/``transformers``: a word-level vocabulary
(easy-VQA questions), a byte-level BPE trained on a training split and cached on disk
(summarization), any pretrained tokenizer by name or folder, and a vocabulary fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from src.utils.errors import DataError, describe
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")  # ids 0..3 of every BPE trained here
WORD_PAD, WORD_UNK = "[PAD]", "[UNK]"


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


def train_bpe(texts: Sequence[str], vocab_size: int, min_frequency: int) -> Any:
    """A byte-level BPE (GPT-2 style: no unknown bytes, newlines kept, so sentence breaks survive
    a round trip), wrapped as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return wrap_bpe(tok)


def wrap_bpe(tok: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    pad, bos, eos, unk = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=pad, bos_token=bos, eos_token=eos, unk_token=unk)


def cached_bpe(texts: Sequence[str], vocab_size: int, min_frequency: int, cache_dir: str | None, name: str,
               text_settings: Sequence[int] = ()) -> Any:
    """:func:`train_bpe` on ``texts``, or the cached file whose name hashes the texts and the
    settings, ``text_settings`` (what shaped the texts) included: any change trains a new one. Writes are atomic (write, then rename), so
    a process reading the cache (another DDP rank) never sees half a file."""
    from tokenizers import Tokenizer

    digest = hashlib.sha1(json.dumps([vocab_size, min_frequency, *text_settings, SPECIAL_TOKENS]).encode())
    for t in texts:
        digest.update(t.encode())
        digest.update(b"\0")
    path = Path(cache_dir or ".") / f"{name}-bpe{vocab_size}-{digest.hexdigest()[:16]}.json"
    if cache_dir and path.is_file():
        log.info(f"Loading the cached tokenizer {path}")
        return wrap_bpe(Tokenizer.from_file(str(path)))
    log.info(f"Training a byte-level BPE (vocab {vocab_size}) on {len(texts)} texts")
    tokenizer = train_bpe(texts, vocab_size, min_frequency)
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
