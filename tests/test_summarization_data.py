"""Summarization data: JSONL reading, split substitution, BPE training and its cache, batches."""

import logging
from pathlib import Path

import pytest
import torch

from src.core.errors import ConfigError, DataError
from src.data.samplers import LengthGroupedSampler
from src.data.sources import text_pairs
from src.data.sources.text_pairs import read_jsonl
from src.data.summarization import SummarizationDataModule
from src.utils.config import compose
from src.utils.instantiate import instantiate_component
from tests.conftest import (
    pairs_overrides,
    synthetic_pairs,
    synthetic_pairs_dir,
    write_jsonl,
)


def make_datamodule(tmp_path: Path, *overrides: str, root: Path | None = None) -> SummarizationDataModule:
    root = root or synthetic_pairs_dir(tmp_path / "data")
    cfg = compose("train", [*pairs_overrides(root, tmp_path / "cache"), *overrides], tmp_path)
    return instantiate_component(cfg.data)


def test_malformed_rows_are_skipped_and_counted(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = synthetic_pairs(3)
    rows = [good[0], "{not json", {"article": "", "highlights": "x"}, {"article": "a"}, good[1], "", good[2]]
    path = write_jsonl(tmp_path / "train.jsonl", rows, gz=True)
    with caplog.at_level(logging.WARNING):
        pairs = read_jsonl(path)
    assert pairs.ids == ["ex0", "ex1", "ex2"] and pairs.highlights[1] == good[1]["highlights"]
    assert "skipped 3 empty or malformed rows of 6" in caplog.text


def test_missing_split_says_where_it_goes_and_never_suggests_another_stages_split(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_jsonl(root / "validation.jsonl", synthetic_pairs(6))
    write_jsonl(root / "dev.jsonl", synthetic_pairs(6, seed=1))
    dm = make_datamodule(tmp_path, root=root)
    with pytest.raises(DataError, match=r"no 'train' split.*put train\.jsonl\[\.gz\] there .*\(found: dev, validation; "
                                        r"a split named otherwise: data\.splits\.train=<name>\)") as e:
        dm.setup("fit")
    assert "splits.train=validation" not in str(e.value)
    # a split under another name is read for its stage
    dm = make_datamodule(tmp_path, "data.splits.test=dev", root=root)
    dm.setup("test")
    assert dm.data["test"].articles == [r["article"] for r in synthetic_pairs(6, seed=1)]


def test_one_split_for_two_stages_is_refused(tmp_path: Path) -> None:
    """Training on the validation split (the old offline hint) selects checkpoints on training pairs."""
    with pytest.raises(ConfigError, match="reads split 'validation' for train and validation"):
        make_datamodule(tmp_path, "data.splits.train=validation")


def test_hub_failure_offline_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """data=cnn_dailymail downloads missing splits; when that fails, the error says what to do."""
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setattr(text_pairs, "download_split", offline)
    root = tmp_path / "data"
    write_jsonl(root / "validation.jsonl", synthetic_pairs(6))
    cfg = compose("train", ["data=cnn_dailymail", f"data.data_dir={root}"], tmp_path)
    with pytest.raises(DataError, match=r"abisee/cnn_dailymail could not be loaded.*ConnectionError.*or train offline on "
                                        r"data=cnn_dailymail_pg"):
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


def test_length_grouped_sampler_shards_global_batches_over_processes() -> None:
    """Two processes: each takes half of every global batch of 16 (rank 0 the longer half),
    together every example of the epoch (the last global batch completed from the start), in as
    many steps each."""
    lengths = torch.randint(1, 1000, (100,)).tolist()
    ranks = [LengthGroupedSampler(lengths, batch_size=8, seed=3, chunk_batches=4, num_replicas=2, rank=r) for r in (0, 1)]
    orders = [list(s) for s in ranks]
    assert len(orders[0]) == len(orders[1]) == len(ranks[0]) == 56  # 7 global batches of 16 (100 -> 112)
    assert set(orders[0]) | set(orders[1]) == set(range(100))
    # fewer examples than one global batch: both processes still take a full batch
    assert [len(list(LengthGroupedSampler([5], batch_size=4, num_replicas=2, rank=r))) for r in (0, 1)] == [4, 4]
    # one step's two batches are one global batch: neighbours in a length-sorted chunk
    for a, b in zip(zip(*[iter(orders[0])] * 8), zip(*[iter(orders[1])] * 8)):
        assert min(lengths[i] for i in a) >= max(lengths[i] for i in b)


def test_a_failed_tokenizer_on_the_first_process_stops_every_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DDP: the first process builds the BPE while the others wait at a barrier; if it fails, the
    barrier is still reached and every process raises (none is left waiting)."""
    from types import SimpleNamespace

    calls = []
    strategy = SimpleNamespace(barrier=lambda name: calls.append(name), reduce_boolean_decision=lambda d, all: d)
    dm = make_datamodule(tmp_path)
    dm.trainer = SimpleNamespace(world_size=2, local_rank=0, strategy=strategy)
    monkeypatch.setattr(dm, "_build_tokenizer", lambda: (_ for _ in ()).throw(DataError("no training split")))
    with pytest.raises(DataError, match="no training split"):
        dm.tokenizer
    assert calls == ["archlab_tokenizer"]
