"""Config-level helpers: resolvers, composing configs outside an entry point, the options chosen in
each group, the model/data compatibility check, and the printed config tree."""

from __future__ import annotations

import contextlib
import functools
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra.utils
import rich.syntax
import rich.tree
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from src.core.checkpoints import RENAMED_DATA
from src.core.errors import ConfigError
from src.utils.run_names import (
    output_subdir_resolver,
    run_dir_resolver,
    run_names_resolver,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def _by_path(path: str) -> Callable[..., Any]:
    """A resolver whose code is imported when a config first uses it."""
    return lambda *args: hydra.utils.get_method(path)(*args)


def register_resolvers() -> None:
    # ${prod:${data.provides.image_shape}}: flattened input size for MLPs
    OmegaConf.register_new_resolver("prod", lambda xs: math.prod(xs), replace=True)
    # ${optuna_direction:${task.watch.mode}}: the watched metric's mode in Optuna's words
    OmegaConf.register_new_resolver("optuna_direction", lambda mode: {"max": "maximize", "min": "minimize"}[mode],
                                    replace=True)
    # ${run_names:name}, ${run_names:variant}, ${run_names:group}: what W&B names and groups a run by
    OmegaConf.register_new_resolver("run_names", run_names_resolver, replace=True)
    # hydra.run.dir and hydra.output_subdir: a resumed run continues in its own folder
    OmegaConf.register_new_resolver("run_dir", run_dir_resolver, replace=True)
    OmegaConf.register_new_resolver("output_subdir", output_subdir_resolver, replace=True)
    # ${fast_precision:${trainer.accelerator}}: bf16-mixed where it is faster than fp32 (GPU, AVX512-BF16/AMX CPU)
    OmegaConf.register_new_resolver("fast_precision", _by_path("src.core.precision.fast_precision"), replace=True)
    # ${image_folder:num_classes,root,index,image_size,test_size,split_seed}: data=image_folder's provides and
    # statistics, from the files (cached per folder)
    # (named by its dotted path, as a config's _target_: the config layer imports no data code)
    OmegaConf.register_new_resolver("image_folder", _by_path("src.data.sources.image_folder.folder_resolver"), replace=True)
    # ${vqa_folder:vocab_size,root,image_size,test_size,val_size,split_seed}: data=vqa_folder's, the same way
    OmegaConf.register_new_resolver("vqa_folder", _by_path("src.data.sources.vqa_folder.vqa_folder_resolver"), replace=True)


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


def option_tasks(group: str) -> dict[str, list[str]]:
    """Each option of ``group`` mapped to its tasks: the one a ``model`` option picks, the ones a
    ``data`` option serves (``provides.tasks``), as composed (configs that inherit name them once)."""
    inside = GlobalHydra.instance().is_initialized()  # an entry point's search path, else configs/
    with contextlib.nullcontext() if inside else initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return _option_tasks(group, tuple(group_options(group)))


@functools.lru_cache(maxsize=8)
def _option_tasks(group: str, options: tuple[str, ...]) -> dict[str, list[str]]:
    """Cached by the options there are: composing each takes a moment, and a process's configs do
    not change. A data option composes alone; a model option picks its task through train.yaml's
    ``task`` entry."""
    if group == "model":
        found = {n: OmegaConf.select(hydra_compose("train", overrides=[f"model={n}"]), "task.name", default=None)
                 for n in options}
    else:
        found = {n: OmegaConf.select(hydra_compose(overrides=[f"+{group}={n}"]), f"{group}.provides.tasks", default=None)
                 for n in options}
    return {name: [tasks] if isinstance(tasks, str) else list(tasks or []) for name, tasks in found.items()}


def check_compatibility(cfg: DictConfig, choices: Mapping[str, str]) -> None:
    """Fail before any work if the run's task is not the one its model is built for, or not one
    its data serves. Each model config picks its task (``configs/task/``), ``task=`` overrides it;
    each data config lists the tasks it serves (``provides.tasks``). The error lists the options
    that would work."""
    task, served = OmegaConf.select(cfg, "task.name", default=None), OmegaConf.select(cfg, "data.provides.tasks", default=None)
    model_name, data_name = choices.get("model", "?"), choices.get("data", "?")
    if task is None:
        raise ConfigError(f"model={model_name} picks no task; a model config names its task in its defaults "
                          f"(`- override /task@_global_.task: <{'|'.join(group_options('task'))}>`)")
    if served is None:
        raise ConfigError(f"data={data_name} has no 'provides.tasks'; every data config lists the tasks it serves")
    typed = HydraConfig.initialized() and any(o.split("=")[0].lstrip("+") == "task" for o in HydraConfig.get().overrides.task)
    models = option_tasks("model") if typed or task not in served else {}
    if models and task not in models.get(model_name, [task]):
        built_for = models[model_name][0] if models[model_name] else "no"
        raise ConfigError(f"model={model_name} is built for task={built_for}, not task={task}. Models for task={task}: "
                          f"{', '.join(n for n, t in models.items() if task in t) or 'none'}.")
    if task in served:
        return
    data_ok = [n for n, t in option_tasks("data").items() if task in t]
    models_ok = [n for n, t in models.items() if set(t) & set(served)]
    raise ConfigError(
        f"model={model_name} (task '{task}') cannot run on data={data_name} (tasks: {', '.join(served)}). "
        f"Data for model={model_name}: {', '.join(data_ok) or 'none'}. "
        f"Models for data={data_name}: {', '.join(models_ok) or 'none'}."
    )


def refuse_removed_options(argv: Sequence[str]) -> None:
    """A spelling removed by the task/data/model split is one line naming the new one (before
    Hydra composes, which would only list what exists): a data twin, ``model.distiller.*``."""
    for arg in argv:
        key, _, values = arg.partition("=")
        key = key.lstrip("+~").removeprefix("override ").strip()
        if key.startswith("model.distiller."):
            sys.exit(f"ConfigError: {key} is now distill.{key.removeprefix('model.distiller.')} (distill=kd wraps the "
                     "training loss; it is no longer part of the model)")
        if key != "data":
            continue
        for value in values.split(","):
            if value.strip() in RENAMED_DATA:
                sys.exit(f"ConfigError: data={value.strip()} is now data={RENAMED_DATA[value.strip()]}: the task comes "
                         "from the model (model=dcgan trains a GAN on any image data), or set task=<name>")


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
