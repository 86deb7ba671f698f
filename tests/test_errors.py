"""Config errors raised inside a run name the problem and the fix."""

import pytest

from src.utils.errors import ConfigError
from src.utils.run import get_metric_value
from train import train


def test_missing_optimizer_is_one_logged_line_and_exit_1(cfg_train, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        train(cfg_train("model.optimizer=null"))
    assert e.value.code == 1
    assert "ConfigError: the model config has no optimizer; set model.optimizer" in caplog.text


def test_unlogged_optimized_metric_lists_the_logged_ones() -> None:
    with pytest.raises(ConfigError, match="optimized_metric='val/nope' was not logged; logged metrics: val/acc"):
        get_metric_value({"val/acc": 0.5}, "val/nope")
