"""Starting from trained weights: partial loading and its table (init=checkpoint), head
replacement, freezing then unfreezing (callbacks=finetuning), layer-wise learning rates
(model.lr_scales), few-label subsets (data.label_fraction), and the same under DDP."""

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from urllib.error import URLError

import pytest
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.strategies import DDPStrategy

from src.callbacks.finetuning import FreezeUnfreeze
from src.core.errors import CheckpointError, ConfigError
from src.core.prefix import rename
from src.core.weights import load_weights, published_weights
from src.data.classification import ClassificationDataModule
from src.models.nets.cnn import SimpleCNN
from src.models.nets.hf_seq2seq import HFSeq2Seq
from src.models.nets.torchvision_models import TorchvisionClassifier
from src.models.pretrained import read_state_dict
from tests.conftest import (
    QUIET,
    final_weights,
    full_interrupted_resumed,
    metrics_csv,
    run_ok,
)
from train import train

DIGITS = {"tasks": ["classification"], "image_shape": [1, 8, 8], "num_classes": 10}


def test_rename_moves_keys_under_the_longest_matching_prefix() -> None:
    state = {"encoder.0.weight": 1, "encoder.0.proj.weight": 2, "encoderx.weight": 3, "head.weight": 4}
    renamed = rename(state, {"encoder.": "features.", "encoder.0.proj": "adapter", "": "unused."})
    assert renamed == {"features.0.weight": 1, "adapter.weight": 2, "unused.encoderx.weight": 3, "unused.head.weight": 4}
    assert rename({"a.w": 1}, {"": "net"}) == {"net.a.w": 1}


def test_partial_load_reports_every_key_and_refuses_a_load_of_nothing() -> None:
    """A 5-class net's weights into a 10-class net: the features load, the head's shape differs
    (it keeps its fresh init), an excluded layer stays fresh, extra keys are ignored."""
    source = SimpleCNN(1, 5, image_size=8).state_dict() | {"projector.weight": torch.ones(3)}
    net = SimpleCNN(1, 10, image_size=8)
    fresh_head = net.classifier[4].weight.clone()
    report = load_weights(net, source, "src", exclude=["classifier.1"])
    assert set(report.loaded) == {k for k in source if k.startswith("features.")}
    assert set(report.mismatched) == {"classifier.4.weight", "classifier.4.bias"}
    assert report.mismatched["classifier.4.weight"] == ([5, 128], [10, 128])
    assert set(report.excluded) == {"classifier.1.weight", "classifier.1.bias"}
    assert report.unexpected == ["projector.weight"] and report.missing == []
    assert torch.equal(net.features[0].weight, source["features.0.weight"])
    assert torch.equal(net.classifier[4].weight, fresh_head)
    table = report.table()
    assert "| loaded | 12 |" in table and "classifier.4.weight [5, 128] -> [10, 128]" in table and "projector.*" in table
    with pytest.raises(ConfigError, match=r"no weight of src fits SimpleCNN .* init.prefix_map"):
        load_weights(net, {"encoder.0.weight": source["features.0.weight"]}, "src")


@pytest.fixture
def pretrained(tmp_path: Path) -> Path:
    """The state_dict of a 5-class SimpleCNN (another task's head) with non-trivial BatchNorm statistics."""
    net = SimpleCNN(1, 5, image_size=8)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    torch.save(net.state_dict(), tmp_path / "pretrained.pt")
    return tmp_path / "pretrained.pt"


@pytest.mark.parametrize("unfreeze_at_epoch", ["null", "1"])
def test_init_then_frozen_features_stay_and_unfrozen_ones_train(unfreeze_at_epoch: str, pretrained: Path, cfg_train) -> None:
    """init=checkpoint loads the features (the table is saved), the new head trains; frozen
    features, BatchNorm statistics included, end the run exactly as loaded; unfrozen at epoch 1
    they train from then on. The fine-tuned checkpoint loads with weights_only=True."""
    cfg = cfg_train("trainer.max_epochs=2", "trainer.limit_train_batches=5", "init=checkpoint", f"init.path={pretrained}", "callbacks=[default,finetuning]",
                    "callbacks.finetuning.modules=[features]", f"callbacks.finetuning.unfreeze_at_epoch={unfreeze_at_epoch}",
                    "test=false")
    metrics, objects = train(cfg)
    out = Path(cfg.paths.output_dir)
    source = torch.load(pretrained, weights_only=True)
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    weights = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    features = [k for k in source if k.startswith("features.")]
    unchanged = [k for k in features if torch.equal(weights[k], source[k])]
    if unfreeze_at_epoch == "null":
        assert unchanged == features  # weights, biases and BatchNorm running statistics
        assert not objects["model"].net.features[1].training  # normalising with the pre-trained statistics
    else:
        assert not any(k.endswith("weight") for k in unchanged), unchanged
    assert weights["classifier.4.weight"].shape == (10, 128)
    report = json.loads((out / "init_weights.json").read_text())[0]
    assert set(report["mismatched"]) == {"classifier.4.weight", "classifier.4.bias"}
    assert "| loaded |" in (out / "init_weights.md").read_text()
    assert ckpt["archlab"]["config"]["init"]["path"] == str(pretrained)


def test_lr_scales_reach_the_optimizer_and_its_one_cycle_peaks(cfg_train) -> None:
    cfg = cfg_train("model.lr_scales={features: 0.1, features.0: 0.01}", "trainer.limit_train_batches=2", "test=false")
    _, objects = train(cfg)
    groups = {g["name"]: g for g in objects["trainer"].optimizers[0].param_groups}
    assert set(groups) == {"features", "features.0", "rest"}
    peak = cfg.model.optimizer.lr
    assert groups["rest"]["max_lr"] == pytest.approx(peak)
    assert groups["features"]["max_lr"] == pytest.approx(0.1 * peak)
    assert groups["features.0"]["max_lr"] == pytest.approx(0.01 * peak)
    net = objects["model"].net
    assert {id(p) for p in groups["features.0"]["params"]} == {id(p) for p in net.features[0].parameters()}
    assert len(groups["rest"]["params"]) == len(list(net.classifier.parameters()))


def test_label_fraction_keeps_the_same_share_of_every_class() -> None:
    dm = ClassificationDataModule("digits", DIGITS, val_size=0.1, label_fraction=0.1)
    dm.setup("fit")
    full = ClassificationDataModule("digits", DIGITS, val_size=0.1)
    full.setup("fit")
    labels = dm.data_train.dataset.targets
    kept, every = labels[dm.data_train.indices].bincount(), labels[full.data_train.indices].bincount()
    assert ((kept - 0.1 * every).abs() <= 0.5).all(), (kept, every)
    assert dm.data_val.indices == full.data_val.indices and len(dm.data_test) == len(full.data_test)
    again = ClassificationDataModule("digits", DIGITS, val_size=0.1, label_fraction=0.1)
    again.setup("fit")
    assert again.data_train.indices == dm.data_train.indices  # seeded by split_seed, not the training seed


def test_unfreezing_under_ddp_needs_find_unused_parameters() -> None:
    trainer = SimpleNamespace(strategy=DDPStrategy(find_unused_parameters=False))
    module = SimpleNamespace(net=SimpleCNN(1, 10, image_size=8))
    with pytest.raises(ConfigError, match="task.ddp_find_unused_parameters=true"):
        FreezeUnfreeze(["features"], unfreeze_at_epoch=1).setup(trainer, module, "fit")
    FreezeUnfreeze(["features"]).setup(trainer, module, "fit")  # frozen for good: Lightning's freeze before wrapping
    assert not any(p.requires_grad for p in module.net.features.parameters())


class ParameterDigest(Callback):
    """Writes each process's parameter digest at the end of fit: DDP keeps them identical."""

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        digest = hashlib.sha1(b"".join(p.detach().numpy().tobytes() for p in pl_module.parameters())).hexdigest()
        Path(trainer.default_root_dir, f"digest_{trainer.global_rank}.txt").write_text(digest)


@pytest.mark.slow  # two DDP processes
def test_unfrozen_modules_stay_in_sync_across_ddp_processes(pretrained: Path, tmp_path: Path) -> None:
    """Modules frozen at the start and unfrozen later are averaged across processes like the rest
    (frozen before DDP wraps the model, each process would train its own copy of them)."""
    run = run_ok("train.py", ["trainer=ddp_cpu", "trainer.max_epochs=2", "data.batch_size=32", "init=checkpoint",
                              f"init.path={pretrained}", "callbacks=[default,finetuning]",
                              "callbacks.finetuning.modules=[features]", "callbacks.finetuning.unfreeze_at_epoch=1",
                              "task.ddp_find_unused_parameters=true", "+callbacks.digest._target_=tests.test_finetuning.ParameterDigest",
                              "test=false"], tmp_path / "logs")
    digests = {p.read_text() for p in run.glob("digest_*.txt")}
    assert len(list(run.glob("digest_*.txt"))) == 2 and len(digests) == 1, digests
    assert float(metrics_csv(run)["val/acc"]) > 0.5


def test_torchvision_backbone_gets_a_new_head_and_offline_weights_are_one_line(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    net = TorchvisionClassifier("resnet18", 10, in_channels=1, weights=None)
    assert net.model.fc.out_features == 10 and net(torch.randn(2, 1, 32, 32)).shape == (2, 10)

    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(ConfigError, match="model.net.weights=DEFAULT of resnet18 could not be loaded .* model.net.weights=null"):
        TorchvisionClassifier("resnet18", 10, in_channels=1)
    with pytest.raises(ConfigError, match="model.net.name=resnet1 is not a torchvision classification model"):
        TorchvisionClassifier("resnet1", 10)


def test_a_classifiers_convolutions_initialise_the_vqa_image_encoder(tmp_path: Path, cfg_train) -> None:
    """Across tasks with a prefix map: SimpleCNN's ``features`` into VQANet's ``image_encoder``."""
    classifier = SimpleCNN(3, 10, image_size=64, channels=(16, 32, 64))
    torch.save(classifier.state_dict(), tmp_path / "classifier.pt")
    cfg = cfg_train("model=fusion", "data=easy_vqa", "init=checkpoint", f"init.path={tmp_path / 'classifier.pt'}",
                    "init.prefix_map={features: image_encoder}", "train=false", "test=false")
    _, objects = train(cfg)
    encoder = objects["model"].net.image_encoder.state_dict()
    assert all(torch.equal(v, classifier.features.state_dict()[k]) for k, v in encoder.items())
    report = json.loads((Path(cfg.paths.output_dir) / "init_weights.json").read_text())[0]
    assert len(report["loaded"]) == len(encoder) and all(k.startswith("classifier.") for k in report["unexpected"])


def test_hugging_face_weights_from_a_local_folder_come_with_the_same_table(tiny_hf_dir: Path) -> None:
    """from_pretrained by local path (a tiny BART saved like a hub model): every weight loaded,
    reported like a checkpoint's, and equal to the saved ones."""
    from transformers import BartForConditionalGeneration

    net = HFSeq2Seq(str(tiny_hf_dir), pad_id=0)
    (report,) = published_weights(net)
    saved = BartForConditionalGeneration.from_pretrained(tiny_hf_dir).state_dict()
    assert report.loaded and not report.missing and not report.mismatched
    assert set(report.loaded) == set(net.model.state_dict())
    assert all(torch.equal(net.model.state_dict()[k], saved[k]) for k in report.loaded)
    assert f"Initial weights from {tiny_hf_dir}" in report.table()


@pytest.mark.slow  # three training runs
def test_resumed_fine_tuning_equals_an_uninterrupted_one(pretrained: Path, tmp_path: Path) -> None:
    """Interrupted while its features are frozen and resumed (ckpt_path: the init source is not
    read again), a fine-tuning run unfreezes on schedule and ends bit for bit where an
    uninterrupted one does."""
    common = [*QUIET, "trainer.deterministic=true", "trainer.max_epochs=3", "test=false", "init=checkpoint",
              f"init.path={pretrained}", "callbacks=[default,finetuning]", "callbacks.finetuning.modules=[features]",
              "callbacks.finetuning.unfreeze_at_epoch=2", "model.lr_scales={features: 0.3}"]
    full, interrupted, resumed = full_interrupted_resumed(common, tmp_path)
    a, b = final_weights(full), final_weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    frozen_then = final_weights(interrupted)
    assert torch.equal(frozen_then["net.features.0.weight"], torch.load(pretrained, weights_only=True)["features.0.weight"])
    assert not torch.equal(a["net.features.0.weight"], frozen_then["net.features.0.weight"])


def test_an_unreadable_init_source_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "truncated.ckpt").write_bytes(b"PK\x03\x04 not a zip")
    torch.save([torch.ones(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"truncated.ckpt is not a readable checkpoint with weights_only=True"):
        read_state_dict(tmp_path / "truncated.ckpt")
    with pytest.raises(CheckpointError, match=r"list.pt holds neither a Lightning checkpoint nor a state_dict"):
        read_state_dict(tmp_path / "list.pt")
