"""Config-level helpers: resolvers, composing configs outside an entry point, the options chosen in
each group, the model/data compatibility check, and the printed config tree."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import rich.syntax
import rich.tree
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from src.core.errors import ConfigError
from src.utils.run_names import (
    output_subdir_resolver,
    run_dir_resolver,
    run_names_resolver,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def register_resolvers() -> None:
    # ${prod:${data.provides.image_shape}}: flattened input size for MLPs
    OmegaConf.register_new_resolver("prod", lambda xs: math.prod(xs), replace=True)
    # ${optuna_direction:${model.watch.mode}}: the watched metric's mode in Optuna's words
    OmegaConf.register_new_resolver("optuna_direction", lambda mode: {"max": "maximize", "min": "minimize"}[mode],
                                    replace=True)
    # ${run_names:name}, ${run_names:variant}, ${run_names:group}: what W&B names and groups a run by
    OmegaConf.register_new_resolver("run_names", run_names_resolver, replace=True)
    # hydra.run.dir and hydra.output_subdir: a resumed run continues in its own folder
    OmegaConf.register_new_resolver("run_dir", run_dir_resolver, replace=True)
    OmegaConf.register_new_resolver("output_subdir", output_subdir_resolver, replace=True)


def compose(config_name: str, overrides: Sequence[str] = (), output_dir: str | Path | None = None) -> DictConfig:
    """Compose a config as ``python <config_name>.py <overrides>`` would, outside Hydra's app
    (tests, benchmarks, notebooks), and record it as Hydra's app does before a job (the run's
    choices and overrides, read by :func:`config_choices` and eval.py); the job's config comes
    without the ``hydra`` node, as in the app. The compose API makes no run folder:
    ``output_dir``, when given, is the run folder and ``paths.log_dir``."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        if output_dir is not None:
            cfg.hydra.runtime.output_dir = cfg.paths.output_dir = cfg.paths.log_dir = str(output_dir)
        HydraConfig.instance().set_config(cfg)
        del cfg["hydra"]
    return cfg


def config_choices() -> dict[str, str]:
    """The option picked in each config group (``model: cnn``...), as Hydra recorded it."""
    if not HydraConfig.initialized():
        return {}
    return {k: v for k, v in HydraConfig.get().runtime.choices.items() if v is not None and not k.startswith("hydra")}


def group_options(group: str) -> list[str]:
    """Every option of a config group: on the entry point's config search path inside one, in
    ``configs/`` outside one. Sub-folders (``model/base/``) are not options."""
    if GlobalHydra.instance().is_initialized():
        return sorted(GlobalHydra.instance().config_loader().get_group_options(group))
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def option_tasks(group: str, key: str) -> dict[str, str | None]:
    """Each option of ``group`` (``model`` or ``data``) mapped to the task its composed config
    declares under ``key``: configs that inherit (``defaults: [dcgan]``) declare it once."""
    inside = GlobalHydra.instance().is_initialized()  # an entry point's search path, else configs/
    with contextlib.nullcontext() if inside else initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return {name: OmegaConf.select(hydra_compose(overrides=[f"+{group}={name}"]), f"{group}.{key}", default=None)
                for name in group_options(group)}


def check_compatibility(cfg: DictConfig, choices: Mapping[str, str]) -> None:
    """Fail before any work if the model needs another task than the data provides.

    Data configs declare ``provides.task``; model configs declare ``task``. The error lists the
    options that would work on either side.
    """
    model_task = cfg.model.get("task")
    data_task = OmegaConf.select(cfg, "data.provides.task", default=None)
    model_name, data_name = choices.get("model", "?"), choices.get("data", "?")
    if model_task is None or data_task is None:
        missing = f"model={model_name} has no 'task'" if model_task is None else f"data={data_name} has no 'provides.task'"
        raise ConfigError(f"{missing}; every model config declares the task it needs and every data config the task it provides")
    if model_task == data_task:
        return
    data_ok = [n for n, t in option_tasks("data", "provides.task").items() if t == model_task]
    models_ok = [n for n, t in option_tasks("model", "task").items() if t == data_task]
    raise ConfigError(
        f"model={model_name} (task '{model_task}') cannot run on data={data_name} (task '{data_task}'). "
        f"Data for model={model_name}: {', '.join(data_ok) or 'none'}. "
        f"Models for data={data_name}: {', '.join(models_ok) or 'none'}."
    )


@rank_zero_only
def print_config_tree(cfg: DictConfig, order: Sequence[str] = ("data", "model", "callbacks", "logger", "trainer", "paths", "extras"), save_dir: str | None = None) -> None:
    """Print the resolved config as a rich tree (main groups first) and save it next to the run."""
    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    fields = [f for f in order if f in cfg] + [f for f in cfg if f not in order]
    for field in fields:
        branch = tree.add(field, style="bold", guide_style="dim")
        node = cfg[field]
        text = OmegaConf.to_yaml(node, resolve=True) if isinstance(node, DictConfig) else str(node)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)
    if save_dir:
        with open(Path(save_dir, "config_tree.log"), "w") as f:
            rich.print(tree, file=f)
