"""Sample quality of generated images: feature extractors for FID/KID, and class coverage.

InceptionV3 weights cannot be downloaded offline, so the default features come from a
classifier trained by archlab itself on the same dataset (its penultimate layer: a "Fréchet
classifier distance"). Its logits also judge which class each generated image shows (mode
coverage). Every extractor takes generator-space images, ``(B, C, H, W)`` in [-1, 1], and
returns ``(features, logits or None)``.

torchmetrics' FID and KID are fed those features through :class:`Precomputed`, so features are
computed once per batch however many metrics (model and real-vs-real floor) use them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torchmetrics import Metric
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from src.core import checkpoints
from src.core.errors import CheckpointError, ConfigError, DataError, describe
from src.core.output import output_layer
from src.data.sources.images import image_source

FEATURES = ("classifier", "inception", "pixels")
# Feature settings when none are configured: FID/KID on a classifier of the same dataset.
DEFAULT_METRICS = {"feature": "classifier", "classifier_ckpt": None, "inception_weights": None, "dataset": None,
                   "kid_subset_size": 1000, "kid_subsets": 100, "seed": 0}


class Precomputed(nn.Module):
    """Identity "feature extractor" for torchmetrics' FID/KID, whose ``update`` then takes
    features instead of images."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class ClassifierFeatures(nn.Module):
    """Penultimate-layer features and logits of an archlab classifier.

    Generator images are mapped to what the classifier was trained on: [-1, 1] to [0, 1],
    resized to its image size, normalised with its dataset's statistics. The features are the
    input of the net's output layer, its last ``nn.Linear`` (captured by a hook, so any classifier net works).
    """

    def __init__(self, net: nn.Module, image_shape: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 num_classes: int | None = None) -> None:
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.image_shape = list(image_shape)
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        _, last_linear = output_layer(net, num_classes)
        self.num_features = last_linear.in_features
        self._captured: torch.Tensor | None = None
        last_linear.register_forward_hook(self._capture)

    def _capture(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        self._captured = inputs[0]

    def train(self, mode: bool = True) -> ClassifierFeatures:
        return super().train(False)  # a fixed judge: BatchNorm/dropout always in eval mode

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (images + 1) / 2
        if list(x.shape[-2:]) != self.image_shape[1:]:
            x = F.interpolate(x, size=self.image_shape[1:], mode="bilinear", antialias=True, align_corners=False)
        logits = self.net((x - self.mean) / self.std)
        return self._captured.flatten(1), logits


class InceptionFeatures(nn.Module):
    """The 2048-d pool features of FID's reference InceptionV3 (torch-fidelity's port, as used by
    torchmetrics): grayscale images are repeated to RGB, [-1, 1] becomes uint8."""

    num_features = 2048

    def __init__(self, weights_path: str | None = None) -> None:
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        try:
            self.net = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                          feature_extractor_weights_path=weights_path)
        except Exception as e:  # torch.hub raises URLError/HTTPError/OSError/RuntimeError offline
            raise DataError(
                f"InceptionV3 weights could not be loaded ({describe(e)}); offline, set "
                "model.metrics.inception_weights=<path to pt_inception-2015-12-05-6726825d.pth> or use "
                "model.metrics.feature=classifier with model.metrics.classifier_ckpt=<classifier .ckpt>"
            ) from e

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x).flatten(1), None


class PixelFeatures(nn.Module):
    """Raw pixels, average-pooled to at most 8x8: a crude, classifier-free stand-in that keeps
    ``val/fid`` defined (and checkpointing working) when no classifier is configured. Small on
    purpose: FID's matrix square root costs O(d^3) (it grows with the cube of the feature count)."""

    def __init__(self, image_shape: Sequence[int], max_size: int = 8) -> None:
        super().__init__()
        c, h, w = image_shape
        self.size = (min(h, max_size), min(w, max_size))
        self.num_features = c * self.size[0] * self.size[1]

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, None]:
        return F.adaptive_avg_pool2d(images, self.size).flatten(1), None


def load_classifier_features(ckpt_path: str | Path, image_shape: Sequence[int], dataset: str | None = None) -> ClassifierFeatures:
    """Rebuild the classification net recorded in an archlab checkpoint (``weights_only``) and
    wrap it as a feature extractor for images of ``image_shape``."""
    option = "model.metrics.classifier_ckpt"
    ckpt = checkpoints.load(ckpt_path, option)
    record = checkpoints.record(ckpt, ckpt_path, option)
    config = record.config
    if record.task != "classification":
        raise CheckpointError(f"model.metrics.classifier_ckpt={ckpt_path} is not an image classification checkpoint; "
                              "train one with `python train.py model=cnn data=<dataset>`")
    data = config["data"]
    if dataset is not None and data.get("dataset") != dataset:
        raise ConfigError(f"model.metrics.classifier_ckpt={ckpt_path} was trained on {data.get('dataset')}, "
                          f"not {dataset}; features of another dataset make FID meaningless")
    shape = list(data["provides"]["image_shape"])
    if shape[0] != image_shape[0]:
        raise ConfigError(f"the classifier in {ckpt_path} takes {shape[0]}-channel images, the generator makes "
                          f"{image_shape[0]}-channel ones")
    net = checkpoints.build_net(ckpt, ckpt_path, option)
    source = image_source(data["dataset"])
    return ClassifierFeatures(net, shape, source.mean, source.std, data["provides"].get("num_classes"))


def build_feature_extractor(
    feature: str, image_shape: Sequence[int], classifier_ckpt: str | None = None,
    inception_weights: str | None = None, dataset: str | None = None,
) -> nn.Module:
    """The extractor named by ``model.metrics.feature`` (see :data:`FEATURES`)."""
    if feature == "classifier":
        if not classifier_ckpt:
            raise ConfigError("model.metrics.feature=classifier needs model.metrics.classifier_ckpt")
        return load_classifier_features(classifier_ckpt, image_shape, dataset)
    if feature == "inception":
        return InceptionFeatures(inception_weights)
    if feature == "pixels":
        return PixelFeatures(image_shape)
    raise ConfigError(f"model.metrics.feature={feature!r} is not one of {', '.join(FEATURES)}")


class ClassCoverage(Metric):
    """Mode coverage: the class histogram of generated images, as judged by a classifier, against
    the real class histogram.

    ``coverage``: fraction of classes that get at least a tenth of their real share of the
    generated images (a few stray predictions do not make a mode). ``class_kl``: KL(real ||
    generated) in nats, with add-one smoothing of the generated counts, so a missing class costs
    a large but finite amount.
    """

    full_state_update = False

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("generated", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("real", torch.zeros(num_classes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, generated_classes: torch.Tensor | None = None, real_classes: torch.Tensor | None = None) -> None:
        if generated_classes is not None:
            self.generated += torch.bincount(generated_classes, minlength=self.num_classes).to(self.generated)
        if real_classes is not None:
            self.real += torch.bincount(real_classes, minlength=self.num_classes).to(self.real)

    def compute(self) -> dict[str, torch.Tensor]:
        real = self.real / self.real.sum()
        share = self.generated / self.generated.sum()
        smoothed = (self.generated + 1) / (self.generated.sum() + self.num_classes)
        present = real > 0
        return {
            "coverage": (share[present] >= real[present] / 10).double().mean(),
            "class_kl": (real[present] * (real[present] / smoothed[present]).log()).sum(),
        }


class ImageQualityMetrics(nn.Module):
    """Every sample-quality metric of a generation run, in one feature space (``cfg``, see
    :data:`DEFAULT_METRICS`): ``val_fid`` (val images vs as many samples), at test ``test_fid``/
    ``test_kid`` against the test images and ``floor_fid``/``floor_kid`` (as many training images
    vs the test images, same features), and with a classifier ``coverage``.

    Without a classifier checkpoint the features fall back to pixels, with a warning, so
    ``val/fid`` (the watched metric) stays defined. The extractor is not a registered submodule:
    it stays out of the state_dict (checkpoints load without the classifier, and a run can be
    scored with another one) and out of device moves (:meth:`features` moves it).
    """

    def __init__(self, cfg: Mapping[str, Any], image_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        feature = cfg["feature"]
        if feature == "classifier" and not cfg["classifier_ckpt"]:
            rank_zero_warn(
                "model.metrics.classifier_ckpt is not set: FID/KID on classifier features and class coverage are "
                "skipped; val/fid and test/fid fall back to raw pixels (crude, not comparable with classifier FIDs). "
                "Train a classifier (`python train.py model=cnn data=<dataset>`) and pass its checkpoint."
            )
            feature = "pixels"
        extractor = build_feature_extractor(feature, image_shape, cfg["classifier_ckpt"], cfg["inception_weights"],
                                            cfg["dataset"])
        object.__setattr__(self, "extractor", extractor)
        d = extractor.num_features
        kid = {"subsets": cfg["kid_subsets"], "subset_size": cfg["kid_subset_size"]}
        self.val_fid = FrechetInceptionDistance(Precomputed(d))
        self.test_fid, self.floor_fid = FrechetInceptionDistance(Precomputed(d)), FrechetInceptionDistance(Precomputed(d))
        self.test_kid = KernelInceptionDistance(Precomputed(d), **kid)
        self.floor_kid = KernelInceptionDistance(Precomputed(d), **kid)
        self.coverage = ClassCoverage(num_classes) if feature == "classifier" else None

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(features, classifier logits or None)`` of generator-space images, in float32 even
        under a bf16/fp16 autocast trainer: FID's floor values are below bf16 resolution."""
        self.extractor.to(images.device)
        with torch.autocast(images.device.type, enabled=False):
            return self.extractor(images.float())
