"""Build callbacks, loggers and components from config groups, turning what the user typed wrong
into one-line errors before it surfaces deep inside a library."""

import inspect
import types
import typing
from typing import Any

import hydra
from hydra.errors import InstantiationException
from lightning import Callback
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from src.core.errors import ConfigError, UserError, describe, user_error_in
from src.utils.pylogger import RankedLogger

log = RankedLogger(__name__)


def instantiate_component(cfg: DictConfig, **kwargs: Any) -> Any:
    """Instantiate ``cfg`` with every nested config converted to plain Python containers: objects
    built this way put no OmegaConf types into checkpoints. A value that does not resolve (``${..optimizer.lr}`` after ``model.optimizer=null``) is a one-line
    ConfigError naming its key."""
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except InterpolationResolutionError as e:
        if user_error_in(e) is not None:  # a resolver's own one-line error (${image_folder:...})
            raise user_error_in(e) from e
        reason = str(e.msg).splitlines()[0]
        raise ConfigError(f"{e.full_key} does not resolve ({reason}); set it, or the value it refers to") from e
    prefix = cfg._get_full_key("") if isinstance(cfg, DictConfig) else ""
    check_arguments(plain, prefix)
    try:
        return hydra.utils.instantiate(plain, _convert_="all", **kwargs)
    except InstantiationException as e:
        # a UserError (or a bad value a constructor rejected) raised inside a nested _target_
        cause = e.__cause__
        while isinstance(cause, InstantiationException):
            cause = cause.__cause__
        if isinstance(cause, UserError):
            raise cause from e
        if isinstance(cause, MisconfigurationException):  # Lightning's own check of its arguments
            raise ConfigError(str(cause).strip()) from e
        if isinstance(cause, (ValueError, TypeError)):
            raise ConfigError(f"{prefix or 'the config'}: {str(e).splitlines()[0].rstrip(':')} rejected a value "
                              f"({describe(cause)})") from e
        raise


_PLAIN = (bool, int, float, str)


def _plain_types(annotation: Any) -> tuple[type, ...] | None:
    """The types a parameter annotated with plain types admits (``int``, ``float | None``, ...);
    None when the annotation admits anything else, which is then not checked."""
    if annotation in _PLAIN:
        return (annotation, int) if annotation is float else (annotation,)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        if all(a in _PLAIN or a is type(None) for a in args):
            return (*args, int) if float in args else args
    return None


def check_arguments(node: Any, key: str) -> None:
    """Check every value of a ``_target_`` config (and the configs nested in it) against the
    plain types its constructor declares: ``trainer.max_epochs=abc`` is one line here, not a
    TypeError deep inside Lightning."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            check_arguments(item, f"{key}.{i}")
        return
    if not isinstance(node, dict):
        return
    hints: dict[str, Any] = {}
    if "_target_" in node and not node.get("_partial_"):
        try:
            target = hydra.utils.get_object(node["_target_"])
            hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
        except Exception:  # an import error surfaces at instantiation with its own message
            hints = {}
    for name, value in node.items():
        full = f"{key}.{name}" if key else name
        allowed = _plain_types(hints.get(name))
        if allowed and not isinstance(value, allowed):
            names = " or ".join(sorted({"null" if t is type(None) else t.__name__ for t in allowed}))
            raise ConfigError(f"{full}={value!r} is not {names}; fix its value")
        check_arguments(value, full)


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
