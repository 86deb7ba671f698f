"""DDP on CPU (`trainer=ddp_cpu`, 2 processes, same global batch) against one process, per task:
training gives the same test metric within a stated tolerance (the processes shuffle and take
BatchNorm statistics on their own shares), and testing a checkpoint gives exactly the metric of
one process, with every test example in the predictions exactly once."""

import json
from pathlib import Path

import pytest

from tests.conftest import (
    metrics_csv,
    offline_runs,
    run_ok,
    synthetic_pairs_dir,
    wandb_env,
)

LIMITS = ["trainer.limit_val_batches=2"]
# task -> (train.py overrides, test metric, tolerance between 1 and 2 training processes, the
# field that identifies an example in predictions.jsonl)
TASKS = {
    "classification": (["trainer.max_epochs=2", "data.batch_size=64"], "test/acc", 0.05, None),
    "regression": (["model=cnn_regressor", "trainer.max_epochs=2", "data.batch_size=64"], "test/mae", 0.2, None),
    "vqa": (["model=fusion", "data=easy_vqa", "model.net.dim=32", "data.batch_size=8", "trainer.max_epochs=1",
             "trainer.limit_train_batches=60", "trainer.limit_test_batches=10"], "test/acc", 0.1, "question_index"),
    "generation": (["model=dcgan", "data=digits", "model.metrics.feature=pixels", "data.batch_size=32",
                    "trainer.max_epochs=1", "trainer.limit_train_batches=8"], "test/fid", 0.5, "file"),
    "summarization": (["model=transformer", "model.net.dim=32", "model.net.num_heads=2", "model.net.encoder_layers=1",
                       "model.net.decoder_layers=1", "model.net.ff_hidden=64", "model.generation.max_len=8",
                       "model.generation.min_len=4", "model.val_generation.max_len=8", "model.optimizer.lr=0.003",
                       "model.scheduler.num_warmup_steps=10", "trainer.max_epochs=3"],
                      # a net this small and short-trained summarizes nothing ROUGE can score (0 in every run):
                      # compared on its teacher-forced test loss, and on identical summaries under DDP
                      "test/loss", 0.1, "id"),
}


@pytest.mark.slow  # per task: 2 training runs and 2 evaluations in subprocesses, half of them DDP
@pytest.mark.parametrize("task", list(TASKS))
def test_one_process_and_ddp_agree(task: str, tmp_path: Path) -> None:
    overrides, metric, tolerance, key = TASKS[task]
    if task == "summarization":
        root = synthetic_pairs_dir(tmp_path / "pairs", n_train=32)
        overrides = ["data=cnn_dailymail_pg", f"data.data_dir={root}", f"data.tokenizer.cache_dir={tmp_path / 'cache'}",
                     "data.tokenizer.vocab_size=400", "data.max_source_len=64", "data.max_target_len=24",
                     "data.batch_size=8", *overrides]
    one = run_ok("train.py", [*overrides, *LIMITS], tmp_path / "one")
    two = run_ok("train.py", [*overrides, *LIMITS, "trainer=ddp_cpu"], tmp_path / "two")
    assert float(metrics_csv(one)[metric]) > 0, metrics_csv(one)
    assert float(metrics_csv(two)[metric]) == pytest.approx(float(metrics_csv(one)[metric]), rel=tolerance, abs=tolerance)

    best = next((one / "checkpoints").glob("epoch_*.ckpt"))
    limit = [o for o in overrides if o.startswith("trainer.limit_test_batches")]
    evaluated = {n: run_ok("eval.py", [f"ckpt_path={best}", *limit, *extra], tmp_path / f"eval{n}")
                 for n, extra in ((1, []), (2, ["trainer=ddp_cpu"]))}
    if task != "generation":  # a generator samples other images in each process: FID within the tolerance above
        assert float(metrics_csv(evaluated[2])[metric]) == pytest.approx(float(metrics_csv(evaluated[1])[metric]), abs=1e-6)
    rows = {n: [json.loads(line) for line in (d / "predictions.jsonl").read_text().splitlines()] for n, d in evaluated.items()}
    assert len(rows[2]) == len(rows[1])
    if key:
        assert len({r[key] for r in rows[2]}) == len(rows[2])  # every example exactly once
    if task != "generation":
        assert rows[2] == rows[1]
    else:  # each process samples its own noise: examples 0 and 1 (one per process) are not copies
        samples = evaluated[2] / "samples"
        assert (samples / "000000.png").read_bytes() != (samples / "000001.png").read_bytes()


@pytest.mark.slow  # two DDP runs in subprocesses
def test_ddp_run_killed_and_resumed_is_one_wandb_run(tmp_path: Path) -> None:
    """Under DDP only rank 0 logs: one W&B offline run per session, named as one process names the
    same run (plus the trainer choice), and the resumed session continues the same run id in the
    same folder."""
    env = wandb_env(tmp_path)
    common = ["logger=many", "trainer.max_epochs=2", "data.batch_size=64", *LIMITS]
    one = run_ok("train.py", common, tmp_path / "one", env=env)
    stop = "+callbacks.stop={_target_: tests.conftest.StopAfterEpochs, epochs: 1}"
    common = ["trainer=ddp_cpu", *common]
    run = run_ok("train.py", [*common, stop], tmp_path / "ddp", env=env)
    assert run_ok("train.py", [*common, f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"], tmp_path / "ddp", env=env) == run
    assert len(offline_runs(one)) == 1
    one_name = json.loads((one / "summary.json").read_text())["run/name"]
    assert one_name == "cnn-digits-max_epochs=2-batch_size=64-limit_val_batches=2-s12345"
    ids = [run_id for run_id, _ in offline_runs(run)]
    assert len(ids) == 2 and ids[0] == ids[1]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["run/name"] == "cnn-digits-trainer=ddp_cpu-max_epochs=2-batch_size=64-limit_val_batches=2-s12345"
    assert summary["best/epoch"] in (0, 1) and "test/acc" in summary
