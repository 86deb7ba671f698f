"""Build callbacks, loggers and components from config groups."""

from typing import Any

import hydra
from lightning import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from src.utils.errors import ConfigError
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)

# Keys of model/data configs that describe the run (task compatibility, watched metric), not
# constructor arguments.
META_KEYS = ("task", "watch")


def instantiate_component(cfg: DictConfig, **kwargs: Any) -> Any:
    """Instantiate ``cfg`` without its meta keys, with every nested config converted to plain
    Python containers: objects built this way put no OmegaConf types into checkpoints. A value
    that does not resolve (``${..optimizer.lr}`` after ``model.optimizer=null``) is a one-line
    ConfigError naming its key."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except InterpolationResolutionError as e:
        reason = str(e.msg).splitlines()[0]
        raise ConfigError(f"{e.full_key} does not resolve ({reason}); set it, or the value it refers to") from e
    for key in META_KEYS:
        plain.pop(key, None)
    return hydra.utils.instantiate(plain, _convert_="all", **kwargs)


def instantiate_group(cfg: DictConfig | None, kind: str) -> list[Any]:
    """Instantiate every ``_target_`` entry of a config group (``callbacks`` or ``logger``)."""
    objects: list[Any] = []
    if not cfg:
        log.warning(f"No {kind} configs found; skipping.")
        return objects
    for conf in cfg.values():
        if isinstance(conf, DictConfig) and "_target_" in conf:
            log.info(f"Instantiating {kind} <{conf._target_}>")
            objects.append(instantiate_component(conf))
    return objects


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    return instantiate_group(cfg, "callback")


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    return instantiate_group(cfg, "logger")
