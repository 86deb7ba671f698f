"""Compression: pruning while training (schedule, resume, lottery-ticket option), and
``compress.py``'s recipes on a real (tiny) checkpoint: pruned, channel-pruned, int8 and ONNX nets
tested against the fp32 net they came from."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import lightning as L
import pytest
import torch

from compress import compress, scale_learning_rates
from src.compression.pruning import MagnitudePruning, prunable_weights
from src.compression.structured import load_resized
from src.core.errors import ConfigError
from src.models.nets.cnn import SimpleCNN
from src.utils.config import compose
from src.utils.instantiate import instantiate_component
from tests.conftest import (
    FAST,
    QUIET,
    final_weights,
    full_interrupted_resumed,
    run_cli,
    run_dirs,
    run_ok,
)
from train import train

PRUNE = ["callbacks=[default,pruning]"]


def _conv_linear(state: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The weights MagnitudePruning prunes in a SimpleCNN checkpoint (conv and linear, not BN)."""
    return [v for k, v in state.items() if k.startswith("net.") and k.endswith("weight") and v.dim() > 1]


def _zero_fraction(tensors: list[torch.Tensor]) -> float:
    return sum(int((t == 0).sum()) for t in tensors) / sum(t.numel() for t in tensors)


def test_schedule_reaches_the_target_gradually() -> None:
    """Cubic schedule over the first half; the per-epoch amounts, applied to what is left, compose
    to exactly the target."""
    cb = MagnitudePruning(sparsity=0.9, start=0.0, end=0.5)
    cb.first_epoch, cb.last_epoch = 0, 3
    reached = [cb.scheduled(e) for e in range(6)]
    assert reached[0] < reached[1] < reached[2] < reached[3] == pytest.approx(0.9) == reached[5]
    left = 1.0
    for e in range(6):
        left *= 1 - cb._amount(e)
    assert 1 - left == pytest.approx(0.9)
    assert cb._amount(4) == 0.0  # fine-tuning epochs prune nothing more


def test_excluding_a_module_keeps_only_that_module() -> None:
    """``exclude`` names modules: ``layers.1`` is not a prefix of ``layers.10``."""
    net = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(11)])
    kept = prunable_weights(net, ("Linear",), exclude=["1"])
    assert len(kept) == 10 and net[1] not in [m for m, _ in kept] and net[10] in [m for m, _ in kept]


def test_pruning_while_training_tests_the_sparse_net(cfg_train) -> None:
    """callbacks=[default,pruning]: the tested checkpoint is the last, at the target sparsity over
    conv and linear weights only; it loads with weights_only=True into an unpruned net."""
    metrics, objects = train(cfg_train(*PRUNE, "trainer.max_epochs=2", "callbacks.pruning.sparsity=0.8"))
    best = objects["trainer"].checkpoint_callback.best_model_path
    state = torch.load(best, weights_only=True)["state_dict"]
    assert _zero_fraction(_conv_linear(state)) == pytest.approx(0.8, abs=1e-3)
    assert all((state[k] != 0).all() for k in state if k.startswith("net.") and k.endswith("bias"))
    assert metrics["train/sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert metrics["test/acc"] > 0.5  # digits after 2 epochs, sparse
    cfg = objects["cfg"]
    net = instantiate_component(cfg.model.net)
    net.load_state_dict({k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")})
    assert not hasattr(net.features[0], "weight_mask")


@pytest.mark.slow
def test_a_resumed_pruning_run_keeps_its_masks(tmp_path: Path) -> None:
    """Interrupted after the first pruning step and resumed, the run ends on the same weights as
    the uninterrupted one: the zeros stay masked while the second epoch trains."""
    common = [*QUIET, *PRUNE, "trainer.deterministic=true", "trainer.max_epochs=3", "test=false"]
    full, interrupted, resumed = full_interrupted_resumed(common, tmp_path)
    a, b = final_weights(full), final_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert 0 < _zero_fraction(_conv_linear(final_weights(interrupted))) < 0.9 - 1e-3
    assert _zero_fraction(_conv_linear(a)) == pytest.approx(0.9, abs=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("lottery", [False, True])
def test_lottery_ticket_rewinds_only_when_asked(cfg_train, lottery: bool) -> None:
    """Off (the default): the surviving weights are the trained ones. On: they are rewound to
    their initial values after the pruning step (Frankle & Carbin 2019)."""
    cfg = cfg_train(*PRUNE, "callbacks.pruning.sparsity=0.5", f"callbacks.pruning.lottery_ticket={lottery}", "test=false")
    L.seed_everything(cfg.seed, workers=True)
    initial = instantiate_component(cfg.model.net).state_dict()["features.0.weight"]
    _, objects = train(cfg)
    final = objects["model"].net.features[0].weight.detach()
    kept = final != 0
    assert torch.equal(final[kept], initial[kept]) == lottery


# -- compress.py -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory) -> Path:
    """A SimpleCNN trained 2 epochs on digits (the default run)."""
    out = tmp_path_factory.mktemp("trained")
    train(compose("train", [*FAST, "trainer.max_epochs=2"], out))
    return out / "checkpoints" / "last.ckpt"


def _compress(ckpt: Path, out: Path, *overrides: str) -> list[dict]:
    out.mkdir(exist_ok=True)
    result, _ = compress(compose("compress", [f"ckpt_path={ckpt}", *QUIET[:2], "latency.repeats=2",
                                              "latency.batch_sizes=[1,64]", *overrides], out))
    rows = json.loads((out / "compression.json").read_text())
    assert rows == result["rows"] and rows[0]["variant"] == "fp32"
    assert (out / "compression.md").read_text().count("\n") == 4
    return rows


@pytest.mark.parametrize("recipe, tolerance", [("int8_static", 0.5), ("int8_dynamic", 0.1), ("onnx", 1e-4)])
def test_quantized_and_exported_nets_match_fp32(digits_ckpt: Path, tmp_path: Path, recipe: str, tolerance: float) -> None:
    """int8 logits stay close to fp32 and keep its accuracy; ONNX Runtime matches to float error.
    Every row has its size, non-zero parameters and latencies."""
    fp32, row = _compress(digits_ckpt, tmp_path, f"compression={recipe}")
    assert row["max_abs_diff"] < tolerance, row
    assert abs(row["test/acc"] - fp32["test/acc"]) <= 0.02, (fp32, row)
    for r in (fp32, row):
        assert r["size_mb"] > 0 and r["gzip_mb"] > 0 and r["nonzero_params"] > 0
        assert all(r[k] > 0 for k in r if k.startswith("ms_b"))
    if recipe == "int8_static":
        assert row["size_mb"] < fp32["size_mb"] / 3  # int8 weights: a quarter of fp32
    if recipe == "onnx":
        assert (tmp_path / "net.onnx").exists() and (tmp_path / "net.pt2").exists()


@pytest.mark.slow  # compress.py then eval.py in subprocesses
def test_pruned_checkpoint_evaluates_like_any_other(digits_ckpt: Path, tmp_path: Path) -> None:
    """compression=prune fine-tunes while pruning to 80 %; pruned_80.ckpt loads into an unpruned
    net (weights_only=True) and eval.py reproduces the table's accuracy from it."""
    fp32, row = _compress(digits_ckpt, tmp_path / "c", "compression=prune", "compression.sparsity=0.8",
                          "compression.finetune_epochs=1")
    ckpt = tmp_path / "c" / "pruned_80.ckpt"
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert _zero_fraction(_conv_linear(state)) == pytest.approx(0.8, abs=1e-3)
    assert row["gzip_mb"] < fp32["gzip_mb"] / 2  # zeros compress
    assert row["nonzero_params"] < 0.3 * fp32["nonzero_params"]
    run = run_ok("eval.py", [f"ckpt_path={ckpt}"], tmp_path / "eval")
    lines = (run / "predictions.jsonl").read_text().splitlines()
    correct = sum(json.loads(line)["target"] == json.loads(line)["pred"] for line in lines)
    assert correct / len(lines) == pytest.approx(row["test/acc"], abs=1e-4)


def test_channel_pruning_shrinks_the_net(digits_ckpt: Path, tmp_path: Path) -> None:
    """compression=structured halves the channels: fewer parameters, smaller file, and the
    artifact loads into an unpruned SimpleCNN with load_resized."""
    fp32, row = _compress(digits_ckpt, tmp_path, "compression=structured", "compression.finetune_epochs=1")
    assert row["nonzero_params"] < 0.4 * fp32["nonzero_params"]
    assert row["size_mb"] < 0.4 * fp32["size_mb"]
    state = torch.load(tmp_path / "structured_50.pt", weights_only=True)
    net = load_resized(SimpleCNN(1, 10, 8), state)
    assert net.features[0].out_channels == 16 and net(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("overrides, message", [
    (["compression=prune", "compression.sparsity=1.5"], "sparsity=1.5 must be in [0, 1)"),
    (["compression=int8_static", "compression.submodule=nope"], "compression.submodule=nope is not in SimpleCNN"),
    (["compression=structured", "compression.ratio=0"], "compression.ratio=0 must be in (0, 1)"),
    (["compression=int8_dynamic", "compression.layer_types=[LSTM]"], "SimpleCNN has no LSTM layer for dynamic int8"),
])
def test_bad_recipes_are_one_logged_line(digits_ckpt: Path, tmp_path: Path, overrides: list[str], message: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        compress(compose("compress", [f"ckpt_path={digits_ckpt}", *QUIET[:2], *overrides], tmp_path))
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert e.value.code == 1 and len(errors) == 1 and message in errors[0], caplog.text


@pytest.mark.slow  # a command-line run; compress.py loads through session.build as train.py does (tests/test_errors.py)
def test_missing_checkpoint_is_one_line(tmp_path: Path) -> None:
    proc = run_cli(["compress.py", "ckpt_path=missing.ckpt", "compression=onnx", f"paths.log_dir={tmp_path}"])
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out and "ckpt_path=missing.ckpt does not exist" in out, out[-2000:]


@pytest.mark.slow  # a command-line run; test_bad_recipes_are_one_logged_line covers the message in-process
def test_compress_without_a_recipe_names_the_options(digits_ckpt: Path, tmp_path: Path) -> None:
    proc = run_cli(["compress.py", f"ckpt_path={digits_ckpt}", f"paths.log_dir={tmp_path}"])
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out and "compression" in out and "int8_static" in out, out[-2000:]
    assert not run_dirs(tmp_path)


def test_finetuning_scales_the_trained_learning_rates() -> None:
    """The optimizer's lr and the one-cycle peak are scaled; other settings are kept."""
    module = type("M", (), {})()
    module.optimizer_factory = functools.partial(torch.optim.SGD, lr=0.2, momentum=0.9)
    module.scheduler_factory = functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.2, pct_start=0.2)
    scale_learning_rates(module, 0.1)
    assert module.optimizer_factory.keywords == {"lr": pytest.approx(0.02), "momentum": 0.9}
    assert module.scheduler_factory.keywords == {"max_lr": pytest.approx(0.02), "pct_start": 0.2}
    with pytest.raises(ConfigError, match="finetune.lr_scale=0 must be > 0"):
        scale_learning_rates(module, 0)
