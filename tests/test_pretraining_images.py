"""Self-supervised pre-training of image encoders (SimCLR: model=simclr, src/models/contrastive.py):
the loss, the batched views, learning, the encoder into a classifier through init=checkpoint,
weights_only checkpoints, bad options in one line, and DDP (negatives gathered over processes)."""

import csv
import math
from pathlib import Path

import pytest
import torch

from src.core.errors import ConfigError
from src.core.prefix import rename
from src.core.weights import load_weights
from src.data.views import RandomViews
from src.models.contrastive import ContrastiveModule, nt_xent
from src.models.nets.cnn import SimpleCNN
from src.models.nets.contrastive import ContrastiveNet
from src.models.nets.resnet import resnet9
from src.utils.config import compose
from tests.conftest import FAST, metrics_csv, run_ok
from train import train

# SimCLR on scikit-learn's digits (real, tiny, shipped): no flips for digits
SIMCLR = ["model=simclr", "data=digits", "model.views.flip=false"]
INTO_CNN = ["init=checkpoint", "init.prefix_map={encoder:''}"]


def test_nt_xent_is_simclr_loss() -> None:
    """Identical projections leave every candidate equally likely: log(2N - 1). Pairs aligned and
    orthogonal to the rest: the partner has similarity 1 / t, the 2N - 2 others 0."""
    assert nt_xent(torch.ones(4, 8), torch.ones(4, 8), 0.5).item() == pytest.approx(math.log(7))
    e, t = torch.eye(4), 0.5
    assert nt_xent(e, e, t).item() == pytest.approx(-math.log(math.exp(1 / t) / (math.exp(1 / t) + 6)), rel=1e-5)


def test_views_differ_per_image_and_repeat_with_a_seed() -> None:
    image = torch.randn(1, 1, 16, 16).expand(8, -1, -1, -1)
    views = RandomViews()(image)
    assert views.shape == image.shape
    assert all(not torch.allclose(views[0], views[i]) for i in range(1, 8))  # each image its own crop and jitter
    seeded = [RandomViews()(image, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(*seeded)
    identity = RandomViews(scale=(1, 1), ratio=(1, 1), flip=False, brightness=0, contrast=0)
    assert torch.allclose(identity(image), image, atol=1e-5)


def test_net_must_be_contrastive() -> None:
    with pytest.raises(ConfigError, match="model.net is a SimpleCNN; a contrastive model needs a ContrastiveNet"):
        ContrastiveModule(SimpleCNN(1, 10, image_size=8), 10, RandomViews())


def test_resnet9_encoder_loads_into_resnet9() -> None:
    """The encoder keeps the classifier's keys, less its output layer: a prefix map brings it back."""
    net = ContrastiveNet(resnet9(1, 10, width=8))
    target = resnet9(1, 10, width=8)
    report = load_weights(target, rename(net.state_dict(), {"encoder": ""}), "simclr")
    assert report.unexpected == [k for k in net.state_dict() if k.startswith("projector.")]
    assert report.missing == ["net.11.weight", "net.11.bias"]  # the output layer: fresh
    own = target.state_dict()
    assert all(torch.equal(v, own[k[len("encoder."):]]) for k, v in net.state_dict().items() if k.startswith("encoder."))


def test_simclr_learns_and_initialises_the_classifier(tmp_path: Path) -> None:
    """A few epochs of SimCLR on digits: the loss falls and the linear probe beats chance; the
    checkpoint loads with weights_only; its encoder is the starting point of model=cnn (all but
    the output layer)."""
    pre = [*SIMCLR, "trainer.max_epochs=3", "trainer.limit_train_batches=8", "trainer.limit_val_batches=3", "test=false"]
    metrics, objects = train(compose("train", [*FAST, *pre], tmp_path / "pre"))
    losses = [float(r["train/loss"]) for r in csv_rows(tmp_path / "pre") if r.get("train/loss")]
    assert len(losses) == 3 and losses[-1] < losses[0] - 0.2, losses
    assert float(metrics["val/acc"]) > 0.2, metrics  # the probe, 24 steps in: twice chance

    ckpt = tmp_path / "pre" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    module = ContrastiveModule.load_from_checkpoint(ckpt, net=objects["model"].net, views=RandomViews(), weights_only=True)
    assert module.hparams.temperature == 0.5 and "views" not in module.hparams

    _, fine = train(compose("train", [*FAST, "model=cnn", "data=digits", *INTO_CNN, f"init.path={ckpt}", "train=false",
                                      "test=false"], tmp_path / "fine"))
    loaded = fine["model"].net.state_dict()
    encoder = {k[len("net.encoder."):]: v for k, v in state.items() if k.startswith("net.encoder.")}
    assert encoder.keys() == loaded.keys() - {"classifier.4.weight", "classifier.4.bias"}
    assert all(torch.equal(v, loaded[k]) for k, v in encoder.items())


def csv_rows(run: Path) -> list[dict[str, str]]:
    (path,) = run.glob("csv/version_0/metrics.csv")
    return list(csv.DictReader(path.open()))


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.temperature=0"], "ConfigError: model.temperature=0 must be > 0"),
    (["model.views.scale=[0.5,2]"], "ConfigError: model.views.scale=[0.5, 2] must be [min, max] with 0.0 < min <= max <= 1.0"),
    (["model.views.contrast=1.5"], "model.views.contrast=1.5 in [0, 1)"),
    (["model.net.projection_dim=0"], "projection_dim=0 and hidden_dim=None must be >= 1"),
])
def test_bad_option_is_one_line(overrides: list[str], message: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    with pytest.raises(SystemExit) as e:
        train(compose("train", [*FAST, *SIMCLR, *overrides], tmp_path))
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert e.value.code == 1 and len(errors) == 1 and message in errors[0] and "\n" not in errors[0], caplog.text


@pytest.mark.slow  # two training runs in subprocesses, one of them DDP
def test_ddp_gathers_negatives(tmp_path: Path) -> None:
    """Under trainer=ddp_cpu each process holds half the global batch; with the projections
    gathered its loss has the negatives of the whole batch, so it is the one-process loss (without
    them it would be about log 2 lower), and the probe scores alike."""
    common = [*SIMCLR, "trainer.max_epochs=2", "data.batch_size=64", "trainer.limit_val_batches=4"]
    one = metrics_csv(run_ok("train.py", common, tmp_path / "one"))
    two = metrics_csv(run_ok("train.py", [*common, "trainer=ddp_cpu"], tmp_path / "two"))
    assert float(two["train/loss"]) == pytest.approx(float(one["train/loss"]), abs=0.15), (one, two)
    assert float(two["test/acc"]) == pytest.approx(float(one["test/acc"]), abs=0.1), (one, two)
