"""Bad input is one clear line naming the problem and the fix, exit code 1, outputs kept."""

from pathlib import Path

import pytest

from src.core.errors import ConfigError
from src.utils.run import get_metric_value
from train import train

BAD_INPUTS = [
    (["trainer.max_epochs=abc"], "ConfigError: trainer.max_epochs='abc' is not int or null"),
    (["data.batch_size=0"], "ConfigError: data.batch_size=0 must be a positive whole number"),
    (["model.optimizer.lr=-1"], "ConfigError: model.optimizer rejected its settings (ValueError: Invalid learning rate: -1)"),
    # a GAN's two optimizers go through the same checks, each named
    (["model=dcgan", "data=digits", "model.metrics.feature=pixels", "model.optimizer_d.lr=-1"],
     "ConfigError: model.optimizer_d rejected its settings (ValueError: Invalid learning rate: -1)"),
    (["model.net.dropout=5"], "rejected a value (ValueError: dropout probability has to be between 0 and 1"),
    (["ckpt_path=/nowhere/last.ckpt"], "CheckpointError: ckpt_path=/nowhere/last.ckpt does not exist"),
    (["model.optimizer=null", "model.scheduler=null"], "ConfigError: the model config has no optimizer; set model.optimizer"),
    (["model.optimizer=null"], "ConfigError: model.scheduler.max_lr does not resolve"),
    (["trainer.enable_progress_bar=false", "callbacks.rich_progress_bar={_target_: lightning.pytorch.callbacks.RichProgressBar}"],
     "ConfigError: Trainer was configured with `enable_progress_bar=False` but found `RichProgressBar`"),
    # fine-tuning: a ??? value left unset, a missing source, a module that is not there, a share out of range
    (["init=checkpoint"], "ConfigError: init.path has no value; set it: init.path=..."),
    (["init=checkpoint", "init.path=/nowhere.ckpt"], "CheckpointError: init.path=/nowhere.ckpt does not exist"),
    (["model.lr_scales={nope: 0.1}"], "ConfigError: model.lr_scales names ['nope'], which hold no parameters of SimpleCNN"),
    (["callbacks=[default,finetuning]", "callbacks.finetuning.modules=[nope]"],
     "ConfigError: callbacks.finetuning.modules: SimpleCNN has no module ['nope']"),
    (["data.label_fraction=1.5"], "ConfigError: data.label_fraction=1.5 must be in (0, 1]"),
    # one-cycle's warm-up (pct_start 0.2) of 5 steps, 1 % of the digits for 5 epochs, is one step: torch divides by 0
    (["data.label_fraction=0.01", "trainer.max_epochs=5"], "ConfigError: model.scheduler: 5 optimizer steps are too few"),
    # a UserError raised inside a nested _target_ (the net inside the module) is not wrapped by Hydra
    (["model=hf_seq2seq", "data=cnn_dailymail", "model.net.name=/no/such/model"],
     "ConfigError: model.net.name=/no/such/model could not be loaded as a seq2seq model"),
]


@pytest.mark.parametrize(("overrides", "message"), [
    *BAD_INPUTS,
    # offline: the hub model of the experiment cannot be downloaded (hub offline mode: it fails at once)
    (["experiment=cnndm_t5_small"], "ConfigError: model.net.name=t5-small could not be loaded as a seq2seq model"),
], ids=[*(" ".join(o) for o, _ in BAD_INPUTS), "experiment=cnndm_t5_small offline"])
def test_bad_input_is_one_logged_line_and_exit_1(overrides: list[str], message: str, cfg_train,
                                                 caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    caplog.set_level("INFO")
    cfg = cfg_train(*overrides)
    with pytest.raises(SystemExit) as e:
        train(cfg)
    assert e.value.code == 1
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and message in errors[0].getMessage(), caplog.text
    assert "Traceback" not in caplog.text and "\n" not in errors[0].getMessage()
    assert f"Output dir: {cfg.paths.output_dir}" in caplog.text and Path(cfg.paths.output_dir).is_dir()


def test_unlogged_optimized_metric_fails_a_sweep_and_warns_outside_one(caplog: pytest.LogCaptureFixture,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert get_metric_value({"val/acc": 0.5}, "val/nope") is None
    assert "optimized_metric='val/nope' was not logged" in caplog.text
    monkeypatch.setattr("src.utils.run.is_multirun", lambda: True)
    with pytest.raises(ConfigError, match="optimized_metric='val/nope' was not logged; logged metrics: val/acc"):
        get_metric_value({"val/acc": 0.5}, "val/nope")


def test_sweeping_a_model_without_search_space_is_one_line() -> None:
    from omegaconf import OmegaConf

    from src.utils.sweeper import model_search_space

    with pytest.raises(ConfigError, match="this model has no search space; add configs/search_space/<model>.yaml"):
        model_search_space(OmegaConf.create({"model": {"_target_": "x"}, "task": {"name": "x"}}), trial=None)
