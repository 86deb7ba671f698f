"""Fusion ablation on easy-VQA, 2 CPU cores: `experiment=easy_vqa_cross_attention` as is, and with
its fusion swapped for concat and for FiLM (same CNN and GRU encoders, same epochs and schedule).
Each row is one `python train.py` process: wall time (start to exit) and test accuracy overall
and per question type. Target for cross_attention: >= 99.5 % test accuracy within 4 epochs.

`epochs_to_995`: the fewest epochs after which cross_attention's test accuracy is >= 99.5 %, among
its run with the experiment's epochs and the `--budgets` (default 2 3 4), each a full run of the
experiment's one-cycle schedule compressed to that many epochs (null when none reaches it). Test
split only, one run per budget.

    python benchmarks/fusion_ablation.py [--fusions cross_attention concat film] [--epochs N] [--budgets 2 3 4]
"""

from __future__ import annotations

import argparse

from common import emit, last_value, print_table, train_run

TARGET_ACC, TARGET_EPOCHS = 0.995, 4
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
    parser.add_argument("--budgets", nargs="*", type=int, default=[2, 3, 4],
                        help="epoch budgets of cross_attention for epochs_to_995 (none: skip)")
    args = parser.parse_args()
    rows = [run(f, args.epochs) for f in args.fusions]
    budgets = [{**run("cross_attention", n), "budget": n} for n in sorted(args.budgets)]
    print_table(rows + budgets)
    figures: dict = {"table": rows, "budgets": budgets, "target_acc": TARGET_ACC, "target_epochs": TARGET_EPOCHS}
    ours = next((r for r in rows if r["fusion"] == "cross_attention"), None)
    if ours:
        print(f"\ncross_attention: {ours['test_acc']:.2%} test accuracy after {ours['epochs']} epochs in {ours['seconds']:.0f} s")
        figures |= {"test_acc": ours["test_acc"], "seconds": ours["seconds"], "epochs": ours["epochs"]}
    runs = budgets + ([ours] if ours else [])
    if runs:
        reached = sorted(r["epochs"] for r in runs if r["test_acc"] >= TARGET_ACC)
        figures["epochs_to_995"] = reached[0] if reached else None
        figures["meets_target"] = bool(reached) and reached[0] <= TARGET_EPOCHS
        accs = ", ".join(f"{r['epochs']}: {r['test_acc']:.2%}" for r in sorted(runs, key=lambda r: r["epochs"]))
        print(f"epochs to {TARGET_ACC:.1%}: {figures['epochs_to_995']} (target <= {TARGET_EPOCHS}; epochs: test acc {accs})")
    emit(figures)


if __name__ == "__main__":
    main()
