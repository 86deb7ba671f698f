"""Text pre-training: T5 span corruption, the denoising DataModule, the tokenizer travelling in
summarization checkpoints (eval.py without the training split), and pre-train -> fine-tune through
``init=checkpoint``, in one process and under DDP."""

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from eval import evaluate
from src.core.errors import ConfigError, DataError
from src.data.denoising import (
    DenoisingCollator,
    DenoisingDataModule,
    noise_counts,
    span_corruption,
)
from src.data.tokenizers import (
    CHECKPOINT_KEY,
    fingerprint,
    tokenizer_from_dict,
    tokenizer_to_dict,
    train_bpe,
)
from src.utils.config import compose
from src.utils.instantiate import instantiate_component
from tests.conftest import (
    FAST,
    metrics_csv,
    pairs_overrides,
    run_ok,
    synthetic_pairs,
    synthetic_pairs_dir,
    write_jsonl,
)
from train import train

SENTINELS = list(range(100, 120))
TINY = ["model=transformer", "model.net.dim=32", "model.net.num_heads=2", "model.net.encoder_layers=1",
        "model.net.decoder_layers=1", "model.net.ff_hidden=64", "model.net.dropout=0.0", "model.generation.max_len=8",
        "model.generation.min_len=0", "model.generation.beam_size=2", "model.val_generation.max_len=8"]


def spans(target: list[int], sentinels: list[int]) -> dict[int, list[int]]:
    """sentinel -> the tokens after it in a span-corruption target."""
    out: dict[int, list[int]] = {}
    for token in target:
        if token in sentinels:
            current = out.setdefault(token, [])
        else:
            current.append(token)
    return out


def rebuild(source: list[int], target: list[int], sentinels: list[int] = SENTINELS) -> list[int]:
    """The text that a (source, target) pair of span corruption stands for."""
    cut = spans(target, sentinels)
    return [t for s in source for t in (cut[s] if s in sentinels else [s])]


@pytest.mark.parametrize("length", [2, 3, 10, 57, 400])
def test_span_corruption_rebuilds_the_text_with_t5s_counts(length: int) -> None:
    tokens, starts, ends = list(range(1000, 1000 + length)), set(), set()
    for seed in range(40):
        source, target = span_corruption(tokens, SENTINELS, 0.15, 3.0, random.Random(seed))
        noised, spans = noise_counts(length, 0.15, 3.0, len(SENTINELS))
        assert rebuild(source, target) == tokens
        used = [t for t in source if t in SENTINELS]
        assert used == SENTINELS[:spans] and [t for t in target if t in SENTINELS] == used  # in order, once each
        assert target[0] == SENTINELS[0]
        starts.add(source[0] in SENTINELS)
        ends.add(source[-1] in SENTINELS)
        assert len(target) - spans == noised == min(max(round(0.15 * length), 1), length - 1)
        assert all(a not in SENTINELS for a, b in zip(target, target[1:]) if b in SENTINELS)  # no empty span
        assert all(a not in SENTINELS for a, b in zip(source, source[1:]) if b in SENTINELS)  # nor an empty gap
    assert starts == ends == {True, False}  # a span may start or end the text, or not
    assert noise_counts(400, 0.15, 3.0, 100) == (60, 20) and noise_counts(400, 0.15, 3.0, 8) == (60, 8)


def test_span_lengths_average_mean_span() -> None:
    tokens, lengths = list(range(1000, 1400)), []
    for seed in range(200):
        _, target = span_corruption(tokens, SENTINELS, 0.15, 3.0, random.Random(seed))
        lengths += [len(span) for span in spans(target, SENTINELS).values()]
    assert sum(lengths) / len(lengths) == pytest.approx(3.0) and len(set(lengths)) > 5  # lengths vary, mean exact


# ------------------------------------------------------------------------------ the DataModule
def corpora(root: Path) -> Path:
    """``root/pairs/train.jsonl`` (no validation or test file: never read) and a raw WikiText
    ``root/wikitext/train.txt`` with headings, blank lines and WikiText's number marks."""
    write_jsonl(root / "pairs" / "train.jsonl", synthetic_pairs(40))
    lines = []
    for i, pair in enumerate(synthetic_pairs(40, seed=5)):
        lines += [f" = Title {i} = ", "", f" {pair['article']} It cost 1 @,@ 000 dollars @-@ or so . "]
    (root / "wikitext").mkdir(parents=True)
    (root / "wikitext" / "train.txt").write_text("\n".join(lines) + "\n")
    return root


def denoising_overrides(root: Path, cache: Path) -> list[str]:
    return ["data=cnndm_wikitext_denoising", f"data.corpora.cnndm.path={root / 'pairs'}",
            f"data.corpora.wikitext.path={root / 'wikitext'}", f"data.tokenizer.cache_dir={cache}", "data.heldout=0.1",
            "data.tokenizer.vocab_size=400", "data.tokenizer.sentinels=20", "data.max_source_len=64",
            "data.max_target_len=24", "data.batch_size=8"]


def make_denoising(tmp_path: Path, *overrides: str) -> DenoisingDataModule:
    root = corpora(tmp_path / "corpora") if not (tmp_path / "corpora").exists() else tmp_path / "corpora"
    return instantiate_component(compose("train", [*denoising_overrides(root, tmp_path / "cache"), *overrides], tmp_path).data)


def test_denoising_data_stages_texts_and_noise(tmp_path: Path) -> None:
    dm = make_denoising(tmp_path)
    dm.setup("fit")
    dm.setup("test")
    train, val, test = (dm.data[s] for s in ("train", "validation", "test"))
    assert (len(train), len(val), len(test)) == (64, 8, 8)  # each corpus: its last 4 texts test, 4 before validation
    assert not set(train.ids) & set(val.ids) and not set(val.ids) & set(test.ids) and not set(train.ids) & set(test.ids)
    wiki = [t for i, t in zip(train.ids, train.articles) if i.startswith("wikitext")]
    assert len(wiki) == 32 and all(t == t.lower() and "1,000 dollars-or so" in t and "title" not in t for t in wiki)

    tok = dm.tokenizer
    sentinels = dm.sentinel_ids(tok)
    assert sentinels == list(range(4, 24)) and set(sentinels) <= set(tok.all_special_ids)
    torch.manual_seed(0)
    first, second = next(iter(dm.train_dataloader())), next(iter(dm.train_dataloader()))
    assert first["ids"] == second["ids"] and not torch.equal(first["source"], second["source"])  # new noise each pass
    for batch in (first, second):
        for i, text in enumerate(batch["articles"]):
            source, target = (batch[k][i][batch[k][i] != tok.pad_token_id].tolist() for k in ("source", "target"))
            assert target[-1] == tok.eos_token_id and target[0] == sentinels[0] and len(target) <= 24
            rebuilt = tok.decode(rebuild(source, target[:-1], sentinels))
            assert len(rebuilt) > 40 and rebuilt == text[: len(rebuilt)]  # the text, up to max_source_len tokens
            assert batch["references"][i] == tok.decode(target, skip_special_tokens=True)

    def validation_batch(seed: int) -> dict:  # a new DataModule each time: nothing carried over
        other = make_denoising(tmp_path, f"seed={seed}")
        other.setup("validate")
        other.tokenizer  # noqa: B018 (built, here loaded from the cache)
        return next(iter(other.val_dataloader()))

    infilling = make_denoising(tmp_path, "data.objective=text_infilling", "data.max_target_len=65")
    infilling.setup("fit")
    infilling.tokenizer  # noqa: B018
    whole = next(iter(infilling.train_dataloader()))  # BART: the same corrupted source, the whole text as target
    for i, text in enumerate(whole["articles"]):
        target = whole["target"][i][whole["target"][i] != tok.pad_token_id].tolist()
        decoded = tok.decode(target[:-1])
        assert target[-1] == tok.eos_token_id and decoded == whole["references"][i] == text[: len(decoded)]
        assert set(whole["source"][i].tolist()) & set(sentinels)

    torch.manual_seed(1)  # the global RNG, which training noise draws from, plays no part
    assert torch.equal(validation_batch(3)["source"], validation_batch(3)["source"])
    assert not torch.equal(validation_batch(3)["source"], validation_batch(4)["source"])


def test_denoising_settings_are_checked_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.max_target_len=12 cannot hold .* set data.max_target_len=14"):
        make_denoising(tmp_path, "data.max_target_len=12")
    with pytest.raises(ConfigError, match=r"data.max_target_len=24 cannot hold the text_infilling .* data.max_target_len=65"):
        make_denoising(tmp_path, "data.objective=text_infilling")
    with pytest.raises(ConfigError, match="data.objective='bert' is not one of span_corruption, text_infilling"):
        make_denoising(tmp_path, "data.objective=bert")
    with pytest.raises(ConfigError, match="data.noise_density=1.5 must be in"):
        make_denoising(tmp_path, "data.noise_density=1.5")
    dm = make_denoising(tmp_path, f"data.corpora.wikitext.path={tmp_path / 'nowhere'}")
    with pytest.raises(DataError, match="copy wikitext-2-raw into DATA_DIR"):
        dm.setup("fit")
    no_sentinels = train_bpe(["a few words of text"] * 4, 300, 1)
    with pytest.raises(DataError, match="no sentinel tokens <extra_id_0>..<extra_id_19>"):
        make_denoising(tmp_path).sentinel_ids(no_sentinels)


def test_training_noise_differs_between_processes(tmp_path: Path) -> None:
    dm = make_denoising(tmp_path)
    dm.setup("fit")
    tok, items = dm.tokenizer, [(i, t, t) for i, t in zip(dm.data["train"].ids[:8], dm.data["train"].articles[:8])]
    batches = []
    for rank in (0, 1):
        torch.manual_seed(0)  # every DDP process seeds its global RNG alike
        batches.append(DenoisingCollator(tok, dm.sentinel_ids(tok), 0.15, 3.0, 64, fixed=False, seed=0, rank=rank)(items))
    assert not torch.equal(batches[0]["source"], batches[1]["source"])


# ------------------------------------------------------------------------ the tokenizer travels
def test_tokenizer_round_trips_as_plain_values(tmp_path: Path) -> None:
    tok = train_bpe([p["article"] for p in synthetic_pairs(8)], 300, 1, ["<extra_id_0>"])
    torch.save({CHECKPOINT_KEY: tokenizer_to_dict(tok)}, tmp_path / "t.ckpt")
    back = tokenizer_from_dict(torch.load(tmp_path / "t.ckpt", weights_only=True)[CHECKPOINT_KEY])
    text = "The cat sat <extra_id_0> near the river.\nA new line."
    assert back(text)["input_ids"] == tok(text)["input_ids"] and fingerprint(back) == fingerprint(tok)
    assert back.all_special_ids == tok.all_special_ids and back.decode(back(text)["input_ids"]) == text


def test_eval_needs_no_training_split_and_the_checkpoints_tokenizer_wins(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """eval.py on a folder without train.jsonl (and no cached BPE) reproduces the training run's test
    metrics with the tokenizer the checkpoint carries; data settings that would train another BPE
    change nothing; a named tokenizer other than the checkpoint's is refused in one line."""
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    root, cache = synthetic_pairs_dir(tmp_path / "data"), tmp_path / "cache"
    metrics, _ = train(compose("train", [*FAST, *pairs_overrides(root, cache), *TINY, "trainer.limit_val_batches=1"],
                               tmp_path / "run"))
    (best,) = (tmp_path / "run" / "checkpoints").glob("epoch_*.ckpt")
    ckpt = torch.load(best, weights_only=True)
    assert ckpt[CHECKPOINT_KEY]["name_or_path"] == ""  # a BPE trained here
    bare = tmp_path / "bare"
    bare.mkdir()
    for split in ("validation", "test"):
        shutil.copy(root / f"{split}.jsonl", bare)
    shutil.rmtree(cache)
    common = ["data=cnn_dailymail_pg", "model=transformer", f"ckpt_path={best}", "extras.print_config=false",
              "trainer.enable_progress_bar=false", f"data.tokenizer.cache_dir={cache}"]
    evaluated, _ = evaluate(compose("eval", [*common, f"data.data_dir={bare}"], tmp_path / "eval"))
    assert {k: float(v) for k, v in evaluated.items() if k.startswith("test/")} == \
        {k: float(v) for k, v in metrics.items() if k.startswith("test/")}
    with pytest.raises(ConfigError, match="data.tokenizer.name=gpt2 but the checkpoint's weights were trained with a BPE "
                                          r"trained by archlab, stored in it; drop data.tokenizer.name"):
        evaluate(compose("eval", [*common, "data.tokenizer.name=gpt2"], tmp_path / "eval_named"))

    other = instantiate_component(compose("train", [*pairs_overrides(root, cache), "data.max_examples.train=12"], tmp_path).data)
    other.adopt_checkpoint(ckpt)  # data that would train another BPE (on 12 pairs) takes the checkpoint's
    assert fingerprint(other.tokenizer) == ckpt["tokenizer_fingerprint"] and not cache.exists()  # none trained


# ---------------------------------------------------------------------- pre-train -> fine-tune
PRETRAIN = [*TINY, "task.watch.metric=val/loss", "task.watch.mode=min", "trainer.limit_val_batches=1"]


def test_pretrain_then_finetune_through_init_checkpoint(tmp_path: Path) -> None:
    """Denoising pre-training, then fine-tuning on pairs from its weights (init=checkpoint): the
    fine-tuning run adopts the pre-training tokenizer (no BPE trained on the pairs), loads every
    weight, and its checkpoints load with weights_only=True and carry that tokenizer on."""
    corpora(tmp_path / "corpora")
    pre_metrics, _ = train(compose("train", [*FAST, *denoising_overrides(tmp_path / "corpora", tmp_path / "cache"), *PRETRAIN],
                                   tmp_path / "pre"))
    assert 0 < float(pre_metrics["test/loss"]) < 10
    pre = tmp_path / "pre" / "checkpoints" / "last.ckpt"
    root = synthetic_pairs_dir(tmp_path / "pairs")
    fine_tune = [*FAST, *pairs_overrides(root, tmp_path / "pairs_cache"), *TINY, "trainer.limit_val_batches=1",
                 "init=checkpoint", f"init.path={pre}"]
    _, objects = train(compose("train", fine_tune, tmp_path / "fine"))
    assert not (tmp_path / "pairs_cache").exists()
    (report,) = json.loads((tmp_path / "fine" / "init_weights.json").read_text())
    assert report["loaded"] and not report["missing"] and not report["mismatched"], report
    fine = torch.load(tmp_path / "fine" / "checkpoints" / "last.ckpt", weights_only=True)
    assert fine[CHECKPOINT_KEY] == torch.load(pre, weights_only=True)[CHECKPOINT_KEY]
    assert "<extra_id_0>" in objects["datamodule"].tokenizer.get_vocab()


@pytest.mark.slow  # DDP training, then eval.py in one and in two processes: subprocesses
def test_denoising_pretraining_under_ddp(tmp_path: Path) -> None:
    """A ddp_cpu pre-training run (the BPE trained once, by the first process); evaluating its
    checkpoint in two processes gives, example by example, the corrupted texts (the references are
    their cut-out spans) and the predictions of one process: evaluation noise depends on the
    example alone."""
    corpora(tmp_path / "corpora")
    overrides = [*denoising_overrides(tmp_path / "corpora", tmp_path / "cache"), *PRETRAIN, "trainer.max_epochs=2"]
    two = run_ok("train.py", [*overrides, "trainer=ddp_cpu"], tmp_path / "two")
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1 and float(metrics_csv(two)["test/loss"]) > 0
    (best,) = (two / "checkpoints").glob("epoch_*.ckpt")
    evaluated = {n: run_ok("eval.py", [f"ckpt_path={best}", *extra], tmp_path / f"eval{n}")
                 for n, extra in ((1, []), (2, ["trainer=ddp_cpu"]))}
    rows = {n: [json.loads(line) for line in (d / "predictions.jsonl").read_text().splitlines()] for n, d in evaluated.items()}
    assert len(rows[1]) == 8 and rows[2] == rows[1]
    assert float(metrics_csv(evaluated[2])["test/rouge1"]) == float(metrics_csv(evaluated[1])["test/rouge1"])
