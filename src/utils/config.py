"""Config-level helpers: resolvers, the model/data compatibility check, the printed config tree."""

from __future__ import annotations

import math
import netrc
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

import rich.syntax
import rich.tree
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from src.utils.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def wandb_offline() -> bool:
    """True unless W&B can be reached with credentials: no API key, or no route to the W&B
    server, means the run is written to disk for a later ``wandb sync``."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled"):
        return True
    if mode == "online":
        return False
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    has_key = bool(os.environ.get("WANDB_API_KEY"))
    if not has_key:
        try:
            has_key = netrc.netrc().authenticators(host) is not None
        except (OSError, netrc.NetrcParseError):
            has_key = False
    if not has_key:
        return True
    try:
        socket.create_connection((host, 443), timeout=2).close()
        return False
    except OSError:
        return True


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("wandb_offline", wandb_offline, replace=True)
    # ${prod:${data.provides.image_shape}}: flattened input size for MLPs
    OmegaConf.register_new_resolver("prod", lambda xs: math.prod(xs), replace=True)


def _group_tasks(group: str, key: str) -> dict[str, str | None]:
    """Map each option of a config group to the task it declares under ``key``."""
    tasks = {}
    for path in sorted((CONFIG_DIR / group).glob("*.yaml")):
        tasks[path.stem] = OmegaConf.select(OmegaConf.load(path), key, default=None)
    return tasks


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
    data_ok = [n for n, t in _group_tasks("data", "provides.task").items() if t == model_task]
    models_ok = [n for n, t in _group_tasks("model", "task").items() if t == data_task]
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
