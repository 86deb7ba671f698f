"""Summarization models end to end: decoding, overfitting a handful of pairs, resume and weights_only checkpoints, eval.py without a checkpoint (Lead-3), real data."""

import json
import math
from pathlib import Path

import pytest
import torch

from eval import evaluate
from src.core.errors import CheckpointError
from src.models.nets.decoding import ban_repeated_ngrams, beam_search, greedy_search
from src.models.nets.lstm import PointerGeneratorLSTM
from src.models.nets.transformer import TransformerSeq2Seq
from src.models.summarization import SummarizationModule
from src.utils.config import compose
from tests.conftest import (
    FAST,
    final_weights,
    full_interrupted_resumed,
    pairs_overrides,
    synthetic_pairs_dir,
)
from train import train

TINY = {
    "transformer": ["model.net.dim=64", "model.net.num_heads=4", "model.net.encoder_layers=2", "model.net.decoder_layers=2",
                    "model.net.ff_hidden=128", "model.net.dropout=0.0"],
    "lstm": ["model.net.embed_dim=64", "model.net.hidden=64", "model.net.coverage=true"],
    "hf_seq2seq": [],  # + the tiny saved model (conftest.tiny_hf_dir)
}
GENERATION = ["model.generation.max_len=30", "model.generation.min_len=0", "model.generation.beam_size=2",
              "model.generation.no_repeat_ngram=0", "model.val_generation.max_len=30", "model.val_generation.no_repeat_ngram=0"]


def model_overrides(model: str, hf_dir: Path | None = None) -> list[str]:
    hf = [f"model.net.name={hf_dir}", f"data.tokenizer.name={hf_dir}"] if model == "hf_seq2seq" else []
    return [f"model={model}", *TINY[model], *hf, *GENERATION]


# ------------------------------------------------------------------------------------ decoding
def tiny_nets() -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [TransformerSeq2Seq(40, 0, 1, 2, dim=32, num_heads=4, encoder_layers=2, decoder_layers=2, ff_hidden=64).eval(),
            PointerGeneratorLSTM(40, 0, 1, 2, embed_dim=16, hidden=24, attention="bahdanau", coverage=True).eval(),
            PointerGeneratorLSTM(40, 0, 1, 2, embed_dim=16, hidden=24, attention="luong", pointer=False).eval()]


def source_batch() -> torch.Tensor:
    source = torch.randint(3, 40, (5, 11), generator=torch.Generator().manual_seed(1))
    source[1, 7:] = 0
    source[3, 4:] = 0
    return source


@pytest.mark.parametrize("net", tiny_nets(), ids=["transformer", "lstm_bahdanau_pointer", "lstm_luong"])
def test_incremental_steps_match_teacher_forcing(net: torch.nn.Module) -> None:
    source = source_batch()
    target = torch.randint(3, 40, (5, 6), generator=torch.Generator().manual_seed(2))
    full = net(source, target).logits.log_softmax(-1)
    state, last, steps = net.encode(source), torch.full((5,), net.bos_id), []
    for t in range(target.shape[1]):
        log_probs, state = net.step(last, state)
        steps.append(log_probs)
        last = target[:, t]
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert torch.allclose(full.exp().sum(-1), torch.ones(5, 6), atol=1e-4)


@pytest.mark.parametrize("net", tiny_nets(), ids=["transformer", "lstm_bahdanau_pointer", "lstm_luong"])
@pytest.mark.parametrize("settings", [{}, {"min_len": 6, "no_repeat_ngram": 2}, {"max_len": 3}])
def test_beam_size_one_equals_greedy(net: torch.nn.Module, settings: dict) -> None:
    kwargs = {"max_len": 15, **settings}
    greedy = greedy_search(net, source_batch(), **kwargs)
    beam = beam_search(net, source_batch(), beam_size=1, length_penalty=1.5, **kwargs)
    assert torch.equal(greedy, beam)
    assert greedy.shape[1] <= kwargs["max_len"]


@pytest.mark.parametrize("net", tiny_nets()[:2], ids=["transformer", "lstm"])
def test_beam_search_constraints_and_quality(net: torch.nn.Module) -> None:
    source = source_batch()
    out = beam_search(net, source, beam_size=4, max_len=12, min_len=5, no_repeat_ngram=2)
    for row in out.tolist():
        ended = row.index(net.eos_id) + 1 if net.eos_id in row else len(row)
        tokens = row[:ended]
        assert net.eos_id not in tokens[:5] and net.pad_id not in tokens  # min_len, no padding mid-sequence
        bigrams = list(zip(tokens, tokens[1:]))
        assert len(bigrams) == len(set(bigrams))

    def log_prob(seq: list[int], i: int) -> float:  # score of a hypothesis under the net
        seq = [t for t in seq if t != net.pad_id]
        lp = net(source[i: i + 1], torch.tensor([seq])).logits[0].log_softmax(-1)
        return float(lp.gather(1, torch.tensor(seq)[:, None]).sum())

    greedy = greedy_search(net, source, max_len=12)
    beam = beam_search(net, source, beam_size=4, max_len=12, length_penalty=0.0)
    with torch.no_grad():  # with no length penalty, beam search finds sequences at least as likely
        assert all(log_prob(beam[i].tolist(), i) >= log_prob(greedy[i].tolist(), i) - 1e-4 for i in range(len(source)))


def test_no_repeat_ngram_ban() -> None:
    tokens = torch.tensor([[5, 6, 7, 5, 6], [1, 2, 3, 4, 5]])
    banned = ban_repeated_ngrams(torch.zeros(2, 10), tokens, 3)
    assert banned[0].isinf().nonzero().flatten().tolist() == [7]  # "5 6" was followed by 7
    assert not banned[1].isinf().any()
    assert ban_repeated_ngrams(torch.zeros(2, 10), tokens, 1)[1].isinf().nonzero().flatten().tolist() == [1, 2, 3, 4, 5]


# ------------------------------------------------------------------------------ training runs
def cfg_summ(tmp_path: Path, model: str, *overrides: str, hf_dir: Path | None = None, same: bool = False,
             n_train: int = 24):
    root = synthetic_pairs_dir(tmp_path / "data", n_train=n_train, same=same)
    fast = [o for o in FAST if "callbacks=none" not in overrides or not o.startswith("callbacks.")]
    return compose("train", [*fast, *pairs_overrides(root, tmp_path / "cache"), *model_overrides(model, hf_dir),
                                 *overrides], tmp_path / "run")


OVERFIT = {  # steps (epochs of one batch), learning rate and warm-up for each model to memorise 4 pairs
    "transformer": (120, 3e-3, "model.scheduler.num_warmup_steps=10"),
    "lstm": (120, 1e-2, "model.scheduler.pct_start=0.1"),
    "hf_seq2seq": (120, 3e-3, "model.scheduler.pct_start=0.1"),
}


@pytest.mark.parametrize("model", ["transformer", pytest.param("lstm", marks=pytest.mark.slow),
                                   pytest.param("hf_seq2seq", marks=pytest.mark.slow)])
def test_overfits_a_handful_of_pairs(model: str, tmp_path: Path, tiny_hf_dir: Path) -> None:
    """Trained on 4 pairs (test split = the same pairs), beam search reproduces every target."""
    steps, lr, warmup = OVERFIT[model]
    cfg = cfg_summ(tmp_path, model, f"trainer.max_epochs={steps}", f"model.optimizer.lr={lr}", "callbacks=none", "+trainer.enable_checkpointing=false",
                   "trainer.limit_val_batches=0", "model.label_smoothing=0.0", warmup,
                   hf_dir=tiny_hf_dir, same=True, n_train=4)
    metrics, objects = train(cfg)
    assert metrics["test/rouge1"] == pytest.approx(1.0) and metrics["test/rougeLsum"] == pytest.approx(1.0), metrics
    module, dm = objects["model"], objects["datamodule"]
    batch = next(iter(dm.test_dataloader()))
    assert module.predict_step(batch, 0)[0]["summary"] == batch["references"][0]


def test_resume_and_weights_only_checkpoint(tmp_path: Path) -> None:
    """A 2-epoch run == 1 epoch + resume from last.ckpt (dropout on, so RNG state matters too);
    checkpoints load with weights_only=True; each validation writes its sample rows."""
    # save_top_k=-1: Lightning 2.6 refreshes last.ckpt only at epochs that save a top-k checkpoint
    root = synthetic_pairs_dir(tmp_path / "data")
    common = [*FAST, *pairs_overrides(root, tmp_path / "cache"), *model_overrides("transformer"),
              "trainer.deterministic=true", "trainer.max_epochs=2", "model.net.dropout=0.2", "test=false",
              "model.val_generation.max_len=8", "data.batch_size=8", "callbacks.model_checkpoint.save_top_k=-1"]
    full, last, resumed = full_interrupted_resumed(common, tmp_path)
    a, b, c = final_weights(full), final_weights(resumed), final_weights(last)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["net.embed.weight"], c["net.embed.weight"])

    rows = [json.loads(line) for line in (tmp_path / "full" / "val_samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 8 and set(rows[0]) == {"article", "reference", "generated", "epoch", "step"}
    assert [r["epoch"] for r in rows[::8]] == [0, 1]

    net = TransformerSeq2Seq(400, 0, 1, 2, dim=64, num_heads=4, encoder_layers=2, decoder_layers=2, ff_hidden=128)
    module = SummarizationModule.load_from_checkpoint(last, net=net, weights_only=True)
    assert torch.equal(module.net.embed.weight, c["net.embed.weight"])
    assert module.hparams.generation["beam_size"] == 2


def test_checkpoint_knows_its_tokenizer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """eval.py on a checkpoint with the data it was trained on works; a checkpoint of the older
    format (its tokenizer's fingerprint only, not the tokenizer) evaluated with a BPE trained on
    other pairs (same vocabulary size, so the weights would load) stops with a CheckpointError.
    (A checkpoint that carries its tokenizer uses it: tests/test_pretraining_text.py.)"""
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    train(cfg_summ(tmp_path, "transformer", "trainer.max_epochs=1", "test=false", "model.val_generation.max_len=4"))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=True)
    assert len(ckpt["tokenizer_fingerprint"]) == 16
    del ckpt["tokenizer"]
    torch.save(ckpt, older := tmp_path / "older.ckpt")
    overrides = [*pairs_overrides(tmp_path / "data", tmp_path / "cache"), *model_overrides("transformer"),
                 "extras.print_config=false", "trainer.enable_progress_bar=false", "model.generation.max_len=4"]
    metrics, _ = evaluate(compose("eval", [*overrides, f"ckpt_path={last}"], tmp_path / "eval"))
    assert 0.0 <= float(metrics["test/rouge1"]) <= 1.0
    with pytest.raises(CheckpointError, match="trained with another tokenizer"):
        evaluate(compose("eval", [*overrides, f"ckpt_path={older}", "data.max_examples.train=12"], tmp_path / "eval_other"))


def test_eval_lead3_without_checkpoint(tmp_path: Path) -> None:
    root = synthetic_pairs_dir(tmp_path / "data")
    overrides = ["model=lead3", *pairs_overrides(root, tmp_path / "cache"), "extras.print_config=false",
                 "trainer.enable_progress_bar=false"]
    metrics, objects = evaluate(compose("eval", overrides, tmp_path / "run"))
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and set(rows[0]) == {"id", "reference", "prediction"}
    # synthetic highlights are sentences 1 and 3 of 4: Lead-3 recalls all of them
    assert 0.6 < float(metrics["test/rouge1"]) < 1.0
    assert objects["datamodule"]._tokenizer is None and not (tmp_path / "cache").exists()  # no BPE trained
    with pytest.raises(SystemExit):  # a model with weights still needs ckpt_path (CheckpointError, one line)
        evaluate(compose("eval", [*overrides, "model=transformer"], tmp_path / "run2"))


def test_eval_without_checkpoint_is_a_checkpoint_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    root = synthetic_pairs_dir(tmp_path / "data")
    with pytest.raises(CheckpointError, match="model=.*needs trained weights: pass ckpt_path="):
        evaluate(compose("eval", ["model=transformer", *pairs_overrides(root, tmp_path / "cache"),
                                      "extras.print_config=false"], tmp_path / "run"))


# ---------------------------------------------------------------------------------- real data
def test_lead3_on_real_cnn_dailymail(data_dir: Path, tmp_path: Path) -> None:
    """The 500 HF-format test stories (CNN): Lead-3 measured at R-1 30.2 / R-2 11.8 / R-Lsum 26.9."""
    if not (data_dir / "cnn_dailymail" / "test.jsonl").exists():
        pytest.skip(f"no cnn_dailymail/test.jsonl in {data_dir}")
    cfg = compose("eval", ["model=lead3", "data=cnn_dailymail", f"data.data_dir={data_dir}/cnn_dailymail",
                               "extras.print_config=false", "trainer.enable_progress_bar=false"], tmp_path)
    metrics, objects = evaluate(cfg)
    assert len(objects["datamodule"].data["test"]) == 500
    assert 0.29 < float(metrics["test/rouge1"]) < 0.32 and 0.11 < float(metrics["test/rouge2"]) < 0.13


@pytest.mark.slow
def test_transformer_trains_on_real_pg_data(data_dir: Path, tmp_path: Path) -> None:
    """A few steps on 256 real training pairs (BPE trained on them and cached), then ROUGE."""
    folder = data_dir / "cnn_dailymail" / "pg_tokenized"
    if not (folder / "train.jsonl.gz").exists():
        pytest.skip(f"no cnn_dailymail/pg_tokenized in {data_dir}")
    cfg = compose("train", [
        *FAST, "data=cnn_dailymail_pg", f"data.data_dir={folder}", f"data.tokenizer.cache_dir={tmp_path / 'cache'}",
        "data.tokenizer.vocab_size=2000", "data.max_examples.train=256", "data.max_examples.validation=16",
        "data.max_examples.test=16", "data.max_source_len=200", "data.max_target_len=40", "data.batch_size=16",
        "model=transformer", *TINY["transformer"], "model.optimizer.lr=0.005", "model.scheduler.num_warmup_steps=4", "model.generation.beam_size=2",
        "model.generation.max_len=40", "model.generation.min_len=10", "model.val_generation.max_len=40",
    ], tmp_path / "run")
    metrics, objects = train(cfg)
    dm = objects["datamodule"]
    assert [len(dm.data[s]) for s in ("train", "validation", "test")] == [256, 16, 16]
    assert len(list((tmp_path / "cache").glob("cnn_dailymail_pg-bpe2000-*.json"))) == 1
    assert float(metrics["val/loss"]) < math.log(2000) - 0.5, metrics  # learnt more than uniform over the vocabulary
    assert 0.0 <= float(metrics["test/rouge1"]) < 1.0
    rows = objects["model"].predict_step(next(iter(dm.test_dataloader())), 0)
    assert len(rows) == 16 and all(r["summary"].strip() for r in rows)


@pytest.mark.slow
def test_wandb_offline_gets_the_sample_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each validation logs its (article, reference, generated) rows as a W&B table (offline here)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_cache"))
    (tmp_path / "wandb_cache").mkdir()
    train(cfg_summ(tmp_path, "transformer", "logger=wandb", "trainer.max_epochs=1", "model.val_generation.max_len=6",
                   "test=false"))
    (table,) = (tmp_path / "run" / "wandb").glob("offline-run-*/files/media/table/val/samples_*.table.json")
    content = json.loads(table.read_text())
    assert content["columns"] == ["article", "reference", "generated"] and len(content["data"]) == 8
    rows = [json.loads(line) for line in (tmp_path / "run" / "val_samples.jsonl").read_text().splitlines()]
    assert [[r["article"], r["reference"], r["generated"]] for r in rows] == content["data"]
