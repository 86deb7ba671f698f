"""The search space of Hydra's Optuna sweeper: the swept model's (configs/search_space/<model>.yaml),
else its task's."""

from __future__ import annotations

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra_plugins.hydra_optuna_sweeper._impl import (
    create_optuna_distribution_from_override,
)
from omegaconf import DictConfig
from optuna.trial import Trial

from src.core.errors import ConfigError


def model_search_space(config: DictConfig, trial: Trial) -> None:
    """``hydra.sweeper.custom_search_space`` of ``hparams_search=optuna``: each trial also draws
    the parameters in ``task.search_space`` (Hydra's sweep syntax, e.g.
    ``model.optimizer.lr: interval(0.0003, 0.03)``): what is worth varying for the swept model, so
    ``-m hparams_search=optuna model=<any>`` sweeps that model."""
    space = config.get("task", {}).get("search_space")
    if not space:
        raise ConfigError("this model has no search space; add configs/search_space/<model>.yaml (see cnn.yaml), "
                          "or set hydra.sweeper.params and hydra.sweeper.custom_search_space=null")
    for override in OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in space.items()]):
        name = override.get_key_element()
        if name not in trial.params and name not in trial.user_attrs:  # the command line's range or value wins
            trial._suggest(name, create_optuna_distribution_from_override(override))
