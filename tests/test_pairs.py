"""Every model x compatible data pair of every task, every experiment and every debug config,
discovered from the configs alone: one batch of train, validation and test (fast_dev_run) on
synthetic stand-ins of the data files. A new model, dataset or experiment is tested here with no
test code added."""

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from src.utils.config import compose, group_options
from tests.conftest import (
    QUIET,
    compatible_pairs,
    synthetic_pairs,
    synthetic_pairs_dir,
    write_image_folder,
    write_vqa_folder,
)
from train import train

# Small batches, a validation split small enough for the synthetic image sets, short summaries;
# each applied where the composed config has the key. A task without an entry trains at its defaults.
TASK_SETTINGS = {
    "classification": ["data.batch_size=16", "data.val_size=16"],
    "generation": ["data.batch_size=16", "data.val_size=16", "model.metrics.feature=pixels"],
    "vqa": ["data.batch_size=8"],
    "contrastive": ["data.batch_size=16", "data.val_size=16"],
    "summarization": ["data.batch_size=4", "data.tokenizer.vocab_size=400", "data.max_source_len=64",
                      "data.max_target_len=24", "model.generation.max_len=20", "model.generation.min_len=0",
                      "model.val_generation.max_len=20"],
}
# Models whose default is a hub download: the same loading path on a tiny model saved in the test.
OFFLINE = {"hf_seq2seq": lambda hf_dir: [f"model.net.name={hf_dir}", f"data.tokenizer.name={hf_dir}"],
           "torchvision": lambda _: ["model.net.weights=null"]}  # its published weights are a download
# span corruption needs sentinel tokens, which the tiny BART's tokenizer (a BPE without them) lacks
UNFIT = {("hf_seq2seq", "cnndm_wikitext_denoising")}
SLOW = {("dcgan", "cifar10"), ("wgan_gp", "cifar10"), ("sagan", "cifar10"),
        ("dcgan", "easy_vqa_images"), ("wgan_gp", "easy_vqa_images"), ("sagan", "easy_vqa_images"),
        # (above) RGB GANs on 32x32 and 64x64 images: long tests
        # an ImageNet-sized ResNet-18: digits (the default data) stays in the default suite
        ("torchvision", "mnist"), ("torchvision", "fashion_mnist"), ("torchvision", "cifar10"),
        # SimCLR's ResNet-9 encoder: model=simclr covers the contrastive task in the default suite,
        # on the two datasets it had before the task/data split
        *(("simclr_resnet9", d) for d in ("digits", "mnist", "fashion_mnist", "cifar10")),
        ("simclr", "mnist"), ("simclr", "cifar10"),
        # a user's folder (32x32, RGB): model=cnn covers it in the default suite (test_image_folder.py
        # runs cnn, dcgan, simclr and cnn_regressor on a folder too)
        *((m, "image_folder") for m in ("dcgan", "wgan_gp", "sagan", "torchvision", "simclr_resnet9", "resnet18",
                                        "dense", "resnet9", "vit", "simclr", "cnn_regressor")),
        # the regression task: digits in the default suite
        *(("cnn_regressor", d) for d in ("mnist", "fashion_mnist", "cifar10"))}


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """paths.data_dir of the run: synthetic CNN/DailyMail files in both layouts, a folder of images
    for data=image_folder, one of images and questions for data=vqa_folder (the other image data
    is replaced by the synthetic_images fixture, easy-VQA comes from its package)."""
    root = tmp_path / "data"
    write_image_folder(root / "images")
    write_vqa_folder(root / "vqa")
    synthetic_pairs_dir(root / "cnn_dailymail")
    synthetic_pairs_dir(root / "cnn_dailymail" / "pg_tokenized")
    wikitext = "".join(f" = Title {i} = \n\n {pair['article']} \n" for i, pair in enumerate(synthetic_pairs(24, seed=3)))
    (root / "wikitext-2-raw").mkdir()
    (root / "wikitext-2-raw" / "train.txt").write_text(wikitext)
    return root


@pytest.mark.parametrize(("model", "data"), [pytest.param(m, d, marks=[pytest.mark.slow] if (m, d) in SLOW else [])
                                             for m, d in compatible_pairs() if (m, d) not in UNFIT])
def test_fast_dev_run(model: str, data: str, tmp_path: Path, data_root: Path, synthetic_images, tiny_hf_dir: Path) -> None:
    overrides = [f"model={model}", f"data={data}", f"paths.data_dir={data_root}", "trainer.fast_dev_run=true",
                 "data.num_workers=0", "data.pin_memory=false", *QUIET]
    cfg = compose("train", overrides, tmp_path / "run")
    settings = [o for o in TASK_SETTINGS.get(cfg.task.name, []) if OmegaConf.select(cfg, o.split("=")[0]) is not None]
    overrides += [*settings, *OFFLINE.get(model, lambda _: [])(tiny_hf_dir)]
    trains = any(key.startswith("optimizer") for key in cfg.model)  # a model without an optimizer has no weights
    metrics, _ = train(compose("train", [*overrides, f"train={trains}"], tmp_path / "run"))
    tested = {k: float(v) for k, v in metrics.items() if k.startswith("test/")}
    assert tested and all(map(torch.isfinite, map(torch.tensor, tested.values()))), metrics
    if trains:
        assert any(k.startswith("train/") and "loss" in k for k in metrics), metrics


# What an experiment loads from the hub, replaced by the tiny local model and its tokenizer's ids.
OFFLINE_EXPERIMENTS = {"cnndm_t5_small": lambda hf_dir: [
    f"model.net.name={hf_dir}", f"data.tokenizer.name={hf_dir}", "data.provides.vocab_size=400", "data.provides.bos_id=1",
    "data.provides.eos_id=2"]}


# the longest experiments (a ResNet-18 on 32x32 images, the full-size Transformer) run in the slow suite
SLOW_EXPERIMENTS = {"cifar10_resnet18", "cnndm_transformer"}


@pytest.mark.filterwarnings("ignore:model.metrics.classifier_ckpt is not set")  # GAN experiments, no classifier here
@pytest.mark.parametrize("experiment", [pytest.param(e, marks=pytest.mark.slow) if e in SLOW_EXPERIMENTS else e
                                        for e in group_options("experiment")])
def test_every_experiment_runs(experiment: str, tmp_path: Path, data_root: Path, synthetic_images, tiny_hf_dir: Path) -> None:
    """Each experiment as written (one batch of each stage), on the synthetic stand-ins."""
    # loader workers are a machine setting (cifar10_resnet18 asks for 4), not part of the recipe
    overrides = [f"experiment={experiment}", f"paths.data_dir={data_root}", "trainer.fast_dev_run=true", *QUIET,
                 "data.num_workers=0", *OFFLINE_EXPERIMENTS.get(experiment, lambda _: [])(tiny_hf_dir)]
    if OmegaConf.select(compose("train", overrides, tmp_path / "run"), "distill.teacher_ckpt", default="") is None:
        # a distilling experiment takes its teacher on the command line: the same experiment
        # without distillation, trained for one step, stands in for it
        teacher = [o for o in overrides if o != "trainer.fast_dev_run=true"]
        cfg = compose("train", [*teacher, "trainer.max_epochs=1", "trainer.limit_train_batches=1",
                                "trainer.limit_val_batches=1", "test=false"], tmp_path / "teacher")
        cfg.distill = None
        train(cfg)
        overrides.append(f"distill.teacher_ckpt={tmp_path / 'teacher' / 'checkpoints' / 'last.ckpt'}")
    metrics, _ = train(compose("train", overrides, tmp_path / "run"))
    tested = [float(v) for k, v in metrics.items() if k.startswith("test/")]
    assert tested and all(map(math.isfinite, tested)), metrics


@pytest.mark.filterwarnings("ignore:You requested to overfit but enabled train dataloader shuffling")
@pytest.mark.parametrize("debug", group_options("debug"))
def test_every_debug_config_runs(debug: str, tmp_path: Path) -> None:
    """Each debug config on the default data (debug configs turn callbacks and loggers off)."""
    metrics, _ = train(compose("train", [f"debug={debug}", "trainer.enable_progress_bar=false",
                                         "extras.print_config=false"], tmp_path / "run"))
    assert math.isfinite(float(metrics["test/acc"])), metrics
