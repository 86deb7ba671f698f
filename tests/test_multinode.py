"""Several nodes, as torchrun starts them on a cluster: two "nodes" on this machine, one process
each, over gloo, against one node of two processes on the same global batch."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import QUIET, ROOT, free_port, metrics_csv, run_dirs, run_ok

COMMON = ["trainer=ddp_cpu", "trainer.max_epochs=2", "data.batch_size=64", "trainer.limit_val_batches=2", "logger=csv"]


def torchrun_nodes(nodes: int, overrides: list[str], log_dir: Path, ok: bool = True) -> list[str]:
    """``train.py`` started by one ``torchrun --nnodes=<nodes> --nproc_per_node=1`` per node, as
    each node of a cluster would (rendezvous at 127.0.0.1); the nodes' outputs, each checked to
    have succeeded (``ok``) or failed without a traceback of archlab's."""
    port = free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}", "--nproc_per_node=1", f"--node_rank={rank}",
         "--master_addr=127.0.0.1", f"--master_port={port}", "train.py", "trainer.devices=1",
         f"trainer.num_nodes={nodes}", f"paths.log_dir={log_dir}", *QUIET, *overrides],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in range(nodes)]
    try:
        outs = [proc.communicate(timeout=300)[0] for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, out in zip(procs, outs):
        if ok:
            assert proc.returncode == 0 and "Traceback" not in out, out[-3000:]
        else:  # torchrun's own agent reports the failed process with a traceback of its own
            assert proc.returncode != 0 and 'train.py", line' not in out and "src/" not in out, out[-3000:]
    return outs


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu")["state_dict"]


@pytest.mark.slow  # three DDP processes' worth of training, two of them under torchrun
def test_two_nodes_train_as_one_node_of_two_processes(tmp_path: Path) -> None:
    one_node = run_ok("train.py", COMMON, tmp_path / "one_node")
    outs = torchrun_nodes(2, COMMON, tmp_path / "two_nodes")

    (run,) = run_dirs(tmp_path / "two_nodes")  # every rank writes into rank 0's run folder
    assert "[rank: 1]" not in "".join(outs) and "Starting training" not in outs[1]  # rank 1 prints nothing of its own
    # both ranks trained: one process alone would have missed the gradients of the other half of each batch.
    # Equal up to float summation order, which differs between the two launchers (by ~1e-7 here)
    ours_w = weights(run)
    for name, tensor in weights(one_node).items():
        torch.testing.assert_close(ours_w[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    ours, theirs = metrics_csv(run), metrics_csv(one_node)
    assert ours["test/acc"] == theirs["test/acc"]
    assert float(ours["test/loss"]) == pytest.approx(float(theirs["test/loss"]), rel=1e-5)
    # logged once, by rank 0: the rows one node logs
    assert [rows(r) for r in (run, one_node)] == [rows(one_node)] * 2


def rows(run: Path) -> list[str]:
    """The CSV log's (epoch, step) of each row: which rows were logged, whatever their timings."""
    (version,) = (run / "csv").iterdir()
    return [",".join(line.split(",")[:2]) for line in (version / "metrics.csv").read_text().splitlines()]


@pytest.mark.slow  # two torchrun launches
def test_torchrun_processes_other_than_the_trainers_are_one_line(tmp_path: Path) -> None:
    outs = torchrun_nodes(2, ["trainer=ddp_cpu", "trainer.num_nodes=1"], tmp_path, ok=False)
    assert "ConfigError: torchrun started 2 processes, but trainer.devices=1 x trainer.num_nodes=1 is 1" in outs[0]


def test_torchrun_processes_share_rank_0s_run_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each process names its own folder from its clock; under torchrun all take rank 0's, read
    from the launcher's store (here one this test hosts)."""
    from datetime import timedelta

    from src.utils import run_names

    port = free_port()
    store = torch.distributed.TCPStore("127.0.0.1", port, is_master=True, timeout=timedelta(seconds=30))
    monkeypatch.setattr(run_names, "_AGREED_RUN_DIRS", {})
    env = {"TORCHELASTIC_USE_AGENT_STORE": "True", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port), "TORCHELASTIC_RUN_ID": "none", "TORCHELASTIC_RESTART_COUNT": "0"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RANK", "0")
    assert run_names.run_dir_resolver(None, True, "runs/rank0_clock") == "runs/rank0_clock"
    monkeypatch.setattr(run_names, "_AGREED_RUN_DIRS", {})  # another process
    monkeypatch.setenv("RANK", "1")
    assert run_names.run_dir_resolver(None, True, "runs/rank1_clock") == "runs/rank0_clock"
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # an elastic restart: a new folder, rank 0's again
    store.set("archlab/run_dir/none/1", "runs/restart")
    assert run_names.run_dir_resolver(None, True, "runs/rank1_clock") == "runs/restart"
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: its own folder
    assert run_names.run_dir_resolver(None, True, "runs/own") == "runs/own"
