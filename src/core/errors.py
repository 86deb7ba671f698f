"""Errors caused by the user's input (config, data, checkpoint). ``task_wrapper`` prints these as
one short message instead of a traceback (``HYDRA_FULL_ERROR=1`` shows the trace)."""


class UserError(Exception):
    """Base class: the message names the problem and the fix."""


class ConfigError(UserError):
    """An option or a combination of options that cannot work."""


class DataError(UserError):
    """Missing, corrupt or mis-declared data."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt, or from another model/data pair."""


class DivergenceError(UserError):
    """A training run whose losses or weights stopped being finite: settings (learning rate,
    precision, no gradient clipping) the model cannot train with."""


def describe(exc: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message``, for wrapping a library error into one of ours."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:limit]}" if lines else type(exc).__name__


def user_error_in(exc: BaseException) -> UserError | None:
    """The :class:`UserError` a library wrapped (OmegaConf wraps what a resolver raises, e.g. a
    missing ``data.root`` found while ``${image_folder:...}`` resolves); None when there is none."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
