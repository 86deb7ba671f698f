"""Sample quality of GANs after a fixed amount of training, on MNIST and Fashion-MNIST: FID, KID
and class coverage of DCGAN, WGAN-GP and SAGAN (10,000 EMA-generator samples vs the 10,000 test
images), next to the real-vs-real floor (10,000 training images vs the same test images, same
features). Every model trains for the same number of epochs (default 2: a fixed amount of work,
whatever the machine), or with --minutes for the same wall-clock budget instead.
Target: FID <= 10x the floor for DCGAN on MNIST after 2 epochs on CPU (``fid_ratio_2ep``).

Features come from archlab's own classifier of each dataset (offline "Fréchet classifier
distance"): trained here first with `python train.py model=cnn data=<dataset>`, unless a
checkpoint is given with --classifier. Each GAN then runs `python train.py
experiment=mnist_<model> data=<dataset> trainer.max_epochs=<N> trainer.max_time=null`
(or `trainer.max_time=<budget>`), which validates every 250 batches and tests the checkpoint with
the best val/fid. The three experiments are class-conditional; DCGAN's recipe is in
configs/experiment/mnist_dcgan.yaml.

    DATA_DIR=/path/to/writable/data python benchmarks/gan_quality.py [--epochs 2 | --minutes 5] [--trainer gpu]
        [--datasets mnist fashion_mnist] [--models dcgan wgan_gp sagan] [--classifier mnist=PATH.ckpt]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import data_dir, emit, last_values, print_table, train_run

TARGET_RATIO = 10.0
TARGET_EPOCHS = 2


def train_py(args: list[str], log_dir: Path) -> tuple[dict[str, str], float]:
    """Run train.py; returns the last value of every metric in its metrics.csv, and the wall time."""
    seconds, rows = train_run(args, log_dir.name, log_dir)
    return last_values(rows), seconds


def classifier(dataset: str, given: dict[str, str], trainer: str, epochs: int, work: Path) -> tuple[str, float | None]:
    """The classifier checkpoint for ``dataset`` and its test accuracy (None when given)."""
    if dataset in given:
        return given[dataset], None
    log_dir = work / f"classifier_{dataset}"
    metrics, _ = train_py(["model=cnn", f"data={dataset}", f"data.data_dir={data_dir()}", f"trainer={trainer}",
                           f"trainer.max_epochs={epochs}"], log_dir)
    (ckpt,) = log_dir.rglob("last.ckpt")
    return str(ckpt), float(metrics["test/acc"])


def budget_overrides(epochs: int | None, minutes: float | None) -> list[str]:
    """A fixed amount of work (``epochs``, no time limit) or a wall-clock budget (``minutes``)."""
    if minutes is None:
        return [f"trainer.max_epochs={epochs}", "trainer.max_time=null"]
    seconds = int(round(minutes * 60))
    # the experiments stop after 2 epochs: the time budget alone ends these runs
    return ["trainer.max_epochs=1000", f"trainer.max_time=00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"]


def gan(model: str, dataset: str, ckpt: str, budget: list[str], spent: str, trainer: str, work: Path) -> dict:
    metrics, wall = train_py([f"experiment=mnist_{model}", f"data={dataset}", f"data.data_dir={data_dir()}",
                              f"trainer={trainer}", *budget, f"model.metrics.classifier_ckpt={ckpt}"],
                             work / f"{model}_{dataset}")
    fid, floor = float(metrics["test/fid"]), float(metrics["test/fid_floor"])
    return {"dataset": dataset, "model": model, "budget": spent, "train_batches": int(metrics["step"]), "fid": round(fid, 3),
            "fid_floor": round(floor, 3), "fid_ratio": round(fid / floor, 2), "kid": round(float(metrics["test/kid"]), 5),
            "kid_floor": round(float(metrics["test/kid_floor"]), 5), "coverage": round(float(metrics["test/coverage"]), 3),
            "class_kl": round(float(metrics["test/class_kl"]), 4), "wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, default=TARGET_EPOCHS,
                        help="epochs of each GAN, no time limit (default %(default)s: the headline figure)")
    budget.add_argument("--minutes", type=float, default=None,
                        help="instead of --epochs: wall-clock budget of each GAN (trainer.max_time)")
    parser.add_argument("--trainer", default="cpu", help="trainer config: cpu or gpu")
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"])
    parser.add_argument("--models", nargs="+", default=["dcgan", "wgan_gp", "sagan"])
    parser.add_argument("--classifier", nargs="*", default=[], metavar="DATASET=CKPT",
                        help="reuse classifier checkpoints instead of training them")
    parser.add_argument("--classifier-epochs", type=int, default=3)
    args = parser.parse_args()
    given = dict(item.split("=", 1) for item in args.classifier)

    spent = f"{args.minutes:g} min" if args.minutes is not None else f"{args.epochs} epochs"
    rows = []
    with tempfile.TemporaryDirectory(prefix="gan_quality_") as tmp:
        work = Path(tmp)
        for dataset in args.datasets:
            ckpt, acc = classifier(dataset, given, args.trainer, args.classifier_epochs, work)
            for model in args.models:
                budget = budget_overrides(args.epochs, args.minutes)
                rows.append({**gan(model, dataset, ckpt, budget, spent, args.trainer, work), "classifier_acc": acc})
                print(f"done: {rows[-1]}", flush=True)
    print_table(rows)
    ref = next((r for r in rows if r["dataset"] == "mnist" and r["model"] == "dcgan"), rows[0])
    # the target is defined after TARGET_EPOCHS epochs of MNIST DCGAN: other budgets report no verdict
    headline = args.minutes is None and args.epochs == TARGET_EPOCHS and (ref["dataset"], ref["model"]) == ("mnist", "dcgan")
    meets = ref["fid"] <= TARGET_RATIO * ref["fid_floor"] if headline else None
    verdict = f"target <= {TARGET_RATIO:g}x after {TARGET_EPOCHS} epochs: {'met' if meets else 'missed'}" if headline \
        else f"the target is for MNIST DCGAN after --epochs {TARGET_EPOCHS}"
    print(f"\n{ref['dataset']} {ref['model']}: FID {ref['fid']:.3g} = {ref['fid_ratio']:.3g}x the real-vs-real floor "
          f"{ref['fid_floor']:.3g} after {spent} ({verdict})")
    emit({"fid": ref["fid"], "fid_floor": ref["fid_floor"], "fid_ratio": ref["fid_ratio"],
          "fid_ratio_2ep": ref["fid_ratio"] if headline else None, "kid": ref["kid"], "coverage": ref["coverage"],
          "target_ratio": TARGET_RATIO, "target_epochs": TARGET_EPOCHS, "meets_target": meets,
          "epochs": None if args.minutes is not None else args.epochs, "minutes": args.minutes, "trainer": args.trainer,
          "table": rows})


if __name__ == "__main__":
    main()
