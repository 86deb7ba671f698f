"""Every config composes and resolves; the compatibility check; config wiring."""

from pathlib import Path

import hydra
import pytest
from omegaconf import OmegaConf

from src.core.errors import ConfigError
from src.utils.config import (
    CONFIG_DIR,
    check_compatibility,
    compose,
    group_options,
    option_tasks,
    refuse_removed_options,
)
from tests.conftest import compatible_pairs, run_cli, write_image_folder, write_vqa_folder


@pytest.mark.parametrize("group", ["trainer", "logger", "callbacks", "debug", "experiment", "hparams_search"])
def test_every_option_composes(group: str, tmp_path: Path) -> None:
    for name in group_options(group):
        cfg = compose("train", [f"{group}={name}"], tmp_path)
        OmegaConf.to_container(cfg.trainer, resolve=True)
        OmegaConf.to_container(cfg.model, resolve=True)
        OmegaConf.to_container(cfg.data, resolve=True)


@pytest.mark.parametrize("entry", ["train", pytest.param("eval", marks=pytest.mark.slow)])
def test_every_pair_resolves(entry: str, tmp_path: Path) -> None:
    """Each compatible model/data pair composes under both entry points with every interpolation
    (``${data.provides.*}``) resolved: a model reading what its data does not provide fails here."""
    write_image_folder(tmp_path / "data" / "images", per_class=4)  # data=image_folder's provides come from files
    write_vqa_folder(tmp_path / "data" / "vqa", n=10)  # and data=vqa_folder's
    for model, data in compatible_pairs():
        cfg = compose(entry, [f"model={model}", f"data={data}", f"paths.data_dir={tmp_path / 'data'}"], tmp_path)
        check_compatibility(cfg, {"model": model, "data": data})
        OmegaConf.to_container(cfg.model, resolve=True)
        OmegaConf.to_container(cfg.data, resolve=True)


def test_every_model_picks_a_task_and_every_data_serves_one() -> None:
    """Inherited configs (wgan_gp from dcgan, mnist from digits) pick their task through the
    composed config; every task has a config, at least one model and one dataset."""
    models, data = option_tasks("model"), option_tasks("data")
    assert all(len(t) == 1 for t in models.values()) and all(data.values()), (models, data)
    tasks = {t for (t,) in models.values()}
    assert tasks == {t for served in data.values() for t in served} == set(group_options("task"))
    assert models["wgan_gp"] == ["generation"] and data["mnist"] == ["classification", "contrastive", "generation", "regression"]


def test_the_task_comes_from_the_model(tmp_path: Path) -> None:
    """``model=dcgan data=mnist``: the GAN's task swaps MNIST's DataModule and batch size; the
    model config holds constructor arguments only, so ``instantiate`` builds it bare."""
    cfg = compose("train", ["model=dcgan", "data=mnist"], tmp_path)
    assert cfg.task.name == "generation" and cfg.task.watch.metric == "val/fid"
    assert cfg.data._target_ == "src.data.generation.GenerationDataModule" and cfg.data.batch_size == 64
    assert cfg.model._target_ == "src.models.generation.GenerationModule"
    assert compose("train", ["model=cnn", "data=mnist"], tmp_path).data.batch_size == 128
    module = hydra.utils.instantiate(compose("train", ["model=dense"], tmp_path).model)
    assert type(module).__name__ == "ClassificationModule"


def test_mismatch_lists_compatible_options(tmp_path: Path) -> None:
    cfg = compose("train", [], tmp_path)
    cfg.data.provides.tasks = ["summarization"]
    with pytest.raises(ConfigError) as e:
        check_compatibility(cfg, {"model": "cnn", "data": "toy_text"})
    msg = str(e.value)
    assert "model=cnn" in msg and "data=toy_text" in msg
    assert "Data for model=cnn: cifar10, digits, fashion_mnist, image_folder, mnist." in msg
    assert "Models for data=toy_text: hf_seq2seq, lead3, lstm, transformer." in msg


def test_a_task_the_model_is_not_built_for_is_one_line(tmp_path: Path) -> None:
    cfg = compose("train", ["model=cnn", "task=generation"], tmp_path)
    with pytest.raises(ConfigError, match=r"model=cnn is built for task=classification, not task=generation. "
                                          r"Models for task=generation: dcgan, sagan, wgan_gp."):
        check_compatibility(cfg, {"model": "cnn", "data": "digits", "task": "generation"})


@pytest.mark.slow  # keeps the default suite under 10 minutes
def test_a_removed_spelling_names_the_new_one() -> None:
    """From the command line, before Hydra composes (every entry point calls the same check)."""
    proc = run_cli(["train.py", "model=dcgan", "data=mnist_generation"])
    assert proc.returncode != 0 and proc.stderr.strip() == (
        "ConfigError: data=mnist_generation is now data=mnist: the task comes from the model (model=dcgan trains a "
        "GAN on any image data), or set task=<name>")
    with pytest.raises(SystemExit, match=r"^ConfigError: model.distiller.alpha is now distill.alpha \(distill=kd wraps "
                                         r"the training loss; it is no longer part of the model\)$"):
        refuse_removed_options(["-m", "model.distiller.alpha=0.5,0.9"])
    refuse_removed_options(["data=mnist", "model=dcgan", "distill.alpha=0.5"])  # today's spellings pass


def test_data_dir_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "somewhere"))
    cfg = compose("train", ["data=mnist"], tmp_path)
    assert cfg.data.data_dir == str(tmp_path / "somewhere")


def test_experiments_state_only_what_differs() -> None:
    """An experiment that restates its model's or data's default drifts when the default changes:
    every leaf an experiment sets under model/data must differ from what it overrides."""
    for name in group_options("experiment"):
        raw = OmegaConf.load(CONFIG_DIR / "experiment" / f"{name}.yaml")
        for group in ("model", "data"):
            if group not in raw:
                continue
            choice = next(d[f"override /{group}"] for d in composed_defaults(name) if f"override /{group}" in d)
            base = compose("train", [f"{group}={choice}"], Path("/unused"))[group]
            for key, value in flatten(OmegaConf.to_container(raw[group])).items():
                assert OmegaConf.select(base, key) != value, f"experiment={name} restates {group}.{key}={value}"


def composed_defaults(name: str) -> list[dict]:
    """The defaults list of an experiment, following experiments it inherits from."""
    raw = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "experiment" / f"{name}.yaml"))
    entries = [d for d in raw.get("defaults", []) if isinstance(d, dict)]
    for parent in (d for d in raw.get("defaults", []) if isinstance(d, str) and d != "_self_"):
        entries += composed_defaults(parent)
    return entries


def flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("launcher", ["slurm", "local"])
def test_launcher_configs_compose(launcher: str) -> None:
    """The SLURM launcher sizes its job from the trainer: one task (DDP rank) per device."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", [f"hydra/launcher={launcher}", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"],
                      return_hydra_config=True)
    GlobalHydra.instance().clear()
    node = cfg.hydra.launcher
    assert "submitit" in node._target_.lower()
    if launcher == "slurm":
        assert (node.tasks_per_node, node.gpus_per_node, node.nodes) == (4, 4, 2)


@pytest.mark.parametrize(("accelerator", "fast_cpu", "precision"), [
    ("cpu", False, "32-true"), ("cpu", True, "bf16-mixed"), ("gpu", False, "bf16-mixed")])
def test_mnist_cnn_trains_in_bf16_only_where_it_is_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        accelerator: str, fast_cpu: bool, precision: str) -> None:
    monkeypatch.setattr("src.core.precision.cpu_has_fast_bf16", lambda: fast_cpu)
    cfg = compose("train", ["experiment=mnist_cnn", f"trainer.accelerator={accelerator}"], tmp_path)
    assert cfg.trainer.precision == precision
