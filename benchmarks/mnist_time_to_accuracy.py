"""Time to accuracy on MNIST, 2 CPU cores: wall time of `python train.py experiment=mnist_cnn`
(process start to exit: imports, data, training, validation, test) and its test accuracy;
target >= 99.3 % within 90 s. lightning-hydra-template's default MNIST recipe (SimpleDenseNet,
10 epochs) runs through archlab as `experiment=mnist_lht_baseline` for comparison.

    DATA_DIR=/path/to/data python benchmarks/mnist_time_to_accuracy.py [--skip-baseline]
"""

from __future__ import annotations

import argparse

from common import data_dir, emit, last_value, print_table, train_run

TARGET_ACC, TARGET_S = 0.993, 90.0


def run(experiment: str) -> dict:
    seconds, rows = train_run([f"experiment={experiment}", f"data.data_dir={data_dir()}"], f"tta_{experiment}")
    test_acc = last_value(rows, "test/acc")
    epochs = sum(1 for r in rows if r.get("train/epoch_time_s"))
    return {"experiment": experiment, "epochs": epochs, "seconds": round(seconds, 1), "test_acc": round(test_acc, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-baseline", action="store_true", help="only time experiment=mnist_cnn")
    args = parser.parse_args()
    rows = [run("mnist_cnn")]
    if not args.skip_baseline:
        rows.append(run("mnist_lht_baseline"))
    for r in rows:
        r["meets_target"] = r["test_acc"] >= TARGET_ACC and r["seconds"] <= TARGET_S
    print_table(rows)
    ours = rows[0]
    print(f"\nmnist_cnn: {ours['test_acc']:.2%} test accuracy in {ours['seconds']:.0f} s "
          f"(target >= {TARGET_ACC:.1%} within {TARGET_S:.0f} s)")
    emit({"seconds": ours["seconds"], "test_acc": ours["test_acc"], "target_seconds": TARGET_S, "target_acc": TARGET_ACC,
          "table": rows})


if __name__ == "__main__":
    main()
