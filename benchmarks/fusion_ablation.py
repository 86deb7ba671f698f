"""Fusion ablation on easy-VQA, 2 CPU cores: `experiment=easy_vqa_cross_attention` as is, and with
its fusion swapped for concat and for FiLM (same CNN and GRU encoders, same epochs and schedule).
Each row is one `python train.py` process: wall time (start to exit) and test accuracy overall
and per question type. Target for cross_attention: >= 99.5 % test accuracy within 10 minutes.

    python benchmarks/fusion_ablation.py [--fusions cross_attention concat film] [--epochs N]
"""

from __future__ import annotations

import argparse

from common import emit, last_value, print_table, train_run

TARGET_ACC, TARGET_S = 0.995, 600.0
FUSIONS = ("cross_attention", "concat", "film")


def run(fusion: str, epochs: int | None) -> dict:
    overrides = ["experiment=easy_vqa_cross_attention", f"model.net.fusion={fusion}"]
    overrides += [f"trainer.max_epochs={epochs}"] if epochs else []
    seconds, rows = train_run(overrides, f"fusion_{fusion}")
    row = {"fusion": fusion, "epochs": sum(1 for r in rows if r.get("train/epoch_time_s")), "seconds": round(seconds, 1),
           "test_acc": round(last_value(rows, "test/acc"), 4)}
    for kind in ("shape", "color", "yes_no"):
        row[f"acc_{kind}"] = round(last_value(rows, f"test/acc_{kind}"), 4)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fusions", nargs="+", choices=FUSIONS, default=list(FUSIONS))
    parser.add_argument("--epochs", type=int, default=None, help="override the experiment's epochs (quick checks)")
    args = parser.parse_args()
    rows = [run(f, args.epochs) for f in args.fusions]
    print_table(rows)
    figures: dict = {"table": rows, "target_acc": TARGET_ACC, "target_seconds": TARGET_S}
    ours = next((r for r in rows if r["fusion"] == "cross_attention"), None)
    if ours:
        print(f"\ncross_attention: {ours['test_acc']:.2%} test accuracy in {ours['seconds']:.0f} s "
              f"(target >= {TARGET_ACC:.1%} within {TARGET_S:.0f} s)")
        figures |= {"test_acc": ours["test_acc"], "seconds": ours["seconds"],
                    "meets_target": ours["test_acc"] >= TARGET_ACC and ours["seconds"] <= TARGET_S}
    emit(figures)


if __name__ == "__main__":
    main()
