"""Framework overhead: the same CNN on MNIST, same batch size and data pipeline, trained one
epoch (+ validation) by ``train.py`` and by a bare PyTorch loop.

Figures: ``epoch_time_ratio`` = median over ``--repeats`` pairs of (steady-state epoch time
through train.py / bare loop) (target <= 1.03), and ``startup_extra_s`` = the median extra
seconds train.py spends outside its epochs (imports, config, callbacks, checkpoint writing)
compared with the bare script. Each side runs in its own process, one after the other, so they
never share the cores; pairs alternate, so a slow spell of the machine hits both sides. A spread of
the pairs' ratios above 15 % of their median is flagged. The precision is the experiment's
(``${fast_precision:...}``: bf16-mixed where it is fast, else 32-true), printed with the figures.

    DATA_DIR=/path/to/data python benchmarks/overhead.py [--epochs 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time

T0 = time.perf_counter()

from common import ROOT, bare_components, bare_optimizer, data_dir, emit, print_table, spread  # noqa: E402

EXPERIMENT = "mnist_cnn"


def bare_loop(epochs: int) -> None:
    """Child process: the plain-PyTorch side (the same net, loader, optimizer, schedule and
    precision as the experiment). Prints a JSON line with its timings."""
    import torch
    import torch.nn.functional as F

    cfg, dm, net = bare_components([f"experiment={EXPERIMENT}", f"trainer.max_epochs={epochs}", f"data.data_dir={data_dir()}"],
                                   ROOT / "logs")
    if cfg.model.get("channels_last"):
        net.to(memory_format=torch.channels_last)
    train_loader, val_loader = dm.train_dataloader(), dm.val_dataloader()
    opt, sched = bare_optimizer(cfg.model.optimizer, net.parameters(), cfg.model.scheduler, epochs * len(train_loader))
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    times = []
    t_loop = time.perf_counter()
    for epoch in range(epochs):
        t = time.perf_counter()
        train_loader.sampler.set_epoch(epoch) if hasattr(train_loader.sampler, "set_epoch") else None
        net.train()
        for x, y in train_loader:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        correct = 0
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for x, y in val_loader:
                correct += (net(x).argmax(1) == y).sum().item()
        times.append(time.perf_counter() - t)
    wall = time.perf_counter() - T0
    print(json.dumps({"epoch_times": times, "wall": wall, "outside_epochs": wall - sum(times),
                      "val_acc": correct / len(dm.data_val), "loop_start": t_loop - T0,
                      "precision": str(cfg.trainer.precision)}))


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


def bare(epochs: int) -> dict:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--bare", "--epochs", str(epochs)], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"bare loop failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall"] = time.perf_counter() - t  # process wall time, as for train.py
    out["outside_epochs"] = out["wall"] - sum(out["epoch_times"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per side; the last one is the steady state")
    parser.add_argument("--repeats", type=int, default=5, help="pairs of runs; the figures are their medians")
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        return bare_loop(args.epochs)

    rows, ratios, extras, precision = [], [], [], None
    for repeat in range(args.repeats):
        pair = (("bare PyTorch", bare(args.epochs)), ("train.py", archlab(args.epochs)))
        for name, r in pair:
            rows.append({"repeat": repeat + 1, "runner": name,
                         **{f"epoch{i + 1}_s": round(e, 2) for i, e in enumerate(r["epoch_times"])},
                         "process_wall_s": round(r["wall"], 2), "outside_epochs_s": round(r["outside_epochs"], 2)})
        (_, b), (_, ours) = pair
        precision = b["precision"]
        ratios.append(ours["epoch_times"][-1] / b["epoch_times"][-1])
        extras.append(ours["outside_epochs"] - b["outside_epochs"])
        print(f"done: repeat {repeat + 1}, epoch ratio {ratios[-1]:.3f}", flush=True)
    print_table(rows)
    ratio, extra, spread_ = statistics.median(ratios), statistics.median(extras), spread("epoch-time", ratios)
    print(f"\nsteady-state epoch ratio train.py / bare ({precision}): median {ratio:.3f} of "
          f"{', '.join(f'{r:.3f}' for r in ratios)} (target <= 1.03); extra start-up = {extra:.1f} s")
    emit({"epoch_time_ratio": round(ratio, 4), "epoch_time_ratios": [round(r, 4) for r in ratios],
          "spread": round(spread_, 4), "startup_extra_s": round(extra, 2), "epochs": args.epochs,
          "repeats": args.repeats, "experiment": EXPERIMENT, "precision": precision, "target_epoch_time_ratio": 1.03,
          "table": rows})


if __name__ == "__main__":
    main()
