"""Every config composes, and every model x compatible data pair instantiates."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from src.utils.config import CONFIG_DIR, check_compatibility
from src.utils.errors import ConfigError
from src.utils.instantiate import instantiate_component
from tests.conftest import compose_cfg


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def compatible_pairs(task: str | None = None) -> list[tuple[str, str]]:
    """Every (model, data) pair whose tasks match, optionally of one task only."""
    tasks = {m: OmegaConf.load(CONFIG_DIR / "model" / f"{m}.yaml").task for m in options("model")}
    provides = {d: OmegaConf.load(CONFIG_DIR / "data" / f"{d}.yaml").provides.task for d in options("data")}
    return [(m, d) for m in tasks for d in provides if tasks[m] == provides[d] and task in (None, tasks[m])]


@pytest.mark.parametrize("group", ["trainer", "logger", "callbacks", "debug", "experiment", "hparams_search"])
def test_every_option_composes(group: str, tmp_path: Path) -> None:
    for name in options(group):
        cfg = compose_cfg("train", [f"{group}={name}"], tmp_path)
        assert cfg.model and cfg.data, (group, name)
        OmegaConf.to_container(cfg.trainer, resolve=True)


@pytest.mark.parametrize(("model", "data"), compatible_pairs())
def test_model_data_pairs_instantiate(model: str, data: str, tmp_path: Path) -> None:
    if model == "hf_seq2seq":
        pytest.skip("its default (t5-small) is a hub download; test_summarization.py builds a tiny local model")
    cfg = compose_cfg("train", [f"model={model}", f"data={data}"], tmp_path)
    check_compatibility(cfg, {"model": model, "data": data})
    module = instantiate_component(cfg.model)
    datamodule = instantiate_component(cfg.data)
    if "num_classes" in datamodule.provides:
        assert module.hparams.num_classes == datamodule.provides["num_classes"]


def test_eval_config_composes(tmp_path: Path) -> None:
    cfg = compose_cfg("eval", ["ckpt_path=x.ckpt"], tmp_path)
    assert cfg.ckpt_path == "x.ckpt" and cfg.task_name == "eval"


def test_mismatch_lists_compatible_options(tmp_path: Path) -> None:
    cfg = compose_cfg("train", [], tmp_path)
    cfg.data.provides.task = "text_summarization"
    with pytest.raises(ConfigError) as e:
        check_compatibility(cfg, {"model": "cnn", "data": "toy_text"})
    msg = str(e.value)
    assert "model=cnn" in msg and "data=toy_text" in msg
    assert "digits, fashion_mnist, mnist" in msg.replace("cifar10, ", "")


def test_data_dir_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "somewhere"))
    cfg = compose_cfg("train", ["data=mnist"], tmp_path)
    assert cfg.data.data_dir == str(tmp_path / "somewhere")


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
