"""Pre-training and fine-tuning, through train.py as users run it: Fashion-MNIST test accuracy of the
SimpleCNN (model=cnn) fine-tuned on 1 %, 10 % and 100 % of the training labels, from scratch and
from each pre-training, at equal budgets; then the text half (benchmarks/transfer_text.py).

Pre-trainings (ordinary train.py runs, timed; their last.ckpt is what is fine-tuned):
- simclr: SimCLR on the Fashion-MNIST training images (experiment=fashion_mnist_simclr; the labels
  train only its linear probe), loaded with init.prefix_map={encoder:''}: every layer of the
  classifier but its output layer.
- mnist: supervised transfer from an MNIST classifier (experiment=mnist_cnn), loaded with
  init.exclude=[classifier.4]: every layer but its output layer, whose shape fits but whose
  classes are digits.

Fine-tuning: experiment=fashion_mnist_finetune at data.label_fraction=f for the epochs given for f
(--epochs), the same recipe, seed, label subset and number of optimizer steps for scratch and
every pre-training; test accuracy of the best-validation checkpoint on the full test split.
Target: pre-trained >= scratch + 5 points at 1 % labels.

    DATA_DIR=/path/to/data python benchmarks/transfer.py [--fractions 0.01 0.1 1] [--epochs 30 10 2]
        [--simclr-epochs 2] [--mnist-epochs 3] [--skip-text]

The last output line is JSON: acc_gain_1pct (points, best pre-training minus scratch at 1 %),
rouge2_gain (points, from the text half), pretrain_seconds (image + text), and the table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common import ROOT, data_dir, emit, last_value, print_table, train_run

# how each pre-training's weights go into model=cnn
INITS = {"simclr": ["init.prefix_map={encoder:''}"], "mnist": ["init.exclude=[classifier.4]"]}


def pretrain(name: str, overrides: list[str], out: Path) -> tuple[Path, float, list[dict[str, str]]]:
    """Run a pre-training; its last checkpoint, wall seconds and metrics rows."""
    seconds, rows = train_run(overrides, name, out / name)
    (ckpt,) = (out / name).rglob("checkpoints/last.ckpt")
    return ckpt, seconds, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fractions", nargs="+", type=float, default=[0.01, 0.1, 1.0], help="shares of the labels")
    parser.add_argument("--epochs", nargs="+", type=int, default=[30, 10, 2],
                        help="fine-tuning epochs at each fraction (the same for scratch and every pre-training)")
    parser.add_argument("--simclr-epochs", type=int, default=2)
    parser.add_argument("--mnist-epochs", type=int, default=3)
    parser.add_argument("--skip-text", action="store_true", help="the image half only")
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "benchmarks" / f"transfer_{int(time.time())}")
    text = None
    if "--skip-text" not in sys.argv[1:]:
        import transfer_text as text  # the text half (denoising pre-training of the summarizer)

        text.add_text_args(parser)
    args = parser.parse_args()
    if len(args.epochs) != len(args.fractions):
        parser.error(f"--epochs needs one value per fraction ({len(args.fractions)})")
    data = [f"data.data_dir={data_dir('FashionMNIST/raw')}"]
    data_dir("MNIST/raw")  # checked before the first run, not after the SimCLR one

    ckpts, pretrain_seconds = {}, {}
    ckpts["simclr"], pretrain_seconds["simclr"], rows = pretrain(
        "simclr", ["experiment=fashion_mnist_simclr", f"trainer.max_epochs={args.simclr_epochs}", "test=false", *data], args.out)
    probe_acc = last_value(rows, "val/acc")
    ckpts["mnist"], pretrain_seconds["mnist"], _ = pretrain(
        "mnist", ["experiment=mnist_cnn", f"trainer.max_epochs={args.mnist_epochs}", "test=false", *data], args.out)

    table: list[dict] = []
    for fraction, epochs in zip(args.fractions, args.epochs):
        scratch = None
        for init in ("scratch", *INITS):
            overrides = ["experiment=fashion_mnist_finetune", f"data.label_fraction={fraction}",
                         f"trainer.max_epochs={epochs}", *data]
            if init != "scratch":
                overrides += ["init=checkpoint", f"init.path={ckpts[init]}", *INITS[init]]
            name = f"finetune_{init}_{fraction:g}"
            seconds, rows = train_run(overrides, name, args.out / name)
            acc = 100 * last_value(rows, "test/acc")
            scratch = acc if init == "scratch" else scratch
            table.append({"task": "image", "labels": f"{100 * fraction:g} %", "init": init, "epochs": epochs,
                          "steps": int(last_value(rows, "step")), "test_acc": round(acc, 2),
                          "gain": round(acc - scratch, 2), "seconds": round(seconds, 1)})

    figures: dict = {}
    one_pct = {r["init"]: r["gain"] for r in table if r["labels"] == "1 %" and r["init"] != "scratch"}
    if one_pct:
        figures["acc_gain_1pct"] = max(one_pct.values())
        figures |= {f"acc_gain_1pct_{init}": gain for init, gain in one_pct.items()}
        figures["target_met"] = figures["acc_gain_1pct"] >= 5
    figures["image_pretrain_seconds"] = {k: round(v, 1) for k, v in pretrain_seconds.items()}
    figures["simclr_probe_val_acc"] = round(100 * probe_acc, 2)
    figures["pretrain_seconds"] = round(sum(pretrain_seconds.values()), 1)
    if text is not None:
        text_table, text_figures = text.text_rows(args)
        table += text_table
        figures |= text_figures
        figures["pretrain_seconds"] = round(figures["pretrain_seconds"] + text_figures["text_pretrain_seconds"], 1)
    print_table(table)
    print(f"\nPre-training wall seconds: SimCLR {pretrain_seconds['simclr']:.0f} ({args.simclr_epochs} epochs, linear "
          f"probe {100 * probe_acc:.2f} % on validation), MNIST CNN {pretrain_seconds['mnist']:.0f} "
          f"({args.mnist_epochs} epochs). Fine-tuning budget per fraction: "
          + ", ".join(f"{100 * f:g} %: {e} epochs" for f, e in zip(args.fractions, args.epochs)))
    emit({**figures, "fractions": args.fractions, "epochs": args.epochs, "simclr_epochs": args.simclr_epochs,
          "mnist_epochs": args.mnist_epochs, "table": table})


if __name__ == "__main__":
    main()
