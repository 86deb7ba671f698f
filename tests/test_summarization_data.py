"""Summarization data: JSONL reading, split substitution, BPE training and its cache, batches."""

import gzip
import json
import logging
import random
from pathlib import Path

import pytest
import torch

from src.data.summarization import LengthGroupedSampler, SummarizationDataModule, read_jsonl
from src.utils.errors import DataError
from src.utils.instantiate import instantiate_component
from tests.conftest import compose_cfg

WORDS = ("the cat dog bird sat ran flew over under near big small red blue green house tree river hill "
         "city road car boat train plane old new quick slow happy sad king queen man woman child").split()


def synthetic_pairs(n: int, seed: int = 0, sentences: int = 4) -> list[dict[str, str]]:
    """Articles of a few capitalised sentences; the highlights are two of them, one per line."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        sents = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 7))).capitalize() + "." for _ in range(sentences)]
        rows.append({"id": f"ex{i}", "article": " ".join(sents), "highlights": f"{sents[0]}\n{sents[2]}"})
    return rows


def write_jsonl(path: Path, rows: list, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def synthetic_data_dir(root: Path, n_train: int = 24, n_eval: int = 8, same: bool = False) -> Path:
    """``root/{train,validation,test}.jsonl``; ``same``: every split holds the training pairs."""
    train = synthetic_pairs(n_train)
    write_jsonl(root / "train.jsonl", train)
    write_jsonl(root / "validation.jsonl", train if same else synthetic_pairs(n_eval, seed=1))
    write_jsonl(root / "test.jsonl", train if same else synthetic_pairs(n_eval, seed=2))
    return root


def data_overrides(root: Path, cache: Path, vocab_size: int = 400) -> list[str]:
    return ["data=cnn_dailymail_pg", f"data.data_dir={root}", f"data.tokenizer.cache_dir={cache}",
            f"data.tokenizer.vocab_size={vocab_size}", "data.max_source_len=64", "data.max_target_len=24",
            "data.batch_size=4"]


def make_datamodule(tmp_path: Path, *overrides: str, root: Path | None = None) -> SummarizationDataModule:
    root = root or synthetic_data_dir(tmp_path / "data")
    cfg = compose_cfg("train", [*data_overrides(root, tmp_path / "cache"), *overrides], tmp_path)
    return instantiate_component(cfg.data)


def test_malformed_rows_are_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = synthetic_pairs(3)
    rows = [good[0], "{not json", {"article": "", "highlights": "x"}, {"article": "a"}, good[1], "", good[2]]
    path = write_jsonl(tmp_path / "train.jsonl", rows, gz=True)
    with caplog.at_level(logging.WARNING):
        pairs = read_jsonl(path)
    assert pairs.ids == ["ex0", "ex1", "ex2"] and pairs.highlights[1] == good[1]["highlights"]
    assert "skipped 3 empty or malformed rows of 6" in caplog.text


def test_missing_split_names_the_substitute(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_jsonl(root / "validation.jsonl", synthetic_pairs(6))
    write_jsonl(root / "test.jsonl", synthetic_pairs(6, seed=1))
    dm = make_datamodule(tmp_path, root=root)
    with pytest.raises(DataError, match=r"no 'train' split.*data\.splits\.train=validation \(found in .*: test, validation\)"):
        dm.setup("fit")
    # the substitute named in the message works
    dm = make_datamodule(tmp_path, "data.splits.train=validation", root=root)
    dm.setup("fit")
    assert dm.data["train"].ids == dm.data["validation"].ids


def test_hub_failure_offline_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """data=cnn_dailymail downloads missing splits; when that fails, the error says what to do."""
    from src.data import summarization

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setattr(summarization, "download_split", offline)
    root = tmp_path / "data"
    write_jsonl(root / "validation.jsonl", synthetic_pairs(6))
    cfg = compose_cfg("train", ["data=cnn_dailymail", f"data.data_dir={root}"], tmp_path)
    with pytest.raises(DataError, match=r"abisee/cnn_dailymail could not be loaded.*ConnectionError.*data\.splits\.train=validation"):
        instantiate_component(cfg.data).setup("fit")


def test_bpe_is_trained_once_then_cached(tmp_path: Path) -> None:
    dm = make_datamodule(tmp_path)
    dm.setup("fit")
    tok = dm.tokenizer
    (cached,) = (tmp_path / "cache").glob("cnn_dailymail_pg-bpe400-*.json")
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id] == [0, 1, 2]
    text = "The big cat sat near the river.\nA new boat."
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level: exact round trip, newline kept
    # a second datamodule loads the cache (same file, same vocabulary) instead of training
    mtime = cached.stat().st_mtime_ns
    again = make_datamodule(tmp_path, root=tmp_path / "data")
    again.setup("fit")
    assert again.tokenizer.get_vocab() == tok.get_vocab() and cached.stat().st_mtime_ns == mtime
    # other settings or other training text: another cache entry
    make_datamodule(tmp_path, "data.tokenizer.vocab_size=350", root=tmp_path / "data").tokenizer
    make_datamodule(tmp_path, "data.max_examples.train=10", root=tmp_path / "data").tokenizer
    assert len(list((tmp_path / "cache").glob("*.json"))) == 3


def test_declared_vocab_is_checked(tmp_path: Path) -> None:
    dm = make_datamodule(tmp_path, "data.provides.vocab_size=100")
    with pytest.raises(DataError, match="data.provides.vocab_size="):
        dm.tokenizer


def test_batches_are_dynamically_padded(tmp_path: Path) -> None:
    dm = make_datamodule(tmp_path, "data.max_source_len=16", "data.max_target_len=6")
    dm.setup("fit")
    tok = dm.tokenizer
    batches = list(dm.train_dataloader())
    assert sum(len(b["ids"]) for b in batches) == 24
    for b in batches:
        source, target = b["source"], b["target"]
        assert source.shape[1] <= 16 and target.shape[1] <= 6
        # padded to the batch's own longest sequence: some row has no padding
        assert (source != tok.pad_token_id).all(1).any() and (target != tok.pad_token_id).all(1).any()
        lengths = (target != tok.pad_token_id).sum(1)
        assert (target[torch.arange(len(target)), lengths - 1] == tok.eos_token_id).all()
    # texts travel with the tokens, references unchanged
    val = next(iter(dm.val_dataloader()))
    assert val["references"][0] == dm.data["validation"].highlights[0]


def test_length_grouped_sampler() -> None:
    lengths = torch.randint(1, 1000, (400,)).tolist()
    sampler = LengthGroupedSampler(lengths, batch_size=8, seed=0, chunk_batches=10)
    order = list(sampler)
    assert sorted(order) == list(range(400))
    batches = [order[i: i + 8] for i in range(0, 400, 8)]
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 100  # random batches of 8 spread over ~780
    assert list(sampler) == order  # same epoch, same order (resume)
    sampler.set_epoch(1)
    assert list(sampler) != order
