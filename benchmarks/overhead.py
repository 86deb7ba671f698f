"""Framework overhead: the same CNN on MNIST, same batch size and data pipeline, trained one
epoch (+ validation) by ``train.py`` and by a bare PyTorch loop.

Figures: ``epoch_time_ratio`` = steady-state epoch time through train.py / bare loop (target
<= 1.05), and ``startup_extra_s`` = the extra seconds train.py spends outside its epochs
(imports, config, callbacks, checkpoint writing) compared with the bare script.
Each side runs in its own process, one after the other, so they never share the 2 cores.

    python benchmarks/overhead.py [--epochs 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time

T0 = time.perf_counter()

from common import ROOT, data_dir, emit, print_table  # noqa: E402

EXPERIMENT = "mnist_cnn"


def bare_loop(epochs: int) -> None:
    """Child process: the plain-PyTorch side. Prints a JSON line with its timings."""
    import torch
    import torch.nn.functional as F
    from hydra.utils import instantiate

    from src.utils.config import compose
    from src.utils.instantiate import instantiate_component

    cfg = compose("train", [f"experiment={EXPERIMENT}", f"trainer.max_epochs={epochs}", f"data.data_dir={data_dir()}"], ROOT / "logs")
    torch.manual_seed(cfg.seed)
    dm = instantiate_component(cfg.data)
    dm.setup()
    net = instantiate(cfg.model.net).to(memory_format=torch.channels_last)
    opt = instantiate(cfg.model.optimizer)(params=net.parameters())
    train_loader, val_loader = dm.train_dataloader(), dm.val_dataloader()
    sched = instantiate(cfg.model.scheduler)(optimizer=opt, total_steps=epochs * len(train_loader))
    times = []
    t_loop = time.perf_counter()
    for _ in range(epochs):
        t = time.perf_counter()
        net.train()
        for x, y in train_loader:
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val_loader:
                correct += (net(x).argmax(1) == y).sum().item()
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - T0
    print(json.dumps({"epoch_times": times, "wall": wall, "outside_epochs": wall - sum(times),
                      "val_acc": correct / len(dm.data_val), "loop_start": t_loop - T0}))


def archlab(epochs: int) -> dict:
    """train.py as a user runs it (default callbacks, CSV logger), test stage off."""
    log_dir = ROOT / "logs" / "benchmarks" / f"overhead_{int(time.time())}"
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), f"experiment={EXPERIMENT}", f"trainer.max_epochs={epochs}",
                           f"data.data_dir={data_dir()}", "test=false", f"paths.log_dir={log_dir}",
                           "trainer.enable_progress_bar=false", "callbacks.rich_progress_bar=null"],
                          cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"train.py failed:\n{proc.stderr[-3000:]}")
    (metrics,) = log_dir.rglob("metrics.csv")
    times = [float(r["train/epoch_time_s"]) for r in csv.DictReader(metrics.open()) if r.get("train/epoch_time_s")]
    return {"epoch_times": times, "wall": wall, "outside_epochs": wall - sum(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per side; the last one is the steady state")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        return bare_loop(args.epochs)

    t = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--bare", "--epochs", str(args.epochs)], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"bare loop failed:\n{proc.stderr[-3000:]}")
    bare = json.loads(proc.stdout.strip().splitlines()[-1])
    bare["wall"] = time.perf_counter() - t  # process wall time, as for train.py
    bare["outside_epochs"] = bare["wall"] - sum(bare["epoch_times"])
    ours = archlab(args.epochs)

    rows = [{"runner": name, **{f"epoch{i + 1}_s": round(e, 2) for i, e in enumerate(r["epoch_times"])},
             "process_wall_s": round(r["wall"], 2), "outside_epochs_s": round(r["outside_epochs"], 2)}
            for name, r in (("bare PyTorch", bare), ("train.py", ours))]
    print_table(rows)
    ratio = ours["epoch_times"][-1] / bare["epoch_times"][-1]
    extra = ours["outside_epochs"] - bare["outside_epochs"]
    print(f"\nsteady-state epoch ratio train.py / bare = {ratio:.3f} (target <= 1.05); extra start-up = {extra:.1f} s")
    emit({"epoch_time_ratio": round(ratio, 4), "startup_extra_s": round(extra, 2),
          "bare_epoch_s": round(bare["epoch_times"][-1], 2), "archlab_epoch_s": round(ours["epoch_times"][-1], 2),
          "epochs": args.epochs, "experiment": EXPERIMENT, "target_epoch_time_ratio": 1.05})


if __name__ == "__main__":
    main()
