"""Compression side by side, 2 CPU cores: a net is trained with `train.py`, then each recipe is
applied to its checkpoint with `python compress.py ckpt_path=... compression=...` (one process
per row; the table is each run's compression.json). Columns: file size (MB, gzip MB), non-zero
parameters, latency of the net alone (median, 1 thread, batch 1 and 256; and 256 on all threads),
test accuracy, largest difference from the fp32 outputs.

Models: the MNIST CNN (`experiment=mnist_cnn`), a Fashion-MNIST ResNet-9 (width 16, 2 epochs)
and the easy-VQA cross-attention net (4 epochs): short budgets for a 2-core machine. Knowledge
distillation: Hinton et al. (2015)'s MNIST MLPs (`experiment=mnist_kd_teacher`, `mnist_kd_student`, `mnist_kd_distilled`).

Targets: >= 90 % sparsity within 0.1 point of the CNN's accuracy; int8 >= 1.5x faster than fp32
at batch 256 (1 thread) within 0.2 point; the distilled student closes >= half the gap between
the student alone and the teacher.

    DATA_DIR=/path/to/data python benchmarks/compression.py [--models mnist_cnn fmnist_resnet9 vqa] [--no-kd]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, data_dir, emit, last_value, print_table, train_run

MODELS = {
    # name: (train overrides, recipes (name, compress overrides), fine-tuning epochs)
    # fine-tuned at the trained rate (AdamW 3e-3 recovers; at lr_scale=0.1, 90 % sparsity cost 0.18 point)
    "mnist_cnn": (["experiment=mnist_cnn"],
                  [("pruned_50", ["compression=prune", "compression.sparsity=0.5", "finetune.lr_scale=1.0"]),
                   ("pruned_80", ["compression=prune", "compression.sparsity=0.8", "finetune.lr_scale=1.0"]),
                   ("pruned_90", ["compression=prune", "compression.sparsity=0.9", "finetune.lr_scale=1.0"]),
                   ("pruned_95", ["compression=prune", "compression.sparsity=0.95", "finetune.lr_scale=1.0"]),
                   ("structured_50", ["compression=structured", "finetune.lr_scale=1.0"]),
                   ("int8_dynamic", ["compression=int8_dynamic"]),
                   ("int8_static", ["compression=int8_static"]),
                   ("onnx", ["compression=onnx"])], 2),
    "fmnist_resnet9": (["experiment=fashion_mnist_resnet9", "model.net.width=16", "trainer.max_epochs=2"],
                       [("pruned_90", ["compression=prune", "compression.sparsity=0.9"]),
                        ("structured_50", ["compression=structured"]),
                        ("int8_dynamic", ["compression=int8_dynamic"]),
                        ("int8_static", ["compression=int8_static"]),
                        ("onnx", ["compression=onnx"])], 1),
    "vqa": (["experiment=easy_vqa_cross_attention", "trainer.max_epochs=4"],
            [("pruned_90", ["compression=prune", "compression.sparsity=0.9"]),
             ("int8_dynamic", ["compression=int8_dynamic"]),
             ("int8_static", ["compression=int8_static", "compression.submodule=image_encoder"]),
             ("onnx", ["compression=onnx"])], 1),
}


def trained(overrides: list[str], name: str, out: Path) -> tuple[Path, float]:
    """Train; the checkpoint train.py tested (best val) and the run's wall seconds."""
    seconds, _ = train_run([*overrides, f"data.data_dir={data_dir()}"], name, out / name)
    (ckpt,) = (out / name).rglob("checkpoints/epoch_*.ckpt")
    return ckpt, seconds


def compressed(ckpt: Path, overrides: list[str], out: Path) -> list[dict]:
    """``python compress.py`` on ``ckpt``: its table rows (fp32, then the compressed net)."""
    proc = subprocess.run([sys.executable, str(ROOT / "compress.py"), f"ckpt_path={ckpt}", *overrides,
                           f"paths.log_dir={out}", f"paths.data_dir={data_dir()}", "extras.print_config=false",
                           "trainer.enable_progress_bar=false"], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        return [{"variant": overrides[0].split("=")[1], "error": (proc.stdout + proc.stderr).strip().splitlines()[-1][:200]}]
    (table,) = out.rglob("compression.json")
    return json.loads(table.read_text())


def kd(out: Path, epochs: int | None) -> dict:
    """Hinton et al. (2015)'s MNIST experiment at ``epochs`` each: test errors of the teacher, the
    student alone and the student distilled from the teacher, and the distilled student's row."""
    budget = [f"trainer.max_epochs={epochs}"] if epochs else []
    teacher_ckpt, t_teacher = trained(["experiment=mnist_kd_teacher", *budget], "kd_teacher", out)
    errors, seconds = {}, {"teacher": t_teacher}
    for name, overrides in (("student", ["experiment=mnist_kd_student"]),
                            ("distilled", ["experiment=mnist_kd_distilled", f"distill.teacher_ckpt={teacher_ckpt}"])):
        seconds[name], rows = train_run([*overrides, *budget, f"data.data_dir={data_dir()}"], f"kd_{name}",
                                        out / f"kd_{name}")
        errors[name] = round((1 - last_value(rows, "test/acc")) * 10_000)
    with next((out / "kd_teacher").rglob("metrics.csv")).open() as f:
        errors["teacher"] = round((1 - last_value(list(csv.DictReader(f)), "test/acc")) * 10_000)
    (student_ckpt,) = (out / "kd_distilled").rglob("checkpoints/epoch_*.ckpt")
    row = compressed(student_ckpt, ["compression=int8_dynamic"], out / "kd_student_row")[0] | {"variant": "distilled_student"}
    gap = errors["student"] - errors["teacher"]
    return {"errors": errors, "seconds": seconds, "row": row,
            "gap_closed": (errors["student"] - errors["distilled"]) / gap if gap > 0 else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--no-kd", action="store_true", help="skip the distillation experiment")
    parser.add_argument("--kd-epochs", type=int, default=None,
                        help="epochs of each distillation run (default: the experiments' own, 20)")
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "benchmarks" / f"compression_{int(time.time())}")
    args = parser.parse_args()
    tables: dict[str, list[dict]] = {}
    for model in args.models:
        train_overrides, recipes, epochs = MODELS[model]
        ckpt, _ = trained(train_overrides, model, args.out)
        rows: list[dict] = []
        for name, overrides in recipes:
            finetune = [f"compression.finetune_epochs={epochs}"] if overrides[0] in ("compression=prune", "compression=structured") else []
            result = compressed(ckpt, [*overrides, *finetune], args.out / model / name)
            rows += result if not rows else result[1:]
        tables[model] = [{"model": model, **r} for r in rows]
    figures: dict = {}
    if "mnist_cnn" in tables:
        cnn = {r["variant"]: r for r in tables["mnist_cnn"]}
        base = cnn["fp32"]["test/acc"]
        within = [int(v.split("_")[1]) / 100 for v, r in cnn.items()
                  if v.startswith("pruned_") and "test/acc" in r and base - r["test/acc"] <= 0.001]
        figures["max_sparsity_within_0p1"] = max(within, default=0.0)
        speed_key = next(k for k in cnn["fp32"] if k.startswith("ms_b256_t1"))
        if "test/acc" in cnn.get("int8_static", {}):
            figures["int8_speedup_b256"] = round(cnn["fp32"][speed_key] / cnn["int8_static"][speed_key], 2)
            figures["int8_acc_drop"] = round((base - cnn["int8_static"]["test/acc"]) * 100, 3)
        if "max_abs_diff" in cnn.get("onnx", {}):
            figures["onnx_max_abs_diff"] = cnn["onnx"]["max_abs_diff"]
    if not args.no_kd:
        result = kd(args.out / "kd", args.kd_epochs)
        tables.setdefault("mnist_kd", []).append({"model": "mnist_kd_mlp", **result["row"]})
        figures |= {"kd_errors": result["errors"], "kd_paper_errors": {"teacher": 67, "student": 146, "distilled": 74},
                    "kd_gap_closed": result["gap_closed"], "kd_seconds": result["seconds"], "kd_epochs": args.kd_epochs}
    for model, rows in tables.items():
        print(f"\n## {model}")
        print_table(rows)
    print()
    emit({**figures, "tables": tables})


if __name__ == "__main__":
    main()
