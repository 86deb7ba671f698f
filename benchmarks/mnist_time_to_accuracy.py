"""Time to accuracy on MNIST: wall time of `python train.py experiment=mnist_cnn` (process start to
exit: imports, data, training, validation, test) and its test accuracy, on 3 seeds, each run next
to lightning-hydra-template's default MNIST recipe (SimpleDenseNet, per-image DataLoader, 10
epochs: `experiment=mnist_lht_baseline`) with the same seed, so both see the same machine.

Targets: test accuracy >= 99.3 % on every seed (`min_test_acc`), and median archlab wall <= median
LHT-recipe wall (`seconds_ratio_vs_lht` <= 1).

    DATA_DIR=/path/to/data python benchmarks/mnist_time_to_accuracy.py [--seeds 1 2 3] [--trainer cpu]
"""

from __future__ import annotations

import argparse
import statistics

from common import data_dir, emit, last_value, print_table, train_run

TARGET_ACC, TARGET_RATIO = 0.993, 1.0
OURS, LHT = "mnist_cnn", "mnist_lht_baseline"


def run(experiment: str, seed: int, trainer: str) -> dict:
    seconds, rows = train_run([f"experiment={experiment}", f"seed={seed}", f"trainer={trainer}",
                               f"data.data_dir={data_dir()}"], f"tta_{experiment}_{seed}")
    return {"experiment": experiment, "seed": seed, "epochs": sum(1 for r in rows if r.get("train/epoch_time_s")),
            "seconds": round(seconds, 1), "test_acc": round(last_value(rows, "test/acc"), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--trainer", default="cpu", help="trainer config: cpu or gpu")
    parser.add_argument("--skip-baseline", action="store_true", help=f"only run experiment={OURS}")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:  # interleaved: a slow spell of the machine hits both recipes
        for experiment in (OURS,) if args.skip_baseline else (OURS, LHT):
            rows.append(run(experiment, seed, args.trainer))
            print(f"done: {rows[-1]}", flush=True)
    print_table(rows)
    ours = [r for r in rows if r["experiment"] == OURS]
    lht = [r for r in rows if r["experiment"] == LHT]
    figures = {"min_test_acc": min(r["test_acc"] for r in ours), "median_seconds": statistics.median(r["seconds"] for r in ours),
               "target_acc": TARGET_ACC, "trainer": args.trainer, "table": rows}
    accs = ", ".join(f"{r['test_acc']:.2%}" for r in ours)
    summary = f"\n{OURS}: test accuracy {accs} (target >= {TARGET_ACC:.1%} each), median {figures['median_seconds']:.0f} s"
    if lht:
        figures["lht_median_seconds"] = statistics.median(r["seconds"] for r in lht)
        figures["seconds_ratio_vs_lht"] = round(figures["median_seconds"] / figures["lht_median_seconds"], 3)
        summary += f"; LHT recipe median {figures['lht_median_seconds']:.0f} s: ratio {figures['seconds_ratio_vs_lht']:.2f} " \
                   f"(target <= {TARGET_RATIO:g})"
    figures["meets_target"] = figures["min_test_acc"] >= TARGET_ACC and figures.get("seconds_ratio_vs_lht", 0) <= TARGET_RATIO
    print(summary)
    emit(figures)


if __name__ == "__main__":
    main()
