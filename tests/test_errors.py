"""Config errors raised inside a run name the problem and the fix."""

import pytest

from src.utils.errors import ConfigError
from src.utils.run import get_metric_value
from train import train


def test_missing_optimizer_is_one_logged_line_and_exit_1(cfg_train, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        train(cfg_train("model.optimizer=null", "model.scheduler=null"))
    assert e.value.code == 1
    assert "ConfigError: the model config has no optimizer; set model.optimizer" in caplog.text


def test_unresolvable_value_is_one_line_naming_its_key(cfg_train, caplog: pytest.LogCaptureFixture) -> None:
    """The scheduler's max_lr follows ${..optimizer.lr}: removing the optimizer alone breaks it."""
    with pytest.raises(SystemExit):
        train(cfg_train("model.optimizer=null"))
    assert "ConfigError: model.scheduler.max_lr does not resolve" in caplog.text and "Traceback" not in caplog.text


def test_unlogged_optimized_metric_lists_the_logged_ones() -> None:
    with pytest.raises(ConfigError, match="optimized_metric='val/nope' was not logged; logged metrics: val/acc"):
        get_metric_value({"val/acc": 0.5}, "val/nope")
