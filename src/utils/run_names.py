"""What a run is called and where it lives, decided from the config alone (light imports: Hydra and
OmegaConf; compare.py reads runs with it): names a dashboard can group (what varies, not a random
word) and the folder a resumed run continues in."""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src.core.errors import ConfigError, UserError

# Overrides that say where or how a run is logged, not what it trains: left out of its name.
_BOOKKEEPING = ("paths", "hydra", "logger", "callbacks", "extras", "ckpt_path", "train", "test", "tags", "run",
                "task_name", "optimized_metric", "hparams_search", "trainer.enable_progress_bar")
#: the command line of a sweep, as typed (sweep syntax included), in the sweep folder
SWEEP_OVERRIDES = "sweep_overrides.yaml"


def is_bookkeeping(key: str) -> bool:
    """Whether an override (``paths.log_dir``, ``logger=wandb``...) only says where or how to log."""
    key = key.lstrip("+~")
    return any(key == k or key.startswith(f"{k}.") or key.startswith(f"{k}/") for k in _BOOKKEEPING)


@dataclass(frozen=True)
class RunNames:
    """``name``: ``<model>-<data>[-<key>=<value>...]-s<seed>`` (``<experiment>[-...]-s<seed>``
    with ``experiment=``), from the options chosen and the overrides that change what is trained
    (in a sweep, those that vary between its jobs). ``variant``: the name without its seed, so the
    seeds of one configuration share it. ``group``: one per sweep
    (``[<experiment>-]sweep-<sweep folder>``), else the variant."""

    name: str
    variant: str
    group: str


def _short(value: str) -> str:
    """``0.0012345678`` -> ``0.001235``: sampled floats stay readable in a name; a file path
    (``init.path``, a teacher checkpoint) is named by its file name."""
    if "/" in value and not value.startswith(("[", "{")):
        return Path(value).name
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}" if math.isfinite(number) and any(c in value for c in ".eE") else value


def trained_overrides(overrides: Sequence[str]) -> list[tuple[str, str]]:
    """``(key, value)`` of each command-line override that changes what is trained (a deletion,
    ``~key``, has the value ``""``); the bookkeeping ones are left out."""
    items = []
    for override in overrides:
        key, _, value = str(override).lstrip("+~").partition("=")
        if not is_bookkeeping(key):
            items.append((key, value))
    return items


def _name_parts(items: Sequence[tuple[str, str]], named_apart: Sequence[str]) -> list[str]:
    return [f"{key.rsplit('.', 1)[-1]}={_short(value)}" if value else f"~{key}"
            for key, value in items if key not in named_apart]


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class RecordSweep(Callback):
    """Hydra callback (``hydra.callbacks``): writes the sweep's command-line overrides, as typed,
    into the sweep folder before any job runs, so each job can tell what varies between jobs
    whatever the sweeper (Hydra's basic one, Optuna's, which writes no multirun.yaml). A sweep
    folder that has them is being resumed (src/utils/sweep_resume.py): by the same overrides only."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        typed = list(config.hydra.overrides.task)
        if (sweep_dir / SWEEP_OVERRIDES).exists():
            check_same_sweep(list(OmegaConf.load(sweep_dir / SWEEP_OVERRIDES)), typed, sweep_dir)
            return
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(typed), sweep_dir / SWEEP_OVERRIDES)


def _fixed_keys(sweep_dir: Path) -> set[str]:
    """The keys a sweep gives every job alike (not ``a=1,2``, ``range()``, ``choice()``...)."""
    try:
        typed = list(OmegaConf.load(sweep_dir / SWEEP_OVERRIDES))
    except OSError:
        return set()
    return {o.key_or_group for o in OverridesParser.create().parse_overrides(typed) if not o.is_sweep_override()}


def run_names(cfg: Mapping[str, Any]) -> RunNames:
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    choices = dict(hydra.runtime.choices) if hydra else {}
    items = trained_overrides(hydra.overrides.task if hydra else [])
    multirun = hydra is not None and hydra.mode == RunMode.MULTIRUN
    if multirun:  # a job is named by what varies between the sweep's jobs
        fixed = _fixed_keys(Path(hydra.sweep.dir))
        items = [(key, value) for key, value in items if key not in fixed]
    if choices.get("experiment"):  # the experiment names its model and data, unless overridden
        base = [choices["experiment"]]
        named_apart = ("seed", "experiment")
    else:
        base = [choices.get("model") or str(cfg.get("model", {}).get("_target_", "model")).rsplit(".", 1)[-1],
                choices.get("data") or "data"]
        named_apart = ("seed", "model", "data")
    variant = "-".join([*base, *_name_parts(items, named_apart)])
    seed = cfg.get("seed")
    name = variant if seed is None else f"{variant}-s{seed}"
    if multirun:
        sweep = Path(hydra.sweep.dir).name
        group = f"{choices['experiment']}-sweep-{sweep}" if choices.get("experiment") else f"sweep-{sweep}"
    else:
        group = variant
    return RunNames(name, variant, group)


def run_names_resolver(field: str, _root_: DictConfig) -> str:
    """``${run_names:name}``, ``${run_names:variant}``, ``${run_names:group}``: the ``run`` node
    of train.yaml and eval.yaml."""
    return getattr(run_names(_root_), field)


def adopt_names(cfg: DictConfig, stored: Mapping[str, str]) -> None:
    """Take a checkpoint's run names (its config's ``run`` node) where the command line did not
    set them: a resumed run keeps its names, an evaluation is named after what it evaluates."""
    for field, value in stored.items():
        if field in cfg.run and OmegaConf.is_interpolation(cfg.run, field):
            cfg.run[field] = value


def resumed_run_dir(ckpt_path: str | None, training: bool) -> Path | None:
    """The run folder a training run resumed from ``<run>/checkpoints/*.ckpt`` continues in."""
    if ckpt_path and training:
        ckpt = Path(ckpt_path).resolve()
        if ckpt.parent.name == "checkpoints" and (ckpt.parent.parent / ".hydra").is_dir():
            return ckpt.parent.parent
    return None


def run_dir_resolver(ckpt_path: str | None, training: bool, new_dir: str) -> str:
    """``hydra.run.dir``: a resumed run continues in its own folder (its logs, metrics and
    checkpoints stay one folder); a run torchrun started in several processes takes rank 0's new
    folder; anything else gets ``new_dir``."""
    resumed = resumed_run_dir(ckpt_path, training)
    if resumed:
        return str(resumed)
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return torchrun_run_dir(new_dir)
    return new_dir


_AGREED_RUN_DIRS: dict[str, str] = {}


def torchrun_run_dir(new_dir: str) -> str:
    """The folder every process of a torchrun launch (``--nnodes``, ``--nproc_per_node``) writes
    one run into: rank 0's ``new_dir``, handed to the others through torchrun's own key-value
    store (its agent's, at ``MASTER_ADDR:MASTER_PORT``), since each process's clock names its own.
    Decided once per launch attempt: an elastic restart starts a new folder."""
    key = f"archlab/run_dir/{os.environ.get('TORCHELASTIC_RUN_ID', 'none')}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    if key not in _AGREED_RUN_DIRS:
        from datetime import timedelta

        from torch.distributed import TCPStore

        store = TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                         timeout=timedelta(minutes=10))
        if os.environ.get("RANK") == "0":
            store.set(key, new_dir)
        _AGREED_RUN_DIRS[key] = store.get(key).decode()
    return _AGREED_RUN_DIRS[key]


def output_subdir_resolver(ckpt_path: str | None, training: bool, output_dir: str, resume_subdir: str) -> str:
    """``hydra.output_subdir``: a run resumed in its own folder keeps the ``.hydra/`` it started
    with (what compare.py reads) and records each resume's config in ``.hydra/<resume_subdir>``;
    every other run or sweep job writes ``.hydra/``."""
    resumed = resumed_run_dir(ckpt_path, training)
    return f".hydra/{resume_subdir}" if resumed and Path(output_dir).resolve() == resumed else ".hydra"


def refuse(error: UserError) -> None:
    """Stop a sweep before any job in one line (a traceback with ``HYDRA_FULL_ERROR=1``): Hydra
    prints a traceback for errors outside jobs."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    logging.getLogger(__name__).error(f"{type(error).__name__}: {error}")
    sys.exit(1)


def check_same_sweep(recorded: list[Any], typed: list[Any], sweep_dir: Path) -> None:
    """A sweep folder is resumed by the command that started it: other overrides are refused,
    naming those that differ."""
    recorded, typed = list(map(str, recorded)), list(map(str, typed))
    if sorted(recorded) != sorted(typed):
        was = " ".join(o for o in recorded if o not in typed) or "nothing"
        now = " ".join(o for o in typed if o not in recorded) or "nothing"
        refuse(ConfigError(f"{sweep_dir} is a sweep of {was}, not {now}; resume it with its own overrides "
                           "(its sweep_overrides.yaml), or start a new sweep without hydra.sweep.dir"))
