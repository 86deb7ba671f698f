"""Shared by the benchmarks: the closing JSON line (figures + git sha + versions), config
composition, and a table printer."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))


def versions() -> dict[str, str]:
    import lightning
    import torch
    import torchmetrics
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "lightning": lightning.__version__, "torchmetrics": torchmetrics.__version__}


def git_sha() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict[str, Any]:
    import torch

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}


def print_table(rows: list[dict[str, Any]]) -> None:
    cols = list(dict.fromkeys(c for r in rows for c in r))  # a row may lack a column (a failed variant)
    widths = {c: max(len(c), *(len(fmt(r.get(c, ""))) for r in rows)) for c in cols}
    print(" | ".join(c.ljust(widths[c]) for c in cols))
    print("-+-".join("-" * widths[c] for c in cols))
    for r in rows:
        print(" | ".join(fmt(r.get(c, "")).ljust(widths[c]) for c in cols))


def fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def emit(figures: dict[str, Any]) -> None:
    """The last output line: one JSON object."""
    print(json.dumps({**figures, "git_sha": git_sha(), "versions": versions(), "machine": machine()}), flush=True)


def train_run(overrides: list[str], name: str, log_dir: Path | None = None,
              script: str = "train.py") -> tuple[float, list[dict[str, str]]]:
    """Run ``python train.py <overrides>`` (or eval.py) as a user would (no progress bar, CSV
    logger) and return its wall time (process start to exit) and the rows of its metrics.csv."""
    import csv
    import time

    log_dir = log_dir or ROOT / "logs" / "benchmarks" / f"{name}_{int(time.time())}"
    t = time.perf_counter()
    quiet = ["extras.print_config=false", "trainer.enable_progress_bar=false"]
    quiet += ["callbacks.rich_progress_bar=null"] if script == "train.py" else []
    proc = subprocess.run([sys.executable, str(ROOT / script), *overrides, f"paths.log_dir={log_dir}", "logger=csv", *quiet],
                          cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode:
        sys.exit(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    (metrics,) = log_dir.rglob("metrics.csv")
    return seconds, list(csv.DictReader(metrics.open()))


def last_values(rows: list[dict[str, str]]) -> dict[str, str]:
    """The last logged value of every metric in metrics.csv rows."""
    last: dict[str, str] = {}
    for row in rows:
        last.update({k: v for k, v in row.items() if v})
    return last


def last_value(rows: list[dict[str, str]], key: str) -> float:
    """The last logged value of ``key`` in metrics.csv rows."""
    return next(float(r[key]) for r in reversed(rows) if r.get(key))


def data_dir(required: str = "MNIST/raw") -> str:
    """DATA_DIR (a writable folder: torchvision extracts next to its archives), checked to hold
    ``required``."""
    path = os.environ.get("DATA_DIR")
    if not path or not Path(path, required).exists():
        sys.exit(f"{required} not found under DATA_DIR={path or '(unset)'}; set DATA_DIR to a writable folder "
                 "with the datasets")
    return path
