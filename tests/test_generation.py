"""Image generation (GANs): nets, data, both optimizers, sample-quality metrics, resume,
checkpoints and eval.py."""

import json
from pathlib import Path

import pytest
import torch
from lightning import Callback, LightningModule, Trainer
from omegaconf import open_dict
from torchmetrics.image.fid import FrechetInceptionDistance

from src.core.errors import ConfigError, DataError
from src.data.generation import GenerationDataModule
from src.data.sources.images import load_digits_split
from src.metrics.image_quality import (
    DEFAULT_METRICS,
    ClassCoverage,
    ImageQualityMetrics,
    PixelFeatures,
    Precomputed,
    load_classifier_features,
)
from src.models.generation import GenerationModule
from src.models.nets.gan import GAN, DCGANDiscriminator, DCGANGenerator
from src.utils.config import compose
from tests.conftest import (
    FAST,
    final_weights,
    full_interrupted_resumed,
    metrics_csv,
    run_cli,
)
from train import train

DIGITS = {"tasks": ["generation"], "image_shape": [1, 8, 8], "num_classes": 10}


# -- nets -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("shape", "channels"), [((1, 8, 8), (32, 16)), ((1, 28, 28), (64, 32)),
                                                 ((3, 32, 32), (64, 32, 16)), ((3, 64, 64), (32, 16))])
@pytest.mark.parametrize("conditional", [False, True])
def test_net_shapes(shape: tuple[int, int, int], channels: tuple[int, ...], conditional: bool) -> None:
    c, size, _ = shape
    g = DCGANGenerator(16, c, size, 10, channels=channels, conditional=conditional)
    d = DCGANDiscriminator(c, size, 10, channels=channels[::-1], norm="layer", conditional=conditional)
    labels = torch.arange(4) % 10 if conditional else None
    images = g(torch.randn(4, 16), labels)
    assert images.shape == (4, *shape) and images.abs().max() <= 1
    assert d(images, labels).shape == (4,)


def test_net_rejects_impossible_sizes() -> None:
    with pytest.raises(ValueError, match="image_size=28"):
        DCGANGenerator(16, 1, 28, 10, channels=(64, 32, 16))
    with pytest.raises(ValueError, match="both be conditional"):
        GAN(DCGANGenerator(16, 1, 8, 10, conditional=True), DCGANDiscriminator(1, 8, 10))


# -- data -------------------------------------------------------------------------------------
def test_data_in_tanh_range_resized_with_floor_reference() -> None:
    dm = GenerationDataModule("digits", {**DIGITS, "image_shape": [1, 16, 16]}, batch_size=32)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 16, 16) and y.dtype == torch.int64
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.9 and x.max() > 0.9
    test, reference = dm.test_dataloader()
    assert len(test.dataset) == len(reference.dataset) == 360
    # the floor's training images come from the training split, never from val
    assert set(reference.dataset.indices) <= set(dm.data_train.indices)
    assert not set(reference.dataset.indices) & set(dm.data_val.indices)


def test_data_declaration_is_checked() -> None:
    dm = GenerationDataModule("digits", {**DIGITS, "image_shape": [3, 8, 8]})
    with pytest.raises(DataError, match="1-channel images of 10 classes"):
        dm.setup()


# -- both optimizers step -------------------------------------------------------------------
class StepProbe(Callback):
    """Records, for every optimizer step, which of G's and D's parameters it changed."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, bool, bool]] = []
        self._open: tuple[str, dict[str, torch.Tensor]] | None = None

    @staticmethod
    def _params(pl_module: LightningModule) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in pl_module.net.named_parameters()}

    def _close(self, pl_module: LightningModule) -> None:
        if self._open is not None:
            name, before = self._open
            now = self._params(pl_module)
            changed = {n for n in now if not torch.equal(now[n], before[n])}
            self.steps.append((name, any(n.startswith("generator.") for n in changed),
                               any(n.startswith("discriminator.") for n in changed)))
            self._open = None

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        self._close(pl_module)
        self._open = ("g" if optimizer is trainer.optimizers[0] else "d", self._params(pl_module))

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        self._close(pl_module)


@pytest.mark.parametrize(("model", "n_critic", "expected"), [
    ("dcgan", 1, ["d", "g", "d", "g", "d", "g"]),
    ("wgan_gp", 2, ["d", "g", "d", "d", "g"]),  # G steps on the first batch of every n_critic
])
def test_both_optimizers_step_and_only_their_net(model: str, n_critic: int, expected: list[str], cfg_train) -> None:
    cfg = cfg_train(f"model={model}", "data=digits", "model.metrics.feature=pixels",
                    "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
                    "test=false", f"model.n_critic={n_critic}", "model.conditional=true")
    with open_dict(cfg):
        cfg.callbacks.probe = {"_target_": "tests.test_generation.StepProbe"}
    _, objects = train(cfg)
    (probe,) = [c for c in objects["trainer"].callbacks if isinstance(c, StepProbe)]
    assert [name for name, _, _ in probe.steps] == expected
    for name, g_changed, d_changed in probe.steps:
        assert (g_changed, d_changed) == ((True, False) if name == "g" else (False, True)), probe.steps


# -- metrics ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def classifier_ckpt(tmp_path_factory) -> Path:
    """archlab's own CNN on digits: the offline feature extractor."""
    out = tmp_path_factory.mktemp("classifier")
    train(compose("train", [*FAST, "trainer.max_epochs=2", "test=false"], out))
    return out / "checkpoints" / "last.ckpt"


def test_fid_is_zero_for_real_vs_real_and_large_for_noise(classifier_ckpt: Path) -> None:
    extractor = load_classifier_features(classifier_ckpt, DIGITS["image_shape"], "digits")
    dm = GenerationDataModule("digits", DIGITS, batch_size=360)
    dm.setup()
    (test, _), (reference, _) = (next(iter(loader)) for loader in dm.test_dataloader())

    def fid(a: torch.Tensor, b: torch.Tensor) -> float:
        metric = FrechetInceptionDistance(Precomputed(extractor.num_features))
        metric.update(extractor(a)[0], real=True)
        metric.update(extractor(b)[0], real=False)
        return float(metric.compute())

    same, floor = fid(test, test), fid(reference, test)
    noise = fid(torch.rand_like(test) * 2 - 1, test)
    assert abs(same) < 1e-3 * floor
    assert noise > 20 * floor, (same, floor, noise)


def test_without_a_classifier_fid_falls_back_to_pixels_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="classifier_ckpt is not set"):
        quality = ImageQualityMetrics(DEFAULT_METRICS, [1, 8, 8], 10)
    assert isinstance(quality.extractor, PixelFeatures) and quality.coverage is None
    assert not quality.state_dict()  # nothing of it lands in checkpoints


def test_features_are_float32_under_a_bf16_autocast() -> None:
    """FID floors (0.7-3.6 in the benchmarks) are below bf16 resolution: features stay float32."""
    quality = ImageQualityMetrics({**DEFAULT_METRICS, "feature": "pixels"}, [1, 8, 8], 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features, _ = quality.features(torch.rand(4, 1, 8, 8, dtype=torch.bfloat16))
    assert features.dtype == torch.float32


def test_class_coverage() -> None:
    cov = ClassCoverage(4)
    cov.update(real_classes=torch.tensor([0, 1, 2, 3] * 25))
    cov.update(generated_classes=torch.tensor([0] * 50 + [1] * 48 + [2] * 2))
    out = cov.compute()
    assert out["coverage"] == 0.5  # class 2 has 2 % of the samples (< a tenth of 25 %), class 3 none
    balanced = ClassCoverage(4)
    balanced.update(torch.tensor([0, 1, 2, 3] * 25), torch.tensor([0, 1, 2, 3] * 25))
    assert balanced.compute()["coverage"] == 1 and balanced.compute()["class_kl"] < out["class_kl"]


def test_classifier_of_another_dataset_is_refused(classifier_ckpt: Path) -> None:
    with pytest.raises(ConfigError, match="trained on digits, not mnist"):
        load_classifier_features(classifier_ckpt, [1, 28, 28], "mnist")


@pytest.fixture(scope="module")
def trained_gan(classifier_ckpt: Path, tmp_path_factory) -> Path:
    """A class-conditional DCGAN on digits, scored with the digits classifier; CSV and W&B offline."""
    out = tmp_path_factory.mktemp("gan")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_DIR", str(out))
        train(compose("train", [*FAST, "model=dcgan", "data=digits", "trainer.max_epochs=2",
                                "trainer.limit_train_batches=5", "trainer.limit_val_batches=2", "logger=[csv,wandb]",
                                "model.conditional=true", f"model.metrics.classifier_ckpt={classifier_ckpt}",
                                "model.metrics.kid_subset_size=100"], out))
    return out


def test_run_logs_metrics_grids_and_weights_only_checkpoint(trained_gan: Path) -> None:
    values = metrics_csv(trained_gan)
    for key in ("test/fid", "test/fid_floor", "test/kid", "test/coverage", "test/class_kl"):
        assert values.get(key), key
    assert 0 <= float(values["test/coverage"]) <= 1 and float(values["test/fid_floor"]) > 0
    assert {"train/d_real_step", "train/d_fake_step", "val/fid"} <= set(values)
    assert (trained_gan / "samples" / "epoch_001.png").stat().st_size > 1000
    assert (trained_gan / "samples.png").stat().st_size > 1000
    (offline,) = (trained_gan / "wandb").glob("offline-run-*")  # the sample grids as W&B images
    assert len(list(offline.glob("files/media/images/train/samples_*.png"))) == 2
    assert list(offline.glob("files/media/images/test/samples_*.png"))

    ckpt_path = trained_gan / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)  # raises on any pickled object
    assert not [k for k in ckpt["state_dict"] if k.startswith("extractor")]  # the classifier is not saved
    assert len(ckpt["optimizer_states"]) == 2
    net_cfg = ckpt["archlab"]["config"]["model"]["net"]
    net = GAN(DCGANGenerator(**{k: v for k, v in net_cfg["generator"].items() if k != "_target_"}),
              DCGANDiscriminator(**{k: v for k, v in net_cfg["discriminator"].items() if k != "_target_"}))
    module = GenerationModule.load_from_checkpoint(ckpt_path, net=net, weights_only=True)
    assert all(torch.equal(v, ckpt["state_dict"][k]) for k, v in module.state_dict().items())


@pytest.mark.slow  # eval.py in a subprocess on the trained GAN
def test_eval_samples_images_and_reproduces_test_metrics(trained_gan: Path, classifier_ckpt: Path, tmp_path: Path) -> None:
    best = next((trained_gan / "checkpoints").glob("epoch_*.ckpt"))
    # model.metrics.* exists in GAN model configs only: name the model, as the checkpoint has it
    proc = run_cli(["eval.py", f"ckpt_path={best}", "model=dcgan", "data=digits",
                    f"model.metrics.classifier_ckpt={classifier_ckpt}", "data.num_samples=50",
                    f"paths.log_dir={tmp_path}", "extras.print_config=false"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = [p.parent for p in tmp_path.rglob("predictions.jsonl")]
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 50 and set(rows[0]) == {"file", "label", "pred", "confidence"}
    assert len(list((run / "samples").glob("*.png"))) == 50
    # one image per test label, in order (conditional), each judged by the classifier
    assert [r["label"] for r in rows] == load_digits_split(0.2, 42)[False][1][:50].tolist()
    assert all(0 <= r["pred"] < 10 and 0.1 <= r["confidence"] <= 1 for r in rows)
    evaluated, trained = metrics_csv(run), metrics_csv(trained_gan)
    for key in ("test/fid", "test/fid_floor", "test/coverage"):
        assert float(evaluated[key]) == pytest.approx(float(trained[key]), rel=1e-4), key


# -- resume -----------------------------------------------------------------------------------
def test_resume_reproduces_uninterrupted_run(tmp_path: Path) -> None:
    """WGAN-GP (gradient penalty, n_critic, conditional, per-epoch LR decay of both optimizers):
    interrupted after epoch 1 and resumed == 2 uninterrupted epochs, bit for bit, for G, D, the
    EMA generator, both optimizers and both schedulers."""
    common = [*FAST, "model=wgan_gp", "data=digits", "model.metrics.feature=pixels", "trainer.deterministic=true", "trainer.max_epochs=2",
              "trainer.limit_train_batches=7", "trainer.limit_val_batches=2", "model.n_critic=3", "model.conditional=true", "test=false",
              "model.scheduler={_target_: torch.optim.lr_scheduler.ExponentialLR, _partial_: true, gamma: 0.5}"]
    full, interrupted, resumed = full_interrupted_resumed(common, tmp_path)
    a, b = torch.load(full, weights_only=True), torch.load(resumed, weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    differ = [k for k in a["state_dict"] if not torch.equal(a["state_dict"][k], b["state_dict"][k])]
    assert not differ, differ
    for opt_a, opt_b in zip(a["optimizer_states"], b["optimizer_states"], strict=True):
        assert all(torch.equal(opt_a["state"][i]["exp_avg"], opt_b["state"][i]["exp_avg"]) for i in opt_a["state"])
    assert [s["last_epoch"] for s in a["lr_schedulers"]] == [s["last_epoch"] for s in b["lr_schedulers"]] == [2, 2]
    # and the interrupted run really was one epoch behind
    c = final_weights(interrupted)
    assert not torch.equal(a["state_dict"]["g_ema.module.net.0.weight"], c["g_ema.module.net.0.weight"])
